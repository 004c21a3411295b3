"""SIGKILL under a concurrent write load, in file mode: no acknowledged write or key is lost."""

import contextlib
import http.client
import os
import random
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass, field

import pytest

from tests.live.load import listed_scores, login, running

ROUNDS = 3
WRITERS = 12  # one user each, on levels of their own round: every list shows every user
LEVELS_PER_ROUND = 3
KEY_CHECK_LEVEL = 99  # old keys are tried here, away from the levels under test


@dataclass
class Writer:
    """One client: its user, its key, and every score it sent and had acknowledged."""

    user_id: int
    levels: tuple[int, ...]
    key: str = ""
    acknowledged_count: int = 0
    sent: dict[int, int] = field(default_factory=dict)  # level -> highest score sent
    acknowledged: dict[int, int] = field(default_factory=dict)  # level -> highest with a 200
    errors: list[str] = field(default_factory=list)

    def run(self, port: int, stop: threading.Event) -> None:
        """Post ever-higher scores, round-robin over the levels, until the server dies."""
        rng = random.Random(self.user_id)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        score = 0
        try:
            while not stop.is_set():
                score += rng.randrange(1, 1000)
                level = self.levels[score % len(self.levels)]
                self.sent[level] = score  # before sending: it may be committed unanswered
                connection.request("POST", f"/{level}/score?sessionkey={self.key}", str(score))
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    self.errors.append(f"{response.status} for user {self.user_id}")
                    return
                self.acknowledged[level] = score
                self.acknowledged_count += 1
        except (OSError, http.client.HTTPException):
            return  # the server was killed under us: what was acknowledged must survive
        finally:
            connection.close()


def integrity_check(database_path) -> str:
    # Read-only, beside the running server (WAL lets a reader in while it writes).
    connection = sqlite3.connect(f"file:{database_path}?mode=ro", uri=True, timeout=10)
    try:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        connection.close()


def kill_the_whole_service(server) -> None:
    """SIGKILL every process of the service at once: its workers as well as the supervisor
    (which, killed alone, would have its workers stopped gracefully by the kernel's SIGTERM)."""
    for pid in server.worker_pids().values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.kill()


@pytest.mark.parametrize("mode", [[], ["--store-tokens"]], ids=["signed-keys", "stored-keys"])
@pytest.mark.parametrize("processes", [[], ["--workers", "2"]], ids=["one-process", "2-workers"])
def test_sigkill_under_write_load_loses_no_acknowledged_score_and_no_session_key(
    start_server, tmp_path, mode, processes
):
    database_path = tmp_path / "scores.db"
    arguments = ["--database", f"sqlite:///{database_path}", "--threads", "8", *mode, *processes]
    rng = random.Random(20261123)
    all_writers: list[Writer] = []
    acknowledged_total = 0
    levels: list[int] = []

    server = start_server(*arguments)
    for round_number in range(ROUNDS):
        # New users and levels each round: every key issued in any round must still work at the
        # end, and every list holds at most 12 users, all of them shown.
        round_levels = tuple(round_number * 10 + i for i in range(1, LEVELS_PER_ROUND + 1))
        levels += round_levels
        writers = [Writer(round_number * 100 + i, round_levels) for i in range(WRITERS)]
        for writer in writers:
            writer.key = login(server, writer.user_id)
        with running(writers, server.port):
            time.sleep(rng.uniform(0.4, 0.8))  # well into the load
            kill_the_whole_service(server)  # SIGKILL, with requests in flight
        assert [error for writer in writers for error in writer.errors] == []
        acknowledged = sum(writer.acknowledged_count for writer in writers)
        assert acknowledged > 0, "the kill came before any write was acknowledged"
        acknowledged_total += acknowledged
        all_writers += writers

        server = start_server(*arguments)
        assert integrity_check(database_path) == "ok"
        listed = {level: listed_scores(server, level) for level in levels}
        for writer in all_writers:
            for level in writer.levels:
                best = listed[level].get(writer.user_id)
                if level in writer.acknowledged:
                    # Never below the best acknowledged; above it only by a score that was sent
                    # and committed when the answer was lost to the kill.
                    assert best is not None, f"user {writer.user_id} lost level {level}"
                    assert writer.acknowledged[level] <= best <= writer.sent[level]
                elif best is not None:
                    assert best <= writer.sent[level]
        for writer in all_writers:
            status, _ = server.request(
                "POST", f"/{KEY_CHECK_LEVEL}/score?sessionkey={writer.key}", "1"
            )
            assert status == 200, f"the key of user {writer.user_id} stopped working"

    assert "Traceback" not in server.log_text()
    print(
        f"{ROUNDS} kills, {acknowledged_total} acknowledged scores, {len(all_writers)} keys: kept"
    )
