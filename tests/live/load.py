"""Client load for live tests: threads posting scores and reading lists, recording every answer."""

import http.client
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from tests.httpclient import request
from tests.live.server import LiveServer

# Longer than any answer may take: a request still unanswered then is recorded as a hang.
REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Answer:
    """One request: what it was, when it was sent, how long it took, and its status (None: no
    answer, with the error instead)."""

    call: str
    sent_at: float
    seconds: float
    status: int | None
    error: str = ""

    def __str__(self) -> str:
        outcome = self.status if self.status is not None else self.error
        return f"{self.call} -> {outcome} after {self.seconds:.2f}s"


def timed_request(port: int, method: str, path: str, body: str | None = None) -> Answer:
    """One request on a new connection, as an Answer; a failure to get one is recorded too."""
    call = f"{method} {path.split('?')[0]}"
    sent_at = time.monotonic()
    try:
        status, _ = request(port, method, path, body, timeout=REQUEST_TIMEOUT_S)
    except (OSError, http.client.HTTPException) as error:
        return Answer(call, sent_at, time.monotonic() - sent_at, None, repr(error))
    return Answer(call, sent_at, time.monotonic() - sent_at, status)


class Client(Protocol):
    """A load client: it sends requests to port until stop is set."""

    def run(self, port: int, stop: threading.Event) -> None: ...


@dataclass
class Poster:
    """One user posting ever-higher scores, each on a new connection, to a level of its own: the
    level's list shows whatever the database holds for the user."""

    user_id: int
    level: int
    key: str = ""
    sent: int = 0  # the highest score sent: it may be committed though its answer was lost
    acknowledged: int = 0  # the highest score answered with 200
    pause_s: float = 0.005  # between requests, so that the load leaves the server some CPU
    answers: list[Answer] = field(default_factory=list)

    def run(self, port: int, stop: threading.Event) -> None:
        while not stop.is_set():
            self.sent += 1
            path = f"/{self.level}/score?sessionkey={self.key}"
            answer = timed_request(port, "POST", path, str(self.sent))
            self.answers.append(answer)
            if answer.status == 200:
                self.acknowledged = self.sent
            stop.wait(self.pause_s)


@dataclass
class Reader:
    """A client reading the lists of some levels in turn, each on a new connection."""

    levels: list[int]
    pause_s: float = 0.005
    answers: list[Answer] = field(default_factory=list)

    def run(self, port: int, stop: threading.Event) -> None:
        while not stop.is_set():
            for level in self.levels:
                self.answers.append(timed_request(port, "GET", f"/{level}/highscorelist"))
            stop.wait(self.pause_s)


def posters(
    server: LiveServer, levels: Iterable[int], pause_s: float = Poster.pause_s
) -> list[Poster]:
    """A logged-in Poster per level, its user id the level's number, pause_s between posts."""
    return [Poster(level, level, key=login(server, level), pause_s=pause_s) for level in levels]


@contextmanager
def running(clients: Iterable[Client], port: int) -> Iterator[None]:
    """The clients' loops, each in a thread, for as long as the block runs; then stopped."""
    stop = threading.Event()
    threads = [threading.Thread(target=client.run, args=(port, stop)) for client in clients]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT_S + 5)
    assert not any(thread.is_alive() for thread in threads), "a client thread did not stop"


def login(server: LiveServer, user_id: int) -> str:
    """A new session key for user_id."""
    status, key = server.request("GET", f"/{user_id}/login")
    assert status == 200, f"login of user {user_id}: {status} {key}"
    return key


def listed_scores(server: LiveServer, level: int) -> dict[int, int]:
    """The level's high score list as {user: score}."""
    status, body = server.request("GET", f"/{level}/highscorelist")
    assert status == 200, f"list of level {level}: {status} {body}"
    return {int(user): int(score) for user, score in (e.split("=") for e in body.split(",") if e)}


def assert_every_acknowledged_score_is_listed(
    server: LiveServer, posters: Iterable[Poster]
) -> None:
    """Each poster's best is listed, never below its best answered with 200, and above it only
    by a score that was sent (committed, its answer lost to the fault)."""
    for poster in posters:
        listed = listed_scores(server, poster.level).get(poster.user_id, 0)
        assert poster.acknowledged <= listed <= poster.sent, (
            f"user {poster.user_id} on level {poster.level}: {listed} listed, but "
            f"{poster.acknowledged} was answered with 200 and {poster.sent} was the last sent"
        )
