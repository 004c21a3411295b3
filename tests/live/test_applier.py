"""The applier: the process beside the workers that applies their write journal."""

import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.live.load import login
from tests.live.server import LiveServer
from tests.live.test_operating_live import scrape

APPLIER_STARTED = r"\[supervisor\] applier started, pid (\d+)"


def applier_pid(server: LiveServer) -> int:
    """The pid of the latest applier, from the supervisor's log."""
    return int(server.wait_for_log(r"\[applier\] ready, pid (\d+)")[1])


def scores_in_file(database: Path, level: int) -> dict[int, int]:
    """The scores of level as the file holds them, read beside the service, not through it."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT user_id, score FROM best_scores WHERE level_id = ?", (level,)
        ).fetchall()
    connection.close()
    return dict(rows)


def wait_for_scores(database: Path, level: int, expected: dict[int, int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (found := scores_in_file(database, level)) != expected:
        assert time.monotonic() < deadline, f"the file holds {found}, not {expected}"
        time.sleep(0.01)


@pytest.fixture
def service(start_server, tmp_path) -> tuple[LiveServer, Path]:
    database = tmp_path / "scores.db"
    server = start_server("--workers", "2", "--database", f"sqlite:///{database}")
    server.wait_for_log(r"\[worker 1\] ready")
    server.wait_for_log(r"\[worker 2\] ready")
    return server, database


def test_posts_reach_the_file_with_no_read_through_the_service(service):
    server, database = service
    applier_pid(server)
    keys = {user: login(server, user) for user in range(1, 21)}
    for user, key in keys.items():
        assert server.request("POST", f"/8/score?sessionkey={key}", str(user * 10)) == (200, "")
    wait_for_scores(database, 8, {user: user * 10 for user in keys}, timeout=2)


def test_the_new_bests_it_applies_are_counted_and_it_is_no_worker(service):
    server, database = service
    applier_pid(server)
    keys = {user: login(server, user) for user in range(1, 11)}
    for user, key in keys.items():
        assert server.request("POST", f"/8/score?sessionkey={key}", str(user)) == (200, "")
        assert server.request("POST", f"/8/score?sessionkey={key}", "0") == (200, "")
    wait_for_scores(database, 8, dict(zip(keys, keys, strict=True)), timeout=2)
    samples = scrape(server)
    assert samples[("scoresvc_scores_new_best_total", ())] == 10
    assert samples[("scoresvc_workers", ())] == 2


def test_while_the_applier_is_stopped_posts_wait_and_a_read_still_sees_them(service):
    server, database = service
    pid = applier_pid(server)
    key = login(server, 4711)
    os.kill(pid, signal.SIGSTOP)
    try:
        for score in (100, 200, 300):
            assert server.request("POST", f"/9/score?sessionkey={key}", str(score)) == (200, "")
        time.sleep(0.3)  # far past a worker's few milliseconds, had it applied them itself
        # The workers only accept. (A post may apply those before it, if it reads first: the
        # level's rules, new to that worker; nothing came after the last.)
        assert scores_in_file(database, 9).get(4711) != 300
        assert server.request("GET", "/9/highscorelist") == (200, "4711=300")  # applied first
        assert scores_in_file(database, 9) == {4711: 300}
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_killed_applier_is_replaced_and_what_waited_is_applied(service):
    server, database = service
    pid = applier_pid(server)
    key = login(server, 31)
    os.kill(pid, signal.SIGSTOP)
    assert server.request("POST", f"/10/score?sessionkey={key}", "1234") == (200, "")
    os.kill(pid, signal.SIGKILL)
    server.wait_for_log(rf"\[supervisor\] applier \(pid {pid}\) was killed by SIGKILL")
    server.wait_for_log(rf"\[supervisor\] applier started, pid (?!{pid}\b)\d+", 2)
    wait_for_scores(database, 10, {31: 1234}, timeout=5)
    assert server.request("GET", "/10/highscorelist") == (200, "31=1234")


def test_no_applier_where_writes_are_committed_before_they_are_answered(start_server, tmp_path):
    database = tmp_path / "scores.db"
    server = start_server(
        "--workers",
        "2",
        "--database",
        f"sqlite:///{database}",
        env={"SCORESVC_SQLITE_SYNCHRONOUS": "FULL"},
    )
    server.wait_for_log(r"\[worker 2\] ready")
    key = login(server, 5)
    assert server.request("POST", f"/11/score?sessionkey={key}", "50") == (200, "")
    assert scores_in_file(database, 11) == {5: 50}  # committed before the answer
    assert "applier" not in server.log_text()


def test_stopping_the_service_applies_what_waits(service):
    server, database = service
    pid = applier_pid(server)
    key = login(server, 77)
    os.kill(pid, signal.SIGSTOP)
    assert server.request("POST", f"/12/score?sessionkey={key}", "777") == (200, "")
    os.kill(pid, signal.SIGCONT)
    assert server.stop() == 0
    assert "[applier] stopped" in server.log_text()
    assert scores_in_file(database, 12) == {77: 777}
