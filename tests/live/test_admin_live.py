"""The admin API on real servers: a million players exported in flat memory, and a ban that every
worker and replica sees at once."""

import re
import sqlite3
import time
from pathlib import Path

import pytest

from scoresvc import create_app
from scoresvc.settings import Settings
from tests.live.load import login
from tests.live.server import LiveServer

TOKEN = "live-admin-token-0123456789abcdefghij"
WITH_ADMIN = {"SCORESVC_ADMIN_TOKEN": TOKEN}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MILLION = 1_000_000
MEMORY_BUDGET_BYTES = 20 * 1024 * 1024


def fill_level(database_path: Path, level_id: int, players: int) -> None:
    """players best scores on the level, written with SQL: the triggers count them."""
    with sqlite3.connect(database_path) as connection:
        connection.execute(
            "INSERT INTO best_scores (level_id, user_id, score, reached_at) "
            "WITH RECURSIVE numbers(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM numbers "
            f"WHERE n < {players}) SELECT {level_id}, n, (n * 7919) % 1000003, n FROM numbers"
        )
    connection.close()


def resident_bytes(pid: int) -> int:
    """The process's resident memory (VmRSS)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024


def admin_request(server: LiveServer, method: str, path: str) -> tuple[int, str]:
    connection = server.connection()
    try:
        connection.request(method, path, headers=AUTH)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_a_million_player_export_streams_with_the_servers_memory_flat(start_server, tmp_path):
    path = tmp_path / "scores.db"
    url = f"sqlite:///{path}"
    create_app(Settings(database_url=url)).close()
    fill_level(path, 1, MILLION)
    fill_level(path, 2, 5_000)
    server = start_server("--database", url, env=WITH_ADMIN)
    # A smaller export first: what any export loads (code, caches) is loaded before measuring.
    status, small = admin_request(server, "GET", "/admin/levels/2/export")
    assert (status, small.count("\n")) == (200, 5_001)
    before = resident_bytes(server.process.pid)

    connection = server.connection(timeout=120)
    connection.request("GET", "/admin/levels/1/export", headers=AUTH)
    response = connection.getresponse()
    assert response.status == 200
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert response.headers["Content-Length"] is None
    started = time.monotonic()
    lines, peak, head, tail = 0, before, b"", b""
    while chunk := response.read(256 * 1024):
        lines += chunk.count(b"\n")
        head = head or chunk[:200]
        tail = (tail + chunk)[-200:]
        peak = max(peak, resident_bytes(server.process.pid))
    seconds = time.monotonic() - started
    connection.close()

    assert lines == MILLION + 1
    assert head.startswith(b"rank,userid,score,reached_at\n1,")
    last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1].split(b",")
    assert last[0] == b"1000000"
    growth = peak - before
    print(f"exported {MILLION} players in {seconds:.1f}s; the server grew {growth / 2**20:.1f} MB")
    assert growth < MEMORY_BUDGET_BYTES
    # The ranks of the export are the public ones.
    user, rank = head.split(b"\n")[1].split(b",")[1].decode(), "1"
    assert server.request("GET", f"/1/rank/{user}") == (200, rank)


def test_a_ban_is_seen_by_both_workers_at_once(start_server, tmp_path):
    url = f"sqlite:///{tmp_path}/scores.db"
    server = start_server("--workers", "2", "--database", url, env=WITH_ADMIN)
    cheat, honest = 666, 7
    for user, score in [(cheat, 1_000_000), (honest, 10)]:
        key = login(server, user)
        assert server.request("POST", f"/2/score?sessionkey={key}", str(score))[0] == 200
    # Each worker reads the list (and keeps it) and logs the cheat in before the ban.
    until_both_workers_answered(server, lambda: server.request("GET", "/2/highscorelist"))
    assert admin_request(server, "PUT", f"/admin/users/{cheat}/ban")[0] == 200
    log_offset = len(server.log_text())
    answers = until_both_workers_answered(
        server,
        lambda: (
            server.request("GET", "/2/highscorelist"),
            server.request("GET", f"/{cheat}/login")[0],
            server.request("GET", f"/2/rank/{honest}"),
        ),
        since=log_offset,
    )
    assert set(answers) == {((200, "7=10"), 403, (200, "1"))}
    assert admin_request(server, "DELETE", f"/admin/users/{cheat}/ban")[0] == 200
    log_offset = len(server.log_text())
    answers = until_both_workers_answered(
        server, lambda: server.request("GET", "/2/highscorelist"), since=log_offset
    )
    assert set(answers) == {(200, "666=1000000,7=10")}


@pytest.mark.postgresql
def test_a_ban_on_one_replica_is_seen_by_the_other_at_once(start_server, postgresql_url):
    first = start_server("--database", postgresql_url, env=WITH_ADMIN)
    second = start_server("--database", postgresql_url, env=WITH_ADMIN)
    key = login(second, 666)
    assert second.request("POST", f"/2/score?sessionkey={key}", "99")[0] == 200
    assert second.request("GET", "/2/highscorelist") == (200, "666=99")
    assert admin_request(first, "PUT", "/admin/users/666/ban")[0] == 200
    assert second.request("GET", "/2/highscorelist") == (200, "")
    assert second.request("GET", "/666/login")[0] == 403
    assert second.request("POST", f"/2/score?sessionkey={key}", "100")[0] == 403
    assert admin_request(second, "DELETE", "/admin/users/666/ban")[0] == 200
    assert first.request("GET", "/2/highscorelist") == (200, "666=99")


def until_both_workers_answered(server: LiveServer, ask, since: int = 0) -> list:
    """ask(), each time on new connections, until both workers have answered since the log
    offset `since`; every answer."""
    answers = []
    while len(answers) < 200:
        for _ in range(10):
            answers.append(ask())
        if workers_since(server, since) == {"worker 1", "worker 2"}:
            return answers
    raise AssertionError(f"{len(answers)} rounds, all answered by one worker")


def workers_since(server: LiveServer, offset: int) -> set[str]:
    return set(re.findall(r"\[scoresvc\.access\] \[(worker \d)\]", server.log_text()[offset:]))
