"""Leaderboards on real servers: rules, seasons and idempotent posts stay one service across
worker processes on a SQLite file and replicas on one PostgreSQL database.

- rules changed through one process apply to the very next request any other process answers;
- a season started while two workers (or two replicas) take posts puts every answered post in
  exactly one season, none lost, none in both;
- one post, retried with its Idempotency-Key at another replica (or sent to both at once),
  counts once on a `sum` level;
- a worker killed with SIGKILL under posts to a `sum` level that clients retry until answered
  counts no post twice and loses none.
"""

import contextlib
import csv
import http.client
import io
import itertools
import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.live.server import LiveServer

ADMIN_TOKEN = "live-leaderboards-admin-token-0123456789"
WRITER_TOKEN = "live-leaderboards-writer-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WRITER = {"Authorization": f"Bearer {WRITER_TOKEN}"}
# No SCORESVC_SECRET (empty is unset): replicas share the secret kept in the database, so a
# session key issued by one is accepted by the other. Post limit off: the clients post fast.
ENVIRONMENT = {
    "SCORESVC_ADMIN_TOKEN": ADMIN_TOKEN,
    "SCORESVC_WRITER_TOKEN": WRITER_TOKEN,
    "SCORESVC_SECRET": "",
    "SCORESVC_POST_LIMIT": "0",
}
REQUEST_TIMEOUT_S = 10.0
DEFAULT_RULES = {"order": "desc", "writes": "players", "min_score": 0, "max_score": 2147483647}
STRICT_RULES = {"order": "asc", "writes": "server", "min_score": 10, "max_score": 1000}

_unused_ids = itertools.count(1000)


def fresh_ids(count: int) -> list[int]:
    """Level or user ids no other test touches (the replicas are shared by the module)."""
    return [next(_unused_ids) for _ in range(count)]


# --- HTTP ---------------------------------------------------------------------------------


def call(
    server: LiveServer,
    method: str,
    path: str,
    body: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = REQUEST_TIMEOUT_S,
) -> tuple[int, str]:
    """One request on a new connection (with workers, either may take it): (status, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def admin(server: LiveServer, method: str, path: str, document: dict | None = None) -> dict:
    """An admin API call that must answer 200: its JSON."""
    body = None if document is None else json.dumps(document)
    status, text = call(server, method, path, body, ADMIN)
    assert status == 200, f"{method} {path} {body}: {status} {text}"
    return json.loads(text)


def set_rules(server: LiveServer, level: int, rules: dict) -> dict:
    answer = admin(server, "PUT", f"/admin/levels/{level}/rules", rules)
    assert {name: answer[name] for name in rules} == rules, answer
    return answer


def start_season(server: LiveServer, level: int) -> int:
    """Start the level's next season through server: its number."""
    return admin(server, "POST", f"/admin/levels/{level}/seasons")["season"]


def writer_post(
    server: LiveServer, level: int, user: int, score: int, idempotency_key: str | None = None
) -> tuple[int, str]:
    """A post by the trusted writer for user."""
    headers = dict(WRITER)
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return call(server, "POST", f"/{level}/score?user={user}", str(score), headers)


def player_post(server: LiveServer, level: int, key: str, score: int) -> tuple[int, str]:
    """A post with a player's session key."""
    return call(server, "POST", f"/{level}/score?sessionkey={key}", str(score))


def login(server: LiveServer, user: int) -> str:
    status, key = call(server, "GET", f"/{user}/login")
    assert status == 200, f"login of {user}: {status} {key}"
    return key


def listed(server: LiveServer, level: int, query: str = "") -> str:
    """The level's list (text), which must answer 200."""
    status, body = call(server, "GET", f"/{level}/highscorelist{query}")
    assert status == 200, f"list of level {level}{query}: {status} {body}"
    return body


