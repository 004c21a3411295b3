"""docker-compose.yml and the Dockerfile, built and run for real: the API, a restart, a backup."""

import sqlite3
import time

import pytest

from tests.container.contract import (
    BAD_REQUESTS,
    check_a_bad_request_gets_its_status,
    check_a_player_logs_in_posts_and_reads_the_list,
)

pytestmark = pytest.mark.container

# The backup command of docs/operating.md (Backups): sqlite3's online backup, safe while the
# service writes.
BACKUP = (
    "import sqlite3; "
    "sqlite3.connect('/var/lib/scoresvc/scores.db')"
    ".backup(sqlite3.connect('/var/lib/scoresvc/backup.db'))"
)


def test_a_player_logs_in_posts_and_reads_the_list(client):
    check_a_player_logs_in_posts_and_reads_the_list(client)


@pytest.mark.parametrize(("method", "path", "body", "status"), BAD_REQUESTS)
def test_a_bad_request_gets_its_status_and_a_short_reason(client, method, path, body, status):
    check_a_bad_request_gets_its_status(client, method, path, body, status)


def test_docker_sees_the_service_healthy(project, client):
    assert client.request("GET", "/healthz") == (200, "ok")
    health = project.inspect("{{.State.Health.Status}}")
    assert health == "healthy"


def test_the_service_does_not_run_as_root(project):
    uid = project.compose("exec", "-T", "scoresvc", "python", "-c", "import os; print(os.getuid())")
    assert uid.strip() not in ("", "0")


def test_a_score_and_a_session_key_survive_a_restart_that_sigterm_ends_at_once(project, client):
    key = client.login(131)
    assert client.post_score(7, key, 1220) == 200

    started = time.monotonic()
    project.compose("stop", "scoresvc")
    stop_seconds = time.monotonic() - started
    # Compose sends SIGTERM and waits 10 s before SIGKILL: a clean exit well before that is ours.
    assert project.inspect("{{.State.ExitCode}}") == "0"
    assert stop_seconds < 5
    project.up(wait_seconds=90)

    assert client.highscorelist(7) == "131=1220"
    assert client.post_score(7, key, 1300) == 200  # the key issued before the restart
    assert client.highscorelist(7) == "131=1300"
    logs = project.compose("logs", "--no-color", "scoresvc")
    assert "INFO [scoresvc] stopped" in logs
    assert "Traceback" not in logs


def test_the_database_backs_up_while_the_service_runs(project, client, tmp_path):
    key = client.login(99)
    assert client.post_score(11, key, 5) == 200

    project.compose("exec", "-T", "scoresvc", "python", "-c", BACKUP)
    project.compose("cp", "scoresvc:/var/lib/scoresvc/backup.db", str(tmp_path / "backup.db"))

    with sqlite3.connect(tmp_path / "backup.db") as backup:
        rows = backup.execute("SELECT user_id, score FROM best_scores WHERE level_id = 11")
        assert rows.fetchall() == [(99, 5)]
