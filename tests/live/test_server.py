"""Real servers over real sockets: keep-alive, concurrency, restarts, signals, waitress-serve."""

import os
import random
import re
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.live.server import LiveServer


def test_one_keep_alive_connection_serves_many_requests(start_server):
    server = start_server()
    connection = server.connection()
    connection.request("GET", "/1/login")
    response = connection.getresponse()
    key = response.read().decode()
    socket_used = connection.sock
    for score in range(1, 21):
        connection.request("POST", f"/7/score?sessionkey={key}", body=str(score))
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"")
        connection.request("GET", "/7/highscorelist")
        response = connection.getresponse()
        assert response.read().decode() == f"1={score}"
    assert connection.sock is socket_used  # never reconnected
    connection.close()


def test_32_concurrent_clients_get_only_200s_and_the_exact_top_15(start_server):
    server = start_server("--threads", "8")
    levels, clients, posts_per_client = 3, 32, 25
    best: dict[int, dict[int, int]] = defaultdict(dict)
    failures: list[str] = []
    lock = threading.Lock()

    def client(user_id: int) -> None:
        rng = random.Random(user_id)
        connection = server.connection()
        try:
            connection.request("GET", f"/{user_id}/login")
            response = connection.getresponse()
            key = response.read().decode()
            for _ in range(posts_per_client):
                level, score = rng.randrange(levels), rng.randrange(1_000)
                connection.request("POST", f"/{level}/score?sessionkey={key}", body=str(score))
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    failures.append(f"POST {response.status}")
                    continue
                with lock:
                    best[level][user_id] = max(best[level].get(user_id, -1), score)
                connection.request("GET", f"/{level}/highscorelist")
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    failures.append(f"GET {response.status}")
        except Exception as error:
            failures.append(repr(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(user_id,)) for user_id in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    # Final lists: best per user, highest first; ties are ordered by time, so compare scores
    # in order and the set of users per score.
    for level in range(levels):
        status, body = server.request("GET", f"/{level}/highscorelist")
        assert status == 200
        listed = [tuple(map(int, entry.split("="))) for entry in body.split(",")]
        expected = sorted(best[level].items(), key=lambda item: -item[1])[:15]
        assert [score for _, score in listed] == [score for _, score in expected]
        for user_id, score in listed:
            assert best[level][user_id] == score


@pytest.mark.parametrize("mode", [[], ["--store-tokens"]], ids=["signed-keys", "stored-keys"])
def test_in_file_mode_scores_and_keys_survive_a_restart(start_server, tmp_path, mode):
    database = ["--database", f"sqlite:///{tmp_path}/scores.db", *mode]
    server = start_server(*database)
    _, key = server.request("GET", "/4711/login")
    assert server.request("POST", f"/2/score?sessionkey={key}", "1500") == (200, "")
    assert server.stop() == 0

    restarted = start_server(*database)
    assert restarted.request("GET", "/2/highscorelist") == (200, "4711=1500")
    assert restarted.request("POST", f"/2/score?sessionkey={key}", "1600") == (200, "")
    assert restarted.request("GET", "/2/highscorelist") == (200, "4711=1600")


def test_in_memory_mode_a_restart_starts_empty(start_server):
    server = start_server()
    _, key = server.request("GET", "/1/login")
    server.request("POST", f"/1/score?sessionkey={key}", "10")
    server.stop()
    restarted = start_server()
    assert restarted.request("GET", "/1/highscorelist") == (200, "")
    # A fresh generated secret: the old key means nothing to the new process.
    assert restarted.request("POST", f"/1/score?sessionkey={key}", "10")[0] == 401


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_the_server_stops_quickly_and_cleanly_on_a_signal(start_server, signal_name):
    import signal

    server = start_server()
    connection = server.connection()  # an idle keep-alive client must not hold it up
    connection.request("GET", "/1/login")
    connection.getresponse().read()
    started = time.monotonic()
    server.process.send_signal(getattr(signal, signal_name))
    assert server.process.wait(10) == 0
    assert time.monotonic() - started < 5
    assert "stopped" in server.log_text()
    assert "Traceback" not in server.log_text()
    connection.close()


def test_the_log_file_gets_one_line_per_request_and_never_a_key(start_server, tmp_path):
    logfile = tmp_path / "access.log"
    server = start_server("--logfile", str(logfile))
    _, key = server.request("GET", "/1/login")
    server.request("POST", f"/1/score?sessionkey={key}", "10")
    server.request("GET", "/1/highscorelist")
    server.stop()
    text = logfile.read_text()
    assert re.search(r"GET /1/login 200 [\d.]+ms", text)
    assert "POST /1/score?sessionkey=[redacted] 200" in text
    assert "GET /1/highscorelist 200" in text
    assert key not in text
    assert key not in server.log_text()


def test_waitress_serve_runs_the_app_configured_from_the_environment(tmp_path):
    waitress_serve = Path(sys.executable).with_name("waitress-serve")
    log_path = tmp_path / "waitress.log"
    env = {
        **os.environ,
        "SCORESVC_DATABASE_URL": f"sqlite:///{tmp_path}/scores.db",
        "SCORESVC_STORE_TOKENS": "1",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(waitress_serve), "--listen=127.0.0.1:0", "scoresvc:app"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        server = LiveServer(log_path)
        server.process, server.port = process, _wait_for_port(log_path, process)
        _, key = server.request("GET", "/5/login")
        assert len(key) == 43  # stored keys, from SCORESVC_STORE_TOKENS
        assert server.request("POST", f"/1/score?sessionkey={key}", "99") == (200, "")
        assert server.request("GET", "/1/highscorelist") == (200, "5=99")
        assert (tmp_path / "scores.db").exists()
        assert "POST /1/score?sessionkey=[redacted] 200" in server.log_text()
    finally:
        process.kill()
        process.wait(10)


def _wait_for_port(log_path: Path, process: subprocess.Popen, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"Serving on http://127\.0\.0\.1:(\d+)", log_path.read_text())
        if found:
            return int(found.group(1))
        assert process.poll() is None, log_path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"waitress-serve did not start:\n{log_path.read_text()}")
