"""Connections spread over the workers: one far ahead of the other leaves it the next ones."""

import os
import re
import select
import signal
import time
from collections import Counter

import pytest

from scoresvc.serving.balancing import STALE_SECONDS
from tests.live.server import LiveServer
from tests.live.test_operating_live import until_both_workers_answer

ANSWERED_BY = r"\[scoresvc\.access\] \[worker (\d)\] .*GET /(\d+)/highscorelist"
# Long enough for a busy machine's workers to see a closed connection, well short of
# STALE_SECONDS, past which a stopped worker would not be waited for at all.
QUIET_SECONDS = 0.5
# How long the connections are watched while a worker is stopped: time for the other to take
# its share on a busy machine, and with QUIET_SECONDS well short of STALE_SECONDS.
WATCH_SECONDS = 1.0


@pytest.fixture
def server(start_server) -> LiveServer:
    server = start_server("--workers", "2")
    # Each has said how many connections it holds once it has answered one.
    until_both_workers_answer(server, "/900/highscorelist")
    # The warm-up closed its connections; a worker says it holds none at its loop's next pass
    # once it has seen its last one closed. A worker stopped before then would stay counted
    # with one, and the other would take a connection more than its share.
    time.sleep(QUIET_SECONDS)
    return server


def answer_on_new_connections(server: LiveServer, level: int, count: int) -> Counter:
    """Open count connections at once, then ask a list on each: how many each worker answered."""
    connections = [server.connection(timeout=10) for _ in range(count)]
    for connection in connections:
        connection.connect()
    for connection in connections:
        connection.request("GET", f"/{level}/highscorelist")
        assert connection.getresponse().status == 200
    for connection in connections:
        connection.close()
    answered = Counter(
        int(worker)
        for worker, answered_level in re.findall(ANSWERED_BY, server.log_text())
        if int(answered_level) == level
    )
    assert sum(answered.values()) == count
    return answered


def answered_within(connections: list, seconds: float) -> int:
    """How many of the connections have an answer waiting after seconds."""
    sockets = [connection.sock for connection in connections]
    answered: set = set()
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([s for s in sockets if s not in answered], [], [], left)
        answered.update(readable)
    return len(answered)


def test_connections_opened_together_are_shared_while_one_worker_is_paused(server):
    # With worker 2 stopped, worker 1 takes its share and one more (SLACK) and leaves the rest
    # waiting for worker 2; without the turns, it took all of them. Only the split while worker 2
    # is stopped is certain: once it goes on, the last connection goes to whichever of the two
    # accepts first, and on a busy machine worker 2 may be late enough to be left none.
    worker_2 = server.worker_pids()[2]
    os.kill(worker_2, signal.SIGSTOP)
    try:
        connections = [server.connection(timeout=10) for _ in range(4)]
        for connection in connections:
            connection.connect()
            connection.request("GET", "/5/highscorelist")  # answered once a worker accepts it
        answered_while_stopped = answered_within(connections, WATCH_SECONDS)
    finally:
        os.kill(worker_2, signal.SIGCONT)
    for connection in connections:
        assert connection.getresponse().status == 200
        connection.close()
    assert answered_while_stopped == 2


def test_a_worker_silent_for_long_is_not_waited_for(server):
    worker_2 = server.worker_pids()[2]
    os.kill(worker_2, signal.SIGSTOP)
    try:
        time.sleep(STALE_SECONDS + 0.5)
        answered = answer_on_new_connections(server, 6, 4)  # answered while worker 2 is stopped
    finally:
        os.kill(worker_2, signal.SIGCONT)
    assert answered == {1: 4}
