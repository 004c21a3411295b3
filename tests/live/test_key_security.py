"""Session-key secrecy on a real server: no key or secret in the log; a generated secret kept."""

import base64
import hashlib
import hmac
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.live.rawhttp import exchange

MODES = pytest.mark.parametrize(
    "mode", [[], ["--store-tokens"]], ids=["signed-keys", "stored-keys"]
)


def stored_secret(database: Path) -> str:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        rows = connection.execute(
            "SELECT value FROM service_settings WHERE name = 'session_secret'"
        ).fetchall()
    finally:
        connection.close()
    assert len(rows) == 1
    return rows[0][0]


def misplaced_key_requests(key: str) -> list[bytes]:
    """Requests that carry a valid key where the server does or does not look for one."""
    targets = [
        f"/7/score?sessionkey={key}",
        f"/7/score?sessionkey={key}&sessionkey={key}",
        f"/7/score?a=1&session%6Bey={key}&b=2",
        f"/7/score?sessionkey={key}%00",
        f"/7/score?SessionKey={key}",  # wrong case: not a key to the server, still a secret
        f"/7/score?sessionkey+={key}",
        f"/7/score?x=1;sessionkey={key}",
        f"/7/score?{key}",
        f"/7/score?key={key}",
        f"/7/score/{key}",
        f"/{key}/login",
        f"/7/highscorelist?sessionkey={key}",
        f"/7/score?sessionkey={key[:-1]}",  # a key one character short is still most of it
    ]
    requests = [
        f"POST {target} HTTP/1.1\r\nHost: s\r\nConnection: close\r\nContent-Length: 1\r\n\r\n5"
        for target in targets
    ]
    requests.append(  # in a header and in the body, which are never logged
        f"POST /7/score HTTP/1.1\r\nHost: s\r\nConnection: close\r\nX-Key: {key}\r\n"
        f"Content-Length: {len(key)}\r\n\r\n{key}"
    )
    return [request.encode() for request in requests]


@MODES
def test_no_session_key_appears_in_any_log_line_wherever_a_client_puts_it(
    start_server, tmp_path, mode
):
    logfile = tmp_path / "access.log"
    server = start_server("--logfile", str(logfile), *mode)
    keys = [server.request("GET", f"/{user}/login")[1] for user in range(3)]
    for key in keys:
        assert server.request("POST", f"/7/score?sessionkey={key}", "10")[0] == 200
        for raw in misplaced_key_requests(key):
            assert exchange(server.port, raw, timeout=5)  # answered
    assert server.stop() == 0

    for log in [logfile.read_text(), server.log_text()]:
        assert log.count("\n") > 40  # one line per request, and the start and stop lines
        assert "sessionkey=[redacted]" in log
        for key in keys:
            # Not the key, nor any 22 characters of it (132 bits, as hard as a key to guess).
            pieces = {key[i : i + 22] for i in range(len(key) - 21)}
            assert not [line for line in log.splitlines() if any(p in line for p in pieces)]


def test_a_configured_secret_is_never_logged(start_server, tmp_path):
    secret = "a configured secret of 40 characters!!!!"
    logfile = tmp_path / "access.log"
    server = start_server("--logfile", str(logfile), env={"SCORESVC_SECRET": secret})
    _, key = server.request("GET", "/1/login")
    server.request("POST", f"/1/score?sessionkey={key}x", "1")
    server.request("POST", "/1/score?sessionkey=" + secret.replace(" ", "%20"), "1")
    assert server.stop() == 0
    for log in [logfile.read_text(), server.log_text()]:
        assert "serving on" in log
        assert secret not in log
        assert secret.replace(" ", "%20") not in log


def test_a_secret_too_short_to_use_is_refused_without_being_echoed(tmp_path):
    secret = "short-secret"
    finished = subprocess.run(
        [sys.executable, "-m", "scoresvc", "--host", "127.0.0.1", "--port", "0"],
        env={"SCORESVC_SECRET": secret, "PATH": ""},
        capture_output=True,
        timeout=30,
        text=True,
    )
    assert finished.returncode == 1
    assert finished.stderr.startswith("scoresvc: cannot start: ")
    assert "16 bytes" in finished.stderr
    assert secret not in finished.stderr + finished.stdout


def test_file_mode_without_a_secret_generates_one_keeps_it_and_never_logs_it(
    start_server, tmp_path
):
    database = tmp_path / "scores.db"
    server = start_server("--database", f"sqlite:///{database}", env={"SCORESVC_SECRET": ""})
    secret = stored_secret(database)
    assert len(secret) >= 43  # 256 random bits, URL-safe base64
    _, key = server.request("GET", "/4711/login")
    server.kill()  # no chance to write anything more on the way out

    restarted = start_server("--database", f"sqlite:///{database}")
    assert stored_secret(database) == secret
    assert restarted.request("POST", f"/1/score?sessionkey={key}", "1") == (200, "")
    assert secret not in restarted.log_text()


def test_two_databases_get_different_secrets_so_their_keys_do_not_cross(start_server, tmp_path):
    first = start_server("--database", f"sqlite:///{tmp_path}/first.db")
    second = start_server("--database", f"sqlite:///{tmp_path}/second.db")
    assert stored_secret(tmp_path / "first.db") != stored_secret(tmp_path / "second.db")
    _, key = first.request("GET", "/1/login")
    assert first.request("POST", f"/1/score?sessionkey={key}", "1")[0] == 200
    assert second.request("POST", f"/1/score?sessionkey={key}", "1")[0] == 401


def key_made_with(secret: str, user_id: int, lifetime_seconds: float) -> str:
    """A signed key made with the secret, valid for lifetime_seconds from now."""
    expires_at_ms = int((time.time() + lifetime_seconds) * 1000)
    payload = struct.pack(">IQ16s", user_id, expires_at_ms, bytes(16))
    mac = hmac.digest(secret.encode(), payload, hashlib.sha256)
    return base64.urlsafe_b64encode(payload + mac).decode("ascii")


def test_a_key_made_with_the_kept_secret_for_11_days_is_refused(start_server, tmp_path):
    database = tmp_path / "scores.db"
    server = start_server(
        "--database", f"sqlite:///{database}", "--session-ttl", "600", env={"SCORESVC_SECRET": ""}
    )
    secret = stored_secret(database)  # as a reader of the file, or of a backup, would
    far = key_made_with(secret, 7, 11 * 86400)
    assert server.request("POST", f"/1/score?sessionkey={far}", "5")[0] == 401
    near = key_made_with(secret, 7, 600)
    assert server.request("POST", f"/1/score?sessionkey={near}", "5") == (200, "")
    assert server.request("GET", "/1/highscorelist") == (200, "7=5")
