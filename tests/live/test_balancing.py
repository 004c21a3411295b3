"""Connections spread over the workers: one far ahead of the other leaves it the next ones."""

import os
import re
import signal
import time
from collections import Counter

import pytest

from scoresvc.serving.balancing import STALE_SECONDS
from tests.live.server import LiveServer
from tests.live.test_operating_live import until_both_workers_answer

ANSWERED_BY = r"\[scoresvc\.access\] \[worker (\d)\] .*GET /(\d+)/highscorelist"


@pytest.fixture
def server(start_server) -> LiveServer:
    server = start_server("--workers", "2")
    # Each has said how many connections it holds once it has answered one.
    until_both_workers_answer(server, "/900/highscorelist")
    return server


def answer_on_new_connections(server: LiveServer, level: int, count: int, before=None) -> Counter:
    """Open count connections at once, then ask a list on each: how many each worker answered."""
    connections = [server.connection(timeout=10) for _ in range(count)]
    for connection in connections:
        connection.connect()
    if before is not None:
        before()
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


def test_connections_opened_together_are_shared_while_one_worker_is_paused(server):
    # With worker 2 stopped, worker 1 takes its share (and one more) and leaves the rest
    # waiting for worker 2; without the turns, it took all of them.
    worker_2 = server.worker_pids()[2]
    os.kill(worker_2, signal.SIGSTOP)
    try:
        answered = answer_on_new_connections(
            server, 5, 4, before=lambda: (time.sleep(0.3), os.kill(worker_2, signal.SIGCONT))
        )
    finally:
        os.kill(worker_2, signal.SIGCONT)
    assert answered == {1: 2, 2: 2}


def test_a_worker_silent_for_long_is_not_waited_for(server):
    worker_2 = server.worker_pids()[2]
    os.kill(worker_2, signal.SIGSTOP)
    try:
        time.sleep(STALE_SECONDS + 0.5)
        answered = answer_on_new_connections(server, 6, 4)  # answered while worker 2 is stopped
    finally:
        os.kill(worker_2, signal.SIGCONT)
    assert answered == {1: 4}
