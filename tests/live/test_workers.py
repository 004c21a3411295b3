"""Several worker processes on one port: one service, a dead worker replaced, a clean stop."""

import logging
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from scoresvc.serving.supervisor import (
    SHARED_MEMORY,
    Supervisor,
    database_for_workers,
)
from scoresvc.settings import Settings
from tests.databases import DATABASE_KINDS, empty_database_url
from tests.live.load import assert_every_acknowledged_score_is_listed, login, posters, running
from tests.live.server import LiveServer

# Every line a worker or the supervisor writes: whole, and saying which process wrote it.
LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) \[[\w.]+\] "
    r"\[(supervisor|worker [12]|applier)\] .*"
)
MEMORY_DIRECTORY = r"memory database for the workers in (\S+)"
# Where an answered score must outlive the service (a memory database ends with it).
DURABLE_KINDS = ("file", "postgresql")


def two_workers(request: pytest.FixtureRequest, tmp_path: Path, database: str) -> list[str]:
    """The flags of a service of two workers on a new database of the given kind."""
    return ["--workers", "2", "--database", empty_database_url(database, request, tmp_path)]


def workers_that_answered(server: LiveServer) -> set[str]:
    return set(re.findall(r"\[scoresvc\.access\] \[(worker \d)\]", server.log_text()))


