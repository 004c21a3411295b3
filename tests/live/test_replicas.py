"""Replicas on one database are one service; PostgreSQL going away and coming back is survived."""

import itertools
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.live.load import (
    Reader,
    assert_every_acknowledged_score_is_listed,
    listed_scores,
    login,
    posters,
    running,
)
from tests.live.server import LiveServer
from tests.pgserver import PostgresServer

# No SCORESVC_SECRET (empty is unset): replicas must share the secret kept in the database.
WITHOUT_SECRET = {"SCORESVC_SECRET": ""}
SIGNED_KEYS: list[str] = []
STORED_KEYS = ["--store-tokens"]


@dataclass
class Replicas:
    """scoresvc commands, each on its own port and log, on one database."""

    arguments: list[str]
    folder: Path
    started: list[LiveServer] = field(default_factory=list)

    def start(self, count: int) -> list[LiveServer]:
        """count more replicas, started at the same moment."""
        logs = [self.folder / f"replica-{len(self.started) + n}.log" for n in range(count)]
        servers = [LiveServer(log, *self.arguments, env=WITHOUT_SECRET) for log in logs]
        self.started += servers  # before they start: whatever happens, they are killed after
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(LiveServer.start, servers))
        return servers

    @property
    def a(self) -> LiveServer:
        """The first replica."""
        return self.started[0]

    @property
    def b(self) -> LiveServer:
        """The second replica."""
        return self.started[1]

    def in_turn(self, number: int) -> tuple[LiveServer, LiveServer]:
        """(A, B) for an even number, (B, A) for an odd one: each replica does half the work."""
        return (self.a, self.b) if number % 2 == 0 else (self.b, self.a)

    def kill(self) -> None:
        """SIGKILL every replica started."""
        for server in self.started:
            server.kill()


def pairs(mode: str) -> list:
    """The parameters of the replicas fixture in mode ('signed', 'stored' or 'any')."""
    return [
        pytest.param((kind, session_mode), id=f"{kind}-{session_mode}-keys", marks=marks)
        for kind, marks in (("file", ()), ("postgresql", pytest.mark.postgresql))
        for session_mode in ("signed", "stored")
        if mode in (session_mode, "any")
    ]


@pytest.fixture(scope="module")
def replicas(request, tmp_path_factory) -> Iterator[Replicas]:
    """Two replicas, A and B, started at the same moment on a new database of their own.

    Starting together on an empty database, both migrate it and (signed keys) both may make a
    secret at once: what they end up with must still be one schema and one shared secret.
    Module-scoped: each pair is started once for all the tests that use it.
    """
    kind, session_mode = request.param
    folder = tmp_path_factory.mktemp(f"{kind}-{session_mode}")
    postgresql = request.getfixturevalue("postgresql_server") if kind == "postgresql" else None
    url = postgresql.create_database() if postgresql else f"sqlite:///{folder}/scores.db"
    mode = STORED_KEYS if session_mode == "stored" else SIGNED_KEYS
    pair = Replicas(["--database", url, *mode], folder)
    try:
        pair.start(2)
        yield pair
    finally:
        pair.kill()
        if postgresql:
            postgresql.drop_database(url)


_unused_ids = itertools.count(1000)


def fresh_ids(count: int) -> list[int]:
    """Ids for users or levels that no other test touches: the tests share their replicas."""
    return [next(_unused_ids) for _ in range(count)]


def post(server: LiveServer, key: str, level: int, score: int) -> int:
    """The status of a score post, which must be 200 or 401."""
    status, body = server.request("POST", f"/{level}/score?sessionkey={key}", str(score))
    assert status in (200, 401), f"POST of {score} to level {level}: {status} {body}"
    return status


READ_AFTER_WRITE_ROUNDS = 100