def exported(server: LiveServer, level: int, season: int) -> set[tuple[int, int]]:
    """The (user, score) of every entry of the level's season, from the admin export."""
    status, text = call(server, "GET", f"/admin/levels/{level}/export?season={season}", None, ADMIN)
    assert status == 200, f"export of level {level} season {season}: {status} {text[:200]}"
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["rank", "userid", "score", "reached_at"]
    assert [int(row[0]) for row in rows[1:]] == list(range(1, len(rows)))
    entries = {(int(row[1]), int(row[2])) for row in rows[1:]}
    assert len(entries) == len(rows) - 1, "a user listed twice in one season"
    return entries


# --- servers ------------------------------------------------------------------------------


def replica_pair(folder: Path, url: str) -> list[LiveServer]:
    """Two scoresvc processes on the database at url, started at the same moment."""
    servers = [
        LiveServer(folder / f"replica-{name}.log", "--database", url, env=ENVIRONMENT)
        for name in "ab"
    ]
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(LiveServer.start, servers))
    except BaseException:
        for server in servers:
            server.kill()
        raise
    return servers


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, postgresql_server) -> Iterator[list[LiveServer]]:
    """Replicas A and B on one new PostgreSQL database, shared by this module's tests."""
    url = postgresql_server.create_database()
    servers = replica_pair(tmp_path_factory.mktemp("replicas"), url)
    try:
        yield servers
    finally:
        for server in servers:
            server.kill()
        postgresql_server.drop_database(url)


def latest_worker_pids(server: LiveServer) -> dict[int, int]:
    """Each worker's latest pid, as the supervisor logged it (read at once: under load the log
    never stops growing, which LiveServer.worker_pids waits for)."""
    started = r"\[supervisor\] worker (\d+) started, pid (\d+)"
    return {int(n): int(pid) for n, pid in re.findall(started, server.log_path.read_text())}


@pytest.fixture
def workers(tmp_path) -> Iterator[LiveServer]:
    """A service of two workers (4 threads each) on a new SQLite file, both ready."""
    server = LiveServer(
        tmp_path / "workers.log",
        *("--workers", "2", "--threads", "4", "--database", f"sqlite:///{tmp_path}/scores.db"),
        env=ENVIRONMENT,
    )
    try:
        server.start()
        server.wait_for_log(r"\[worker 1\] ready")
        server.wait_for_log(r"\[worker 2\] ready")
        yield server
    finally:
        server.kill()
        # A worker whose supervisor is gone stops by itself, but one hung on a lock takes its
        # time: end each worker this test started (its command line names this database).
        for pid in latest_worker_pids(server).values():
            with contextlib.suppress(OSError):
                if str(tmp_path).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)


# --- 1. rules changed through one process apply at another --------------------------------


def warm_up(server: LiveServer, level: int) -> None:
    """Requests on the level, each on a new connection: with workers, both take some, so
    each holds what it knows of the level before it changes."""
    for _ in range(12):
        listed(server, level)
        assert call(server, "GET", f"/{level}/seasons")[0] == 200


def probe_player_refused(server: LiveServer, level: int, key: str) -> None:
    status, body = player_post(server, level, key, 500)
    assert status == 403, f"a player's post under writes=server: {status} {body!r}"


def probe_below_min(server: LiveServer, level: int, key: str) -> None:
    status, body = writer_post(server, level, 1, 9)
    assert status == 422, f"9 posted under min_score 10: {status} {body!r}"


def probe_above_max(server: LiveServer, level: int, key: str) -> None:
    status, body = writer_post(server, level, 1, 1001)
    assert status == 422, f"1001 posted under max_score 1000: {status} {body!r}"


def probe_lowest_first(server: LiveServer, level: int, key: str) -> None:
    # The first post after the change is taken here: it is stored as the new order wants it.
    for user, score in ((3, 300), (1, 100), (2, 200), (4, 10), (5, 1000)):
        assert writer_post(server, level, user, score) == (200, "")
    assert listed(server, level) == "4=10,1=100,2=200,3=300,5=1000"


PROBES = [probe_player_refused, probe_below_min, probe_above_max, probe_lowest_first]


