"""Start-up errors of the real `scoresvc` command: one line on stderr, exit status 1, no trace,
and no password, whether it runs as one process or with workers."""

import socket
import sqlite3
import subprocess
import sys

import pytest

PASSWORD = "hunter2-not-for-logs"


def run_scoresvc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`scoresvc` with args (on loopback, any free port unless args say otherwise)."""
    return subprocess.run(
        [sys.executable, "-m", "scoresvc", "--host", "127.0.0.1", *args],
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def assert_one_line(result: subprocess.CompletedProcess, starting: str) -> None:
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    assert result.stderr.startswith(starting), result.stderr
    assert PASSWORD not in result.stderr


BAD_SETTINGS = {
    "ttl flag": (["--session-ttl", "1e17"], {}, "session_ttl must be from 1 to 604800 seconds"),
    "ttl variable": ([], {"SCORESVC_SESSION_TTL": "0.5"}, "session_ttl must be from 1 to"),
    "port flag": (["--port", "abc"], {}, "--port='abc' is not a valid port"),
    "port variable": ([], {"SCORESVC_PORT": "abc"}, "SCORESVC_PORT='abc' is not a valid port"),
    "timeout flag": (["--header-timeout", "0"], {}, "header_timeout must be from 1 to 3600"),
    "cap variable": (
        [],
        {"SCORESVC_CONNECTIONS_PER_ADDRESS": "0"},
        "connections_per_address must be at least 1",
    ),
    "malformed URL": (
        ["--database", f"postgresql+psycopg://u:{PASSWORD}@h:notaport/db"],
        {},
        "the database URL postgresql+psycopg://u:***@h:notaport/db has the port 'notaport'",
    ),
}


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("case", BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_a_bad_setting_stops_the_start_in_one_line(case, workers):
    args, env, reason = case
    result = run_scoresvc("--port", "0", "--workers", workers, *args, env=env)
    assert_one_line(result, f"scoresvc: cannot start: {reason}")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_file_that_is_not_a_database_stops_the_start_in_one_line(tmp_path, workers):
    (tmp_path / "scores.db").write_bytes(b"these are not the scores you are looking for" * 100)
    url = f"sqlite:///{tmp_path}/scores.db"
    result = run_scoresvc("--port", "0", "--workers", workers, "--database", url)
    assert_one_line(result, f"scoresvc: cannot start: file is not a database (database {url})")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_database_file_that_cannot_be_opened_stops_the_start_in_one_line(tmp_path, workers):
    (tmp_path / "scores.db").mkdir()  # a directory where the file should be
    url = f"sqlite:///{tmp_path}/scores.db"
    result = run_scoresvc("--port", "0", "--workers", workers, "--database", url)
    assert_one_line(result, "scoresvc: cannot start: cannot open the database: ")
    assert result.stderr.endswith(f"(database {url})\n")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_unreachable_database_stops_the_start_in_one_line_without_its_password(workers):
    url = f"postgresql+psycopg://scores:{PASSWORD}@127.0.0.1:1/scores?connect_timeout=2"
    result = run_scoresvc("--port", "0", "--workers", workers, "--database", url)
    assert_one_line(result, "scoresvc: cannot start: cannot open the database: ")
    assert "(database postgresql+psycopg://scores:***@127.0.0.1:1/scores" in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_stops_the_start_in_one_line(tmp_path, workers):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        database = f"sqlite:///{tmp_path}/scores.db"
        result = run_scoresvc("--port", port, "--workers", workers, "--database", database)
    assert_one_line(
        result, f"scoresvc: cannot start: cannot listen on http://127.0.0.1:{port}: Address"
    )


def test_help_shows_no_password():
    url = f"postgresql+psycopg://scores:{PASSWORD}@db/scores"
    result = run_scoresvc("-h", env={"SCORESVC_DATABASE_URL": url})
    assert result.returncode == 0
    assert PASSWORD not in result.stdout
    assert "postgresql+psycopg://scores:***@db/scores" in result.stdout


def test_migrate_brings_a_database_file_to_the_newest_schema_and_exits(tmp_path):
    url = f"sqlite:///{tmp_path}/scores.db"
    result = subprocess.run(
        [sys.executable, "-m", "scoresvc", "migrate", "--database", url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "scores.db") as connection:
        (version,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert version