@pytest.mark.parametrize("replicas", pairs("any"), indirect=True)
def test_a_score_answered_by_one_replica_is_in_the_very_next_list_of_the_other(replicas):
    (level,) = fresh_ids(1)
    users = fresh_ids(READ_AFTER_WRITE_ROUNDS)
    stale_reads = []
    for round_number, user in enumerate(users):
        # A writes and B reads for the first half of the rounds, then the other way round:
        # never writing itself, the reader has only the writer's commits to tell it that the
        # list it read one round ago is stale. Had it missed one, the previous round's user
        # would still head its list, so a single stale read fails the test.
        writer, reader = replicas.in_turn(2 * round_number // READ_AFTER_WRITE_ROUNDS)
        score = round_number + 1  # a new best on the level: this user must head the list
        assert post(writer, login(writer, user), level, score) == 200
        status, body = reader.request("GET", f"/{level}/highscorelist")
        assert status == 200
        if body.split(",")[0] != f"{user}={score}":
            stale_reads.append(f"round {round_number}: {user}={score} posted, {body!r} read")
    assert stale_reads == []


@pytest.mark.parametrize("replicas", pairs("any"), indirect=True)
def test_equal_scores_on_different_replicas_rank_whoever_posted_first_first_on_both(replicas):
    # The first poster has the higher user id: ties of equal time rank by user id, so only the
    # order of arrival can put it first.
    later, first = fresh_ids(2)
    keys = {user: login(replicas.a, user) for user in (first, later)}
    levels = fresh_ids(10)
    for number, level in enumerate(levels):
        first_on, later_on = replicas.in_turn(number)
        assert post(first_on, keys[first], level, 500) == 200
        assert post(later_on, keys[later], level, 500) == 200
    for replica in (replicas.a, replicas.b):
        for level in levels:
            assert replica.request("GET", f"/{level}/highscorelist") == (
                200,
                f"{first}=500,{later}=500",
            ), f"level {level} on port {replica.port}"


@pytest.mark.parametrize("replicas", pairs("any"), indirect=True)
def test_a_key_issued_by_either_replica_is_accepted_by_the_other(replicas):
    user_a, user_b = fresh_ids(2)
    (level,) = fresh_ids(1)
    assert post(replicas.b, login(replicas.a, user_a), level, 1) == 200
    assert post(replicas.a, login(replicas.b, user_b), level, 2) == 200
    assert listed_scores(replicas.a, level) == {user_b: 2, user_a: 1}


@pytest.mark.parametrize("replicas", pairs("signed"), indirect=True)
def test_a_replica_started_after_the_others_shares_the_secret_they_keep(replicas):
    (later,) = replicas.start(1)
    users = fresh_ids(3)
    (level,) = fresh_ids(1)
    issued = {
        user: (issuer, login(issuer, user))
        for user, issuer in zip(users, (replicas.a, replicas.b, later), strict=True)
    }
    # Every replica accepts every replica's keys, the later one's included.
    for user, (issuer, key) in issued.items():
        for replica in (replicas.a, replicas.b, later):
            assert post(replica, key, level, 1) == 200, (
                f"the key of user {user} issued on port {issuer.port}: 401 on port {replica.port}"
            )


@pytest.mark.parametrize("replicas", pairs("stored"), indirect=True)
def test_a_new_login_on_one_replica_ends_the_previous_key_on_the_other_at_once(replicas):
    (user,) = fresh_ids(1)
    (level,) = fresh_ids(1)
    for number in range(5):
        # Log in on one replica, then on the other: the first key dies on both, though both
        # have accepted it before (a replica that remembered keys it checked would fail here).
        first_on, second_on = replicas.in_turn(number)
        old_key = login(first_on, user)
        assert post(first_on, old_key, level, 1) == 200
        assert post(second_on, old_key, level, 1) == 200
        new_key = login(second_on, user)
        assert post(first_on, old_key, level, 1) == 401, "a replaced key still works elsewhere"
        assert post(second_on, old_key, level, 1) == 401
        assert post(first_on, new_key, level, 1) == 200


# PostgreSQL goes away for this long, under load, and comes back.
OUTAGE_S = 1.5
# Every answer may take this long at most, the database gone or not: no hang.
LONGEST_ANSWER_S = 5.0
# From PostgreSQL's return until every call answers 200 again, by itself.
RECOVERY_S = 2.0


@pytest.fixture(scope="module")
def own_postgresql(tmp_path_factory) -> Iterator[tuple[PostgresServer, LiveServer]]:
    """A PostgreSQL server of the module's own, to stop and start, and scoresvc on it with two
    workers, each of which must find its way back to the database by itself."""
    with PostgresServer() as postgres:
        log = tmp_path_factory.mktemp("own-postgresql") / "server.log"
        server = LiveServer(log, "--workers", "2", "--database", postgres.create_database())
        try:
            yield postgres, server.start()
        finally:
            server.kill()


@pytest.mark.postgresql
@pytest.mark.parametrize("immediate", [False, True], ids=["fast-shutdown", "crash"])
def test_while_postgresql_is_down_calls_answer_503_and_once_it_is_back_200_by_themselves(
    own_postgresql, immediate
):
    postgres, server = own_postgresql
    writers = posters(server, fresh_ids(4))
    readers = [Reader([writer.level for writer in writers]) for _ in range(2)]
    health_while_down = []
    with running([*writers, *readers], server.port):
        time.sleep(0.5)
        stopping_at = time.monotonic()
        postgres.stop(immediate=immediate)
        down_at = time.monotonic()
        while time.monotonic() < down_at + OUTAGE_S:
            health_while_down.append(server.request("GET", "/healthz")[0])
            time.sleep(0.1)
        back_at = time.monotonic()
        postgres.start()
        recovery_deadline = time.monotonic() + RECOVERY_S
        time.sleep(RECOVERY_S + 0.5)

    answers = [answer for client in (*writers, *readers) for answer in client.answers]
    assert [str(a) for a in answers if a.status not in (200, 503)] == [], "only 200 or 503"
    assert [str(a) for a in answers if a.seconds > LONGEST_ANSWER_S] == [], "no hang"
    before = [a for a in answers if a.sent_at + a.seconds < stopping_at]
    assert before, "no call was made before PostgreSQL stopped"
    assert [str(a) for a in before if a.status != 200] == [], "200 before PostgreSQL stops"
    # Sent once PostgreSQL had stopped, answered before it was started again.
    while_down = [a for a in answers if a.sent_at > down_at and a.sent_at + a.seconds < back_at]
    assert while_down, "no call was made while PostgreSQL was down"
    assert [str(a) for a in while_down if a.status != 503] == [], "503 while PostgreSQL is down"
    assert set(health_while_down) == {503}
    after_recovery = [a for a in answers if a.sent_at > recovery_deadline]
    assert after_recovery, "the load stopped before the service had time to recover"
    assert [str(a) for a in after_recovery if a.status != 200] == [], (
        f"not every call answers 200 {RECOVERY_S}s after PostgreSQL is back"
    )
    assert server.request("GET", "/healthz") == (200, "ok")
    assert all(writer.acknowledged > 0 for writer in writers)
    assert_every_acknowledged_score_is_listed(server, writers)


def test_sigkill_under_write_load_on_postgresql_loses_no_answered_score_and_no_key(
    start_server, postgresql_url
):
    arguments = ["--database", postgresql_url]
    server = start_server(*arguments, env=WITHOUT_SECRET)
    writers = posters(server, fresh_ids(8))
    with running(writers, server.port):
        time.sleep(0.5)
        server.kill()  # SIGKILL, with requests in flight
    assert any(writer.acknowledged > 0 for writer in writers), "killed before any answer"

    restarted = start_server(*arguments, env=WITHOUT_SECRET)
    assert_every_acknowledged_score_is_listed(restarted, writers)
    for writer in writers:
        assert post(restarted, writer.key, writer.level, 0) == 200, (
            f"the key of user {writer.user_id} did not survive the restart"
        )