def alive(pid: int) -> bool:
    """Whether pid is a live process (not gone, not a zombie waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("database", DATABASE_KINDS)
def test_two_workers_log_in_take_scores_and_list_them(start_server, request, tmp_path, database):
    server = start_server(*two_workers(request, tmp_path, database))
    key = login(server, 4711)
    assert server.request("POST", f"/2/score?sessionkey={key}", "1500") == (200, "")
    assert server.request("GET", "/2/highscorelist") == (200, "4711=1500")
    assert server.request("POST", "/2/score?sessionkey=forged", "1")[0] == 401
    assert sorted(server.worker_pids()) == [1, 2]


@pytest.mark.parametrize("database", DATABASE_KINDS)
def test_a_score_answered_by_either_worker_is_in_the_very_next_list(
    start_server, request, tmp_path, database
):
    server = start_server(*two_workers(request, tmp_path, database))
    key = login(server, 7)
    stale = []
    for score in range(1, 201):
        # Each request on a new connection, which either worker may accept.
        assert server.request("POST", f"/3/score?sessionkey={key}", str(score)) == (200, "")
        listed = server.request("GET", "/3/highscorelist")
        if listed != (200, f"7={score}"):
            stale.append((score, listed))
    assert stale == []
    assert workers_that_answered(server) == {"worker 1", "worker 2"}


@pytest.mark.parametrize("database", DURABLE_KINDS)
def test_a_killed_worker_is_replaced_within_two_seconds_and_no_answered_score_is_lost(
    start_server, request, tmp_path, database
):
    server = start_server(*two_workers(request, tmp_path, database), "--threads", "4")
    server.wait_for_log(r"\[worker 1\] ready")
    server.wait_for_log(r"\[worker 2\] ready")
    victim, survivor = server.worker_pids()[1], server.worker_pids()[2]
    writers = posters(server, range(101, 105), pause_s=0)
    with running(writers, server.port):
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        server.wait_for_log(rf"\[supervisor\] worker 1 started, pid (?!{victim}\b)\d+", 2)
        replaced_at = time.monotonic()
        time.sleep(1)  # the replacement at work, among the others
    assert replaced_at - killed_at < 2
    assert f"worker 1 (pid {victim}) was killed by SIGKILL" in server.log_text()
    assert server.worker_pids()[2] == survivor  # untouched
    answers = [answer for writer in writers for answer in writer.answers]
    # At most the one request each client had in flight when the worker died failed.
    failed = [str(answer) for answer in answers if answer.status != 200]
    assert len(failed) <= len(writers), failed
    answered_at = [a.sent_at + a.seconds for a in answers if a.status == 200]
    assert any(killed_at < t < killed_at + 0.5 for t in answered_at)  # answering went on
    assert any(t > replaced_at + 0.5 for t in answered_at)
    assert all(writer.acknowledged > 0 for writer in writers)
    assert_every_acknowledged_score_is_listed(server, writers)


def test_a_worker_replaced_while_the_database_cannot_be_opened_waits_for_it(start_server, tmp_path):
    database = tmp_path / "scores.db"
    server = start_server("--workers", "2", "--database", f"sqlite:///{database}")
    server.wait_for_log(r"\[worker 1\] ready")
    database.rename(tmp_path / "moved.db")
    database.mkdir()  # where the file was, something SQLite cannot open
    os.kill(server.worker_pids()[1], signal.SIGKILL)
    server.wait_for_log(r"\[worker 1\] waiting for the database: ")
    time.sleep(1.5)  # a try or two more
    assert server.process.poll() is None  # the service goes on
    database.rmdir()
    (tmp_path / "moved.db").rename(database)
    server.wait_for_log(rf"\[worker 1\] ready, pid {server.worker_pids()[1]}\b")
    key = login(server, 5)
    assert server.request("POST", f"/5/score?sessionkey={key}", "50") == (200, "")
    assert server.request("GET", "/5/highscorelist") == (200, "5=50")


@pytest.mark.parametrize("database", DURABLE_KINDS)
def test_sigterm_under_write_load_exits_0_and_keeps_every_answered_score(
    start_server, request, tmp_path, database
):
    arguments = two_workers(request, tmp_path, database)
    server = start_server(*arguments)
    writers = posters(server, range(201, 205), pause_s=0)
    with running(writers, server.port):
        time.sleep(0.5)
        exit_status = server.stop(timeout=40)
    assert exit_status == 0
    log = server.log_text()
    assert "[worker 1] stopped" in log and "[worker 2] stopped" in log
    assert "[supervisor] stopped" in log
    assert "Traceback" not in log
    assert all(writer.acknowledged > 0 for writer in writers)
    assert_every_acknowledged_score_is_listed(start_server(*arguments), writers)


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_the_memory_database_lives_in_shared_memory_until_the_service_stops(
    start_server, request, tmp_path, signal_name
):
    server = start_server(*two_workers(request, tmp_path, "memory"))
    directory = Path(server.wait_for_log(MEMORY_DIRECTORY)[1])
    assert directory.parent == Path(SHARED_MEMORY)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    key = login(server, 1)
    assert server.request("POST", f"/1/score?sessionkey={key}", "10") == (200, "")
    server.process.send_signal(getattr(signal, signal_name))
    assert server.process.wait(10) == 0
    assert not directory.exists()
    assert list(tmp_path.glob("*.db*")) == []  # nothing on disk


def test_a_killed_supervisor_takes_its_workers_and_its_memory_database_with_it(start_server):
    server = start_server("--workers", "2")
    directory = Path(server.wait_for_log(MEMORY_DIRECTORY)[1])
    # Both workers started: a supervisor killed before it forks them (while it migrates the
    # database) leaves the directory to nobody.
    server.wait_for_log(r"worker 2 started")
    server.wait_for_log(r"applier started")
    started = server.started_pids()  # the workers and the applier: each may be the last out
    server.kill()  # SIGKILL: the supervisor has no chance to stop them itself
    deadline = time.monotonic() + 10
    while any(map(alive, started)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(alive, started))
    assert not directory.exists()


def test_lines_from_both_workers_on_one_pipe_are_whole_and_say_who_wrote_them(request, tmp_path):
    server = LiveServer(
        tmp_path / "server.log", *two_workers(request, tmp_path, "memory"), log_through_pipe=True
    ).start()
    try:

        def request_long_paths(worker_thread: int) -> None:
            # Paths the access log cuts at 1 KiB; and some of control characters, which it
            # shows escaped, four bytes each: lines over PIPE_BUF, which the log cuts to fit.
            for n in range(60):
                if n % 4:
                    server.request("GET", f"/{worker_thread}/highscorelist?{'ab.' * 1150}")
                else:
                    server.request("GET", f"/{worker_thread}/x/{'%01' * 1100}")

        threads = [threading.Thread(target=request_long_paths, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert server.stop() == 0
    finally:
        server.kill()
    lines = server.log_text().splitlines()
    assert [line for line in lines if not LINE.fullmatch(line)] == []
    access = Counter(re.findall(r"\[scoresvc\.access\] \[(worker \d)\]", "\n".join(lines)))
    assert set(access) == {"worker 1", "worker 2"}
    assert sum(access.values()) == 4 * 60
    assert sum("characters cut...]" in line for line in lines) == 4 * 15
    assert sum("characters cut] " in line for line in lines) == 4 * 60


class FailingToBoot:
    """make_server for a Supervisor under test: every worker fails to make its server."""

    def __call__(self, app, settings, sockets, share):
        raise RuntimeError("no server today")


class IgnoringSigterm:
    """make_server for a Supervisor under test: a server that asks its supervisor to stop,
    then ignores the SIGTERM that follows."""

    def __call__(self, app, settings, sockets, share):
        return self

    def run(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.kill(os.getppid(), signal.SIGTERM)
        time.sleep(60)

    def close(self) -> None:
        pass


def supervisor_settings(tmp_path: Path) -> Settings:
    return Settings(
        host="127.0.0.1", port=0, workers=2, database_url=f"sqlite:///{tmp_path}/scores.db"
    )


def test_a_worker_that_cannot_boot_stops_the_service_with_status_1(tmp_path):
    supervisor = Supervisor(supervisor_settings(tmp_path), make_server=FailingToBoot())
    started = time.monotonic()
    assert supervisor.run() == 1
    assert time.monotonic() - started < 10  # not replaced in a loop


def test_workers_still_running_after_the_stop_timeout_are_killed(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="scoresvc")
    supervisor = Supervisor(
        supervisor_settings(tmp_path), make_server=IgnoringSigterm(), stop_timeout=0.5
    )
    started = time.monotonic()
    assert supervisor.run() == 0
    assert time.monotonic() - started < 10
    assert "still running after 0.5s: killing them" in caplog.text
    assert "was killed by SIGKILL" in caplog.text


_SIGTERM_AT_BIRTH = """
import os, signal, sys, threading
from pathlib import Path
from scoresvc.logconfig import configure_logging
from scoresvc.serving.cli import waitress_server
from scoresvc.serving.supervisor import Supervisor
from scoresvc.settings import Settings

