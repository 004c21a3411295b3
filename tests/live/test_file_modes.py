"""File modes on a real server under the usual umask 022: what it makes is its owner's alone,
and a symbolic link planted in the place of one of its files stops the start."""

import os
import stat
import subprocess
import sys

import pytest

from scoresvc.storage.leftoverjournal import journal_path
from tests.integration.test_leftover_journal import PLANTED, write_journal


@pytest.fixture
def umask_022():
    """The test's processes, and the servers they start, under umask 022; put back after."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def start_refused(*args: str) -> subprocess.CompletedProcess:
    """scoresvc run with args, expected to stop at its start."""
    return subprocess.run(
        [sys.executable, "-m", "scoresvc", "--host", "127.0.0.1", "--port", "0", *args],
        capture_output=True,
        timeout=30,
        text=True,
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_log_file_and_the_level_versions_file_are_made_0600(
    start_server, tmp_path, umask_022, workers
):
    database, logfile = tmp_path / "scores.db", tmp_path / "scoresvc.log"
    server = start_server(
        "--database", f"sqlite:///{database}", "--logfile", str(logfile), "--workers", workers
    )
    _, key = server.request("GET", "/1/login")
    assert server.request("POST", f"/1/score?sessionkey={key}", "5") == (200, "")
    assert mode(logfile) == 0o600
    assert mode(f"{database}-levels") == 0o600
    assert server.stop() == 0


@pytest.mark.parametrize("planted", ["logfile", "levels"])
def test_a_symbolic_link_in_the_place_of_a_file_of_the_service_stops_the_start(
    tmp_path, umask_022, planted
):
    database, logfile = tmp_path / "scores.db", tmp_path / "scoresvc.log"
    target = tmp_path / "someone-elses-file"
    target.write_text("keep me\n")
    link = logfile if planted == "logfile" else tmp_path / "scores.db-levels"
    link.symlink_to(target)
    finished = start_refused("--database", f"sqlite:///{database}", "--logfile", str(logfile))
    assert finished.returncode == 1
    assert finished.stderr.startswith("scoresvc: cannot start: ")
    assert f"{link} is a symbolic link" in finished.stderr
    assert finished.stderr.count("\n") == 1  # one line, no trace
    assert target.read_text() == "keep me\n"


def test_a_journal_someone_else_could_have_written_stops_the_start(tmp_path):
    database = tmp_path / "scores.db"
    write_journal(journal_path(database), PLANTED)
    if os.geteuid() == 0:  # root can give it to another user
        os.chown(journal_path(database), 65534, 65534)  # nobody's
        why = "belongs to user 65534"
    else:  # anyone else can leave it writable by every user
        os.chmod(journal_path(database), 0o666)
        why = "may be written by every user"
    finished = start_refused("--database", f"sqlite:///{database}")
    assert finished.returncode == 1
    assert finished.stderr.startswith("scoresvc: cannot start: the 1.0 score journal ")
    assert why in finished.stderr