def rules_round(
    changer: LiveServer, follower: LiveServer, level: int, first: Callable[..., None]
) -> None:
    """Rules changed at changer are followed by the very next request follower answers
    (first), then by every other; then changed back, and followed back at once too."""
    key = login(follower, 77)  # before the change: the probe is the very next request
    warm_up(follower, level)
    assert listed(follower, level) == ""

    set_rules(changer, level, STRICT_RULES)
    first(follower, level, key)
    for probe in PROBES:
        if probe is not first:
            probe(follower, level, key)
    for server in (changer, follower):
        assert listed(server, level) == "4=10,1=100,2=200,3=300,5=1000"
        status, body = call(server, "GET", f"/{level}/rank/3")
        assert (status, body) == (200, "4")
        assert admin(server, "GET", f"/admin/levels/{level}/rules")["order"] == "asc"

    # Back to what any level has: the follower has used the strict rules for posts, and must
    # drop them at once. The order changes only in a new, empty season.
    set_rules(changer, level, {"writes": "players", "min_score": 0, "max_score": 2147483647})
    assert player_post(follower, level, key, 5) == (200, "")  # neither 403 nor 422 now
    assert writer_post(follower, level, 6, 2000) == (200, "")
    assert listed(follower, level) == "77=5,4=10,1=100,2=200,3=300,5=1000,6=2000"
    assert start_season(changer, level) == 2
    set_rules(changer, level, {"order": "desc"})
    for user, score in ((1, 100), (2, 300), (3, 200)):
        assert writer_post(follower, level, user, score) == (200, "")
    assert player_post(follower, level, key, 5) == (200, "")
    for server in (follower, changer):
        assert listed(server, level) == "2=300,3=200,1=100,77=5"
        # The past season keeps its own order.
        assert listed(server, level, "?season=1") == "77=5,4=10,1=100,2=200,3=300,5=1000,6=2000"
        rules = admin(server, "GET", f"/admin/levels/{level}/rules")
        assert {name: rules[name] for name in DEFAULT_RULES} == DEFAULT_RULES
        assert rules["season"] == 2


@pytest.mark.postgresql
def test_rules_changed_through_one_replica_apply_to_the_very_next_request_of_the_other(
    replicas,
):
    a, b = replicas
    levels = fresh_ids(2 * len(PROBES))
    for number, (level, first) in enumerate(zip(levels, PROBES * 2, strict=True)):
        changer, follower = (a, b) if number % 2 == 0 else (b, a)
        rules_round(changer, follower, level, first)


def test_rules_changed_through_one_worker_apply_to_the_very_next_request_of_either(workers):
    # The level cache is per process: whichever worker takes the next request follows.
    for level, first in zip(fresh_ids(len(PROBES)), PROBES, strict=True):
        rules_round(workers, workers, level, first)
    answered = re.findall(r"\[scoresvc\.access\] \[(worker \d)\]", workers.log_text())
    assert set(answered) == {"worker 1", "worker 2"}


# --- 2. a season boundary crossed under writes --------------------------------------------

POSTING_THREADS = 6
MAX_POSTS_PER_THREAD = 1500
BEFORE_BOUNDARY_S = 1.5
AFTER_BOUNDARY_S = 1.5


@dataclass
class Post:
    user: int
    score: int
    sent_at: float
    answered_at: float
    status: int | None
    error: str = ""


@dataclass
class SeasonPoster:
    """A client posting through the trusted writer, each post for a new user (so that each
    is one entry of its own, found in an export by its (user, score)), in turn to servers."""

    number: int
    level: int
    servers: list[LiveServer]
    posts: list[Post] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        for n in range(MAX_POSTS_PER_THREAD):
            if stop.is_set():
                return
            user = 10_000_000 * (self.number + 1) + n
            score = (user * 7919) % 1_000_003  # any number: (user, score) names the post
            server = self.servers[n % len(self.servers)]
            sent_at = time.monotonic()
            try:
                status, body = writer_post(server, self.level, user, score)
                error = "" if status == 200 else body
            except (OSError, http.client.HTTPException) as failure:
                status, error = None, repr(failure)
            self.posts.append(Post(user, score, sent_at, time.monotonic(), status, error))


