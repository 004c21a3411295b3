"""A score answered by one process is in the ranks, windows and pages any process answers next.

Two workers on one port (memory, file, PostgreSQL), and two replicas on one database (file,
PostgreSQL): each round one process answers a post with 200, then the rank, the window around
the user, the page from the user's rank (text and JSON) and the top list are read, each on a
new connection, and compared with tests.rankingmodel: a process that answered from anything
older than the database would show the user's previous place. Each read revalidates the tag
last seen for its request (from whichever process): a 304 where, and only where, the body is
unchanged.
"""

import json
import random

import pytest

from tests.databases import DATABASE_KINDS
from tests.live.load import login
from tests.live.server import LiveServer
from tests.live.test_replicas import fresh_ids, pairs, replicas  # noqa: F401 (a fixture)
from tests.live.test_workers import two_workers, workers_that_answered
from tests.rankingmodel import RankingModel

ROUNDS = 250
PLAYERS_AT_START = 40
JSON_ACCEPT = "application/json"


def get(server: LiveServer, path: str, headers: dict[str, str]) -> tuple[int, dict, bytes]:
    """GET path on a new connection: (status, headers by lower-case name, body)."""
    connection = server.connection()
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


class ReadAfterWrite:
    """Posts through one process and reads through others; RankingModel says what to read."""

    def __init__(self, level: int, users: list[int]) -> None:
        self.level = level
        self.users = users
        self.model = RankingModel()
        self.posts = 0  # the order in which scores were reached: that of the answered posts
        self.keys: dict[int, str] = {}
        self.last_seen: dict[tuple[str, bool], tuple[str, object]] = {}  # (path, json): tag, body
        self.random = random.Random(20261128)

    def post(self, writer: LiveServer, user: int, score: int) -> None:
        key = self.keys.setdefault(user, login(writer, user))
        status, body = writer.request("POST", f"/{self.level}/score?sessionkey={key}", str(score))
        assert (status, body) == (200, ""), f"POST {user}={score} on port {writer.port}"
        self.posts += 1
        self.model.post(self.level, user, score, self.posts)

    def next_score(self, user: int) -> int:
        """A score for user: mostly a new best (a tie, a step, a jump), sometimes no better."""
        own = self.model.best.get(self.level, {}).get(user, (0, 0))[0]
        others = [score for score, _ in self.model.best.get(self.level, {}).values()]
        kind = self.random.random()
        if kind < 0.3 and others:
            return self.random.choice(others)  # a tie, if it beats the user's own
        if kind < 0.55:
            return own + self.random.randint(1, 3)
        if kind < 0.9:
            # Anywhere among the others, across multiples of 256 and 65536.
            return self.random.randint(own + 1, max(others, default=0) + 70_000)
        return max(own - self.random.randint(0, 2), 0)  # no better: nothing changes

    def read(self, reader: LiveServer, path: str, as_json: bool, expected, round_: str) -> None:
        """GET path from reader; it must be expected, and revalidate the tag last seen."""
        headers = {"Accept": JSON_ACCEPT} if as_json else {}
        previous = self.last_seen.get((path, as_json))
        if previous is not None:
            headers["If-None-Match"] = previous[0]
        status, response_headers, body = get(reader, path, headers)
        where = f"{round_}: GET {path} {'JSON' if as_json else 'text'} on port {reader.port}"
        assert "accept" in response_headers.get("vary", "").lower(), where
        if previous is not None and previous[1] == expected:
            assert (status, body) == (304, b""), f"{where}: {status} {body!r}, not 304"
            assert response_headers["etag"] == previous[0], where
            return
        assert status == 200, f"{where}: {status} {body!r}, where {expected!r} was due"
        got = json.loads(body) if as_json else body.decode()
        assert got == expected, f"{where}: {got!r} read, {expected!r} expected"
        etag = response_headers["etag"]
        if previous is not None:
            assert etag != previous[0], f"{where}: a new body under the old tag {etag}"
        self.last_seen[(path, as_json)] = (etag, expected)

    def check(self, reader: LiveServer, user: int, round_: str) -> None:
        """Everything about user's place, as reader answers it, is the model's."""
        level, model = self.level, self.model
        found = model.rank(level, user)
        assert found is not None
        rank, score, players = found
        self.read(reader, f"/{level}/rank/{user}", False, str(rank), round_)
        document = {"level": level, "user": user, "rank": rank, "score": score, "players": players}
        self.read(reader, f"/{level}/rank/{user}", True, document, round_)
        around = model.window_around(level, user)
        self.read(reader, f"/{level}/highscorelist?around={user}", False, text(around), round_)
        page = model.window_from(level, rank)
        self.read(reader, f"/{level}/highscorelist?from={rank}", True, listing(level, page), round_)
        self.read(
            reader, f"/{level}/highscorelist", False, text(model.window_from(level, 1)), round_
        )

    def run(self, processes: list[LiveServer], rounds: int) -> None:
        """A level of PLAYERS_AT_START, then rounds of one post and reads from every process.

        Round n posts through processes[n % len(processes)] and reads through each of them,
        the ones that did not answer the post first.
        """
        for number, user in enumerate(self.users[:PLAYERS_AT_START]):
            self.post(processes[number % len(processes)], user, self.random.randint(0, 100_000))
        for number in range(rounds):
            writer = processes[number % len(processes)]
            user = self.random.choice(self.users)
            score = self.next_score(user)
            self.post(writer, user, score)
            round_ = f"round {number}, {user}={score} posted on port {writer.port}"
            readers = (
                processes[number % len(processes) + 1 :] + processes[: number % len(processes) + 1]
            )
            for reader in readers:
                self.check(reader, user, round_)


def text(window) -> str:
    return ",".join(f"{user}={score}" for _, user, score in window[0])


def listing(level: int, window) -> dict:
    entries, players = window
    places = [{"rank": rank, "user": user, "score": score} for rank, user, score in entries]
    return {"level": level, "players": players, "entries": places}


@pytest.mark.parametrize("database", DATABASE_KINDS)
def test_ranks_windows_and_pages_of_either_worker_include_every_score_answered_before(
    start_server, request, tmp_path, database
):
    server = start_server(*two_workers(request, tmp_path, database))
    # Each request on a new connection, which either worker may accept: "both" readers are the
    # one port, read twice.
    ReadAfterWrite(level=5, users=list(range(1, 61))).run([server, server], ROUNDS)
    assert workers_that_answered(server) == {"worker 1", "worker 2"}


@pytest.mark.parametrize("replicas", pairs("signed"), indirect=True)
def test_ranks_windows_and_pages_of_either_replica_include_every_score_the_other_answered(
    replicas,  # noqa: F811 (the fixture)
):
    (level,) = fresh_ids(1)
    ReadAfterWrite(level, users=fresh_ids(60)).run([replicas.a, replicas.b], ROUNDS)