marker = Path(sys.argv[1]) / "first-worker-signalled"

def sigterm_the_first_worker_at_birth():
    if not marker.exists():  # only the first: its replacement must be left to serve
        marker.touch()
        os.kill(os.getpid(), signal.SIGTERM)

os.register_at_fork(after_in_child=sigterm_the_first_worker_at_birth)
configure_logging(None, process_name="supervisor")
threading.Timer(4, os.kill, (os.getpid(), signal.SIGTERM)).start()
url = f"sqlite:///{sys.argv[1]}/scores.db"
settings = Settings(host="127.0.0.1", port=0, workers=2, database_url=url)
sys.exit(Supervisor(settings, make_server=waitress_server).run())
"""


def test_a_sigterm_that_reaches_a_worker_as_it_is_forked_stops_it(tmp_path):
    # Before its own handlers are in place, a worker still has the supervisor's, which would
    # only queue the signal: the worker would serve on, deaf to the SIGTERM it was sent.
    stopped = subprocess.run(
        [sys.executable, "-c", _SIGTERM_AT_BIRTH, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stopped.returncode == 0, stopped.stderr
    first = re.search(r"worker 1 started, pid (\d+)", stopped.stderr)[1]
    assert f"worker 1 (pid {first}) exited with status 0" in stopped.stderr
    assert len(re.findall(r"worker 1 started", stopped.stderr)) == 2  # replaced, then stopped


def test_a_memory_database_for_workers_is_a_private_directory_in_shared_memory_removed_after():
    with pytest.raises(RuntimeError), database_for_workers(Settings()) as shared:
        settings, directory = shared.settings, shared.directory
        assert settings.database_url == f"sqlite:///{directory}/scores.db"
        assert Path(directory).parent == Path(SHARED_MEMORY)
        assert stat.S_IMODE(Path(directory).stat().st_mode) == 0o700
        assert settings.sqlite_synchronous == "OFF"
        raise RuntimeError("the service failed to start")
    assert not Path(directory).exists()


def test_a_database_file_is_given_to_the_workers_as_it_is(tmp_path):
    file_settings = Settings(database_url=f"sqlite:///{tmp_path}/scores.db")
    with database_for_workers(file_settings) as shared:
        assert (shared.settings, shared.directory) == (file_settings, None)