def cross_a_season_boundary(servers: list[LiveServer], level: int, rules: dict) -> None:
    """Post from several threads to servers, start a new season through servers[0] in the
    middle, and check where every post landed."""
    # A manual boundary. A scheduled one falls at 00:00 in the level's time zone, and zone
    # offsets are whole quarter hours at the finest, so the next one may be up to 15 minutes
    # away whatever zone is picked: it cannot be placed within the seconds a test may take
    # (the model tests cross daily, weekly and monthly boundaries with a fake clock).
    if rules:
        set_rules(servers[0], level, rules)
    posters = [SeasonPoster(number, level, servers) for number in range(POSTING_THREADS)]
    stop = threading.Event()
    threads = [threading.Thread(target=poster.run, args=(stop,)) for poster in posters]
    for thread in threads:
        thread.start()
    try:
        time.sleep(BEFORE_BOUNDARY_S)
        boundary_sent = time.monotonic()
        assert start_season(servers[0], level) == 2
        boundary_answered = time.monotonic()
        time.sleep(AFTER_BOUNDARY_S)
    finally:
        stop.set()
        for thread in threads:
            thread.join(REQUEST_TIMEOUT_S + 5)
    assert not any(thread.is_alive() for thread in threads)

    posts = [post for poster in posters for post in poster.posts]
    failed = [post for post in posts if post.status != 200]
    assert failed == [], f"{len(failed)} posts not answered with 200, e.g. {failed[:3]}"
    sent = {(post.user, post.score) for post in posts}
    before = {(p.user, p.score) for p in posts if p.answered_at < boundary_sent}
    after = {(p.user, p.score) for p in posts if p.sent_at > boundary_answered}
    assert before and after, "the boundary did not fall among the posts"

    for server in servers:  # every replica reads the same two seasons
        first, second = exported(server, level, 1), exported(server, level, 2)
        assert first & second == set(), f"{len(first & second)} posts in both seasons"
        assert sent - first - second == set(), f"{len(sent - first - second)} posts lost"
        assert (first | second) - sent == set(), "entries nobody posted"
        # Answered before the boundary was asked for: the old season; sent after it was
        # answered: the new one. Only posts in flight across it may be in either.
        assert before - first == set(), f"{len(before - first)} early posts not in season 1"
        assert after - second == set(), f"{len(after - second)} late posts not in season 2"
        assert call(server, "GET", f"/admin/levels/{level}/export?season=3", None, ADMIN)[0] == 404
        assert call(server, "GET", f"/{level}/seasons") == (200, "1,2")
        status, text = call(
            server, "GET", f"/{level}/seasons", None, {"Accept": "application/json"}
        )
        assert status == 200, text
        seasons = json.loads(text)
        assert seasons["current"] == 2
        assert [s["players"] for s in seasons["seasons"]] == [len(first), len(second)]
        assert seasons["seasons"][0]["ended"] == seasons["seasons"][1]["started"]
    print(f"{len(posts)} posts: {len(first)} in season 1, {len(second)} in season 2")


def test_a_season_started_while_two_workers_take_posts_holds_each_post_once(workers):
    (level,) = fresh_ids(1)
    cross_a_season_boundary([workers], level, {})  # a level nobody configured


@pytest.mark.postgresql
def test_a_season_started_while_two_replicas_take_posts_holds_each_post_once(replicas):
    (level,) = fresh_ids(1)
    cross_a_season_boundary(replicas, level, {"writes": "server", "keep": "latest"})


# --- 3. idempotent retries across replicas (and workers) ---------------------------------


# Short: an answer that has not come by then is a hung process, not a slow server (a keyed
# post once re-read the banned users under the lock its own unit of work held).
IDEMPOTENT_TIMEOUT_S = 5.0


