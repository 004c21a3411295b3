"""Session-key secrecy on a real server: no key or secret in the log; a generated secret kept."""

import sqlite3
import subprocess
import sys
from pathlib import Path


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
    assert finished.returncode == 2
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