def sum_total(server: LiveServer, level: int, user: int) -> int | None:
    status, body = call(
        server,
        "GET",
        f"/{level}/rank/{user}",
        None,
        {"Accept": "application/json"},
        IDEMPOTENT_TIMEOUT_S,
    )
    if status == 404:
        return None
    assert status == 200, f"rank of {user} on {level}: {status} {body}"
    return json.loads(body)["score"]


def keyed_post(server: LiveServer, level: int, user: int, score: int, key: str):
    headers = {**WRITER, "Idempotency-Key": key}
    path = f"/{level}/score?user={user}"
    return call(server, "POST", path, str(score), headers, IDEMPOTENT_TIMEOUT_S)


def retry_elsewhere(a: LiveServer, b: LiveServer) -> None:
    """Posts to a sum level, each retried (its key) at the other process: counted once."""
    level, user, other_user = fresh_ids(3)
    set_rules(a, level, {"keep": "sum"})
    expected = 0
    for n in range(1, 21):
        key = f"retry-{level}-{n}"
        first, retried_at = (a, b) if n % 2 else (b, a)
        assert keyed_post(first, level, user, n, key) == (200, ""), f"post {n}"
        expected += n
        # The retry answers what the first post answered, and adds nothing, at either one.
        assert keyed_post(retried_at, level, user, n, key) == (200, ""), f"post {n}"
        assert keyed_post(first, level, user, n, key) == (200, ""), f"post {n}"
        assert sum_total(retried_at, level, user) == expected, f"post {n}"
        assert sum_total(first, level, user) == expected, f"post {n}"
    # A key belongs to its user and level: the same key from someone else is a post of its own.
    assert keyed_post(b, level, other_user, 7, f"retry-{level}-1") == (200, "")
    assert sum_total(a, level, other_user) == 7
    assert sum_total(a, level, user) == expected


CONCURRENT_COPIES = 4  # of each post, sent at one moment, half to each process


def send_to_both_at_once(a: LiveServer, b: LiveServer) -> None:
    """Each post sent CONCURRENT_COPIES times at one moment, half to a, half to b: once."""
    level, user, player = fresh_ids(3)
    set_rules(a, level, {"keep": "sum"})
    session_key = login(a, player)
    barrier = threading.Barrier(CONCURRENT_COPIES)

    def send(server: LiveServer, as_player: bool, score: int, key: str) -> tuple[int, str]:
        barrier.wait(REQUEST_TIMEOUT_S)
        if not as_player:
            return keyed_post(server, level, user, score, key)
        path = f"/{level}/score?sessionkey={session_key}"
        headers = {"Idempotency-Key": key}
        return call(server, "POST", path, str(score), headers, IDEMPOTENT_TIMEOUT_S)

    expected = {user: 0, player: 0}
    copies = [a, b] * (CONCURRENT_COPIES // 2)
    with ThreadPoolExecutor(CONCURRENT_COPIES) as pool:
        for n in range(1, 31):
            as_player = n % 3 == 0  # a player's own retries too
            key = f"both-{level}-{n}"
            every = [as_player] * CONCURRENT_COPIES, [n] * CONCURRENT_COPIES
            answers = list(pool.map(send, copies, *every, [key] * CONCURRENT_COPIES))
            assert answers == [(200, "")] * CONCURRENT_COPIES, f"post {n}: {answers}"
            expected[player if as_player else user] += n
            for server in (a, b):
                assert sum_total(server, level, user) == (expected[user] or None), f"post {n}"
                assert sum_total(server, level, player) == (expected[player] or None), n


@pytest.mark.postgresql
def test_a_post_retried_at_another_replica_with_its_idempotency_key_counts_once(replicas):
    retry_elsewhere(*replicas)


@pytest.mark.postgresql
def test_one_post_sent_to_both_replicas_at_once_with_one_idempotency_key_counts_once(replicas):
    send_to_both_at_once(*replicas)


def test_a_post_retried_at_either_worker_with_its_idempotency_key_counts_once(workers):
    # Each request on a new connection: either worker takes the first post and the retries.
    retry_elsewhere(workers, workers)


def test_one_post_sent_to_both_workers_at_once_with_one_idempotency_key_counts_once(workers):
    send_to_both_at_once(workers, workers)


# --- 4. kill -9 of a worker under retried posts to a sum level ----------------------------

SUM_CLIENTS = 8
MAX_LOGICAL_POSTS = 2000  # per client
RETRY_FOR_S = 15.0  # a logical post not answered 200 within this is a failure


@dataclass
class SumClient:
    """A user adding 1 to its sum, each logical post with an Idempotency-Key of its own,
    resent (the same key) until it is answered with 200."""

    user: int
    level: int
    server: LiveServer
    session_key: str | None = None  # None: through the trusted writer
    acknowledged: int = 0
    resent: int = 0
    errors: list[str] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        for n in range(MAX_LOGICAL_POSTS):
            if stop.is_set():
                return
            if not self.post_until_answered(f"sum-{self.user}-{n}"):
                return
            self.acknowledged += 1

    def post_until_answered(self, key: str) -> bool:
        if self.session_key is None:
            path, headers = f"/{self.level}/score?user={self.user}", {**WRITER}
        else:
            path, headers = f"/{self.level}/score?sessionkey={self.session_key}", {}
        headers["Idempotency-Key"] = key
        deadline = time.monotonic() + RETRY_FOR_S
        while True:
            try:
                status, body = call(self.server, "POST", path, "1", headers)
                if status == 200:
                    return True
                failure = f"{status} {body!r}"
                if status != 503:  # the database briefly unable to answer: retry
                    self.errors.append(f"user {self.user}, key {key}: {failure}")
                    return False
            except (OSError, http.client.HTTPException) as error:
                failure = repr(error)  # the worker died under the request: resend it
            if time.monotonic() > deadline:
                self.errors.append(f"user {self.user}, key {key}: still {failure}")
                return False
            self.resent += 1
            time.sleep(0.01)


def test_a_worker_killed_under_retried_posts_to_a_sum_level_counts_each_post_once(workers):
    server = workers
    (level,) = fresh_ids(1)
    set_rules(server, level, {"keep": "sum"})
    users = fresh_ids(SUM_CLIENTS)
    clients = [
        SumClient(user, level, server, login(server, user) if number % 2 else None)
        for number, user in enumerate(users)
    ]
    stop = threading.Event()
    threads = [threading.Thread(target=client.run, args=(stop,)) for client in clients]
    for thread in threads:
        thread.start()
    killed = []
    try:
        for worker in (1, 2, 1, 2):  # each worker twice, with posts in flight
            time.sleep(0.7)
            victim = latest_worker_pids(server)[worker]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            server.wait_for_log(rf"\[supervisor\] worker {worker} started, pid (?!{victim}\b)\d+")
            server.wait_for_log(rf"\[worker {worker}\] ready, pid (?!{victim}\b)\d+")
        time.sleep(0.7)
    finally:
        stop.set()
        for thread in threads:
            thread.join(RETRY_FOR_S + REQUEST_TIMEOUT_S + 5)
    assert not any(thread.is_alive() for thread in threads)
    for victim in killed:
        assert f"(pid {victim}) was killed by SIGKILL" in server.log_text()

    assert [error for client in clients for error in client.errors] == []
    assert all(client.acknowledged > 0 for client in clients)
    # Every logical post was answered 200 in the end (a client stops only between them), so
    # each user's sum is exactly the number of its posts: none counted twice, none lost.
    expected = {client.user: client.acknowledged for client in clients}
    found = {user: sum_total(server, level, user) for user in users}
    assert found == expected
    entries = dict(entry.split("=") for entry in listed(server, level).split(","))
    assert {int(user): int(score) for user, score in entries.items()} == expected
    resent = sum(client.resent for client in clients)
    print(f"{sum(expected.values())} posts summed, {resent} resends after {len(killed)} SIGKILLs")
