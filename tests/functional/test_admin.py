"""The admin API and console: the token, levels, a level's ordering, export, removals, bans."""

import base64
import csv
import hashlib
import io
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from unittest.mock import Mock

import pytest
import yaml
from sqlalchemy import text
from webob import Request
from webtest import TestApp

from scoresvc import create_app
from scoresvc.application import build_routes
from scoresvc.serving import cli
from scoresvc.settings import Settings, SettingsError
from scoresvc.startup import open_ready_database
from scoresvc.storage.database import Database
from scoresvc.storage.repository import Repository
from tests.functional.conftest import login, post_score
from tests.functional.test_openapi import PACKAGED, assert_valid

TOKEN = "admin-token-for-tests-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
AS_JSON = {"Accept": "application/json"}

# Every admin API call: (method, path) with numbers that are valid.
API_CALLS = [
    ("GET", "/admin/levels"),
    ("GET", "/admin/levels?after=1"),
    ("GET", "/admin/levels/2/scores"),
    ("GET", "/admin/levels/2/scores?from=2"),
    ("GET", "/admin/levels/2/export"),
    ("HEAD", "/admin/levels/2/export"),
    ("DELETE", "/admin/levels/2/scores/4711"),
    ("PUT", "/admin/users/4711/ban"),
    ("DELETE", "/admin/users/4711/ban"),
    ("GET", "/admin/bans"),
    ("GET", "/admin/audit"),
]


@dataclass
class Service:
    """A client of an app with the admin API on, and the database under it for raw SQL."""

    client: TestApp
    database: Database
    repository: Repository  # fills levels faster than HTTP would

    def sql(self, statement: str, **params) -> list[tuple]:
        with self.database.unit_of_work() as uow:
            return [tuple(row) for row in uow.connection.execute(text(statement), params)]

    def call(self, method: str, path: str, status: int = 200, **kwargs):
        headers = {**AUTH, **kwargs.pop("headers", {})}
        return self.client.request(path, method=method, headers=headers, status=status, **kwargs)

    def fill(self, level_id: int, scores: dict[int, int]) -> None:
        for user_id, score in scores.items():
            self.repository.record_score(level_id, user_id, score)

    def top(self, level_id: int) -> str:
        return self.client.get(f"/{level_id}/highscorelist", status=200).text


@pytest.fixture
def make_service(database_url, clock) -> Iterator[Callable[..., Service]]:
    """make_service(**settings): a Service with the admin API on, on the fake clock."""
    apps = []

    def make(**settings) -> Service:
        settings = Settings(database_url=database_url, admin_token=TOKEN, **settings)
        database = open_ready_database(settings, clock=clock)
        app = create_app(settings, database=database, clock=clock)
        apps.append(app)
        return Service(TestApp(app, lint=True), database, Repository(database))

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def service(make_service) -> Service:
    return make_service()


@pytest.fixture
def off(make_client) -> TestApp:
    """A client of an app with no admin token."""
    return make_client()


# The switch and the token


OFF_PATHS = [
    "/admin", "/admin/", "/admin/levels", "/admin/levels/2/scores", "/admin/levels/2/export",
    "/admin/levels/2/scores/4711", "/admin/users/4711/ban", "/admin/bans", "/admin/audit",
    "/admin/score", "/admin/login", "/admin/x/y/z", "/admin/levels/abc/scores", "/admin?x=1",
]  # fmt: skip


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"])
def test_every_admin_path_is_unknown_while_no_token_is_set(off, method):
    for path in OFF_PATHS:
        off.request(path, method=method, headers=AUTH, status=404)
        off.request(path, method=method, status=404)


def test_while_off_an_admin_404_is_like_any_other(off):
    assert off.get("/admin/levels", status=404).text == off.get("/nowhere", status=404).text
    problem = off.get("/admin/", headers=AS_JSON, status=404)
    assert problem.content_type == "application/problem+json"


@pytest.mark.parametrize("token", ["", "x" * 31, "short"])
def test_a_token_shorter_than_32_characters_is_refused(token):
    if token == "":
        assert Settings.from_env({"SCORESVC_ADMIN_TOKEN": ""}).admin_token is None  # unset
        return
    with pytest.raises(SettingsError, match="at least 32"):
        Settings(admin_token=token)


@pytest.mark.parametrize("token", ["x" * 31 + " ", "t" * 40 + "é", "a\tb" + "c" * 40])
def test_a_token_a_bearer_header_cannot_carry_is_refused(token):
    with pytest.raises(SettingsError):
        Settings(admin_token=token)


@pytest.mark.parametrize("token", ["short", "x" * 31])
def test_the_command_refuses_to_start_with_a_short_token_and_says_why(monkeypatch, capsys, token):
    monkeypatch.setenv("SCORESVC_ADMIN_TOKEN", token)
    assert cli.main([], serve=Mock()) == 1
    message = capsys.readouterr().err
    assert message.startswith("scoresvc: cannot start: SCORESVC_ADMIN_TOKEN is ")
    assert "at least 32" in message
    assert token not in message


def test_the_token_is_never_in_the_settings_repr():
    assert TOKEN not in repr(Settings(admin_token=TOKEN))


@pytest.mark.parametrize(("method", "path"), API_CALLS)
def test_every_admin_call_without_the_token_is_401(service, method, path):
    response = service.client.request(path, method=method, status=401)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="scoresvc admin"'


WRONG_AUTHORIZATIONS = [
    f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}",
    "Bearer",
    "Bearer ",
    f"Basic {TOKEN}",
    f"Token {TOKEN}",
    TOKEN,
    "Bearer " + "A" * 10_000,
    "Bearer \xe9\xff" + TOKEN,
    f"Bearer {TOKEN.upper()}",
    f"Bearer {TOKEN} {TOKEN}",
]


@pytest.mark.parametrize(("method", "path"), API_CALLS)
def test_every_admin_call_with_a_wrong_token_is_401_and_changes_nothing(service, method, path):
    service.fill(2, {4711: 10})
    for authorization in WRONG_AUTHORIZATIONS:
        response = service.client.request(
            path, method=method, headers={"Authorization": authorization}, status=401
        )
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="scoresvc admin"'
    assert service.top(2) == "4711=10"
    assert service.sql("SELECT count(*) FROM audit_log") == [(0,)]
    assert service.sql("SELECT count(*) FROM banned_users") == [(0,)]


@pytest.mark.parametrize(("method", "path"), API_CALLS)
def test_every_admin_call_with_the_token_answers(service, method, path):
    service.fill(2, {4711: 10, 5: 20})
    response = service.call(method, path)
    if method == "HEAD":
        assert response.body == b""
    elif path.endswith("/export"):
        assert response.content_type == "text/csv"
    else:
        assert response.content_type == "application/json"
        assert response.headers["Cache-Control"] == "no-store"


def test_the_scheme_is_case_insensitive_and_spaces_around_the_token_are_ignored(service):
    for header in [f"bearer {TOKEN}", f"BEARER {TOKEN}", f"  Bearer   {TOKEN}  "]:
        service.client.get("/admin/levels", headers={"Authorization": header}, status=200)


def test_an_admin_error_is_problem_json_for_a_client_that_prefers_json(service):
    problem = service.client.get("/admin/levels", headers=AS_JSON, status=401)
    assert problem.content_type == "application/problem+json"
    assert problem.json["status"] == 401
    assert "token" in problem.json["detail"]


def test_the_token_is_never_logged(service, caplog):
    caplog.set_level(logging.DEBUG)
    service.fill(2, {4711: 10})
    for method, path in API_CALLS:
        service.call(method, path, status="*")
        service.client.request(path, method=method, headers={"Authorization": TOKEN}, status="*")
    assert caplog.records
    assert not any(TOKEN in record.getMessage() for record in caplog.records)
    assert any("admin: banned user 4711" in record.getMessage() for record in caplog.records)


# The console


def test_the_console_is_one_page_that_needs_no_token(service):
    page = service.client.get("/admin/", status=200)
    assert page.content_type == "text/html"
    assert "<title>scoresvc admin</title>" in page.text
    assert service.client.head("/admin/", status=200).body == b""
    assert service.client.get("/admin", status=308).headers["Location"] == "/admin/"


def test_the_console_runs_only_its_own_inline_script_and_style(service):
    page = service.client.get("/admin/", status=200)
    policy = dict(
        part.strip().split(" ", 1) for part in page.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    for kind in ["script", "style"]:
        (inline,) = re.findall(rf"<{kind}>(.*?)</{kind}>", page.text, re.DOTALL)
        digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
        assert policy[f"{kind}-src"] == f"'sha256-{digest}'"
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]
    assert not re.search(r"\son[a-z]+=", page.text), "inline event handlers would be blocked"
    assert not re.search(r"\sstyle=", page.text), "style attributes would be blocked"
    assert page.headers["X-Content-Type-Options"] == "nosniff"


# Levels


def test_levels_list_each_level_with_its_players_in_pages_of_100(service):
    for level in range(1, 106):
        service.fill(level, {user: level * 10 + user for user in range(level % 3 + 1)})
    first = service.call("GET", "/admin/levels").json
    assert [entry["level"] for entry in first["levels"]] == list(range(1, 101))
    assert first["levels"][0] == {"level": 1, "players": 2}
    assert first["levels"][1] == {"level": 2, "players": 3}
    assert first["next"] == 100
    second = service.call("GET", "/admin/levels?after=100").json
    assert second == {
        "levels": [{"level": n, "players": n % 3 + 1} for n in range(101, 106)],
        "next": None,
    }
    assert service.call("GET", "/admin/levels?after=105").json == {"levels": [], "next": None}
    assert service.call("GET", "/admin/levels?after=2147483647").json["levels"] == []


def test_levels_of_an_empty_service_are_an_empty_list(service):
    assert service.call("GET", "/admin/levels").json == {"levels": [], "next": None}


# A level's ordering


def test_a_level_page_ranks_as_the_public_lists_do(service):
    # Equal scores in runs, so that ties (who reached it first) cross page boundaries.
    service.fill(2, {user: 1000 + (user * 7919) % 37 for user in range(1, 251)})
    service.fill(3, {9: 1})
    places = []
    for first in [1, 101, 201]:
        page = service.call("GET", f"/admin/levels/2/scores?from={first}").json
        assert page["level"] == 2
        assert page["players"] == 250
        assert page["from"] == first
        places.extend(page["entries"])
    assert [entry["rank"] for entry in places] == list(range(1, 251))
    public = []
    for first in range(1, 251, 15):
        listing = service.client.get(f"/2/highscorelist?from={first}", headers=AS_JSON).json
        public.extend(listing["entries"])
    assert [(e["rank"], e["user"], e["score"]) for e in places] == [
        (e["rank"], e["user"], e["score"]) for e in public
    ]
    for entry in places[::37]:
        assert service.client.get(f"/2/rank/{entry['user']}").text == str(entry["rank"])
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", entry["reached_at"])
        for entry in places
    )


def test_a_level_page_says_where_the_next_one_starts(service):
    service.fill(2, {user: user for user in range(1, 202)})
    pages = [service.call("GET", f"/admin/levels/2/scores?from={n}").json for n in (1, 101, 201)]
    assert [page["next"] for page in pages] == [101, 201, None]
    assert [len(page["entries"]) for page in pages] == [100, 100, 1]
    assert service.call("GET", "/admin/levels/2/scores?from=100").json["next"] == 200


@pytest.mark.parametrize("first", ["3", "2147483647", "0002147483647"])
def test_a_page_past_the_end_is_empty_and_still_counts_the_players(service, first):
    service.fill(2, {1: 5, 2: 6})
    page = service.call("GET", f"/admin/levels/2/scores?from={first}").json
    assert page["entries"] == []
    assert page["players"] == 2
    assert page["next"] is None


def test_a_level_without_scores_has_an_empty_page(service):
    page = service.call("GET", "/admin/levels/7/scores").json
    assert page == {"level": 7, "players": 0, "from": 1, "entries": [], "next": None}


# The export


def exported(service: Service, level_id: int) -> list[list[str]]:
    response = service.call("GET", f"/admin/levels/{level_id}/export")
    assert response.content_type == "text/csv"
    disposition = f'attachment; filename="level-{level_id}.csv"'
    assert response.headers["Content-Disposition"] == disposition
    return list(csv.reader(io.StringIO(response.text)))


def test_the_export_is_the_whole_ordering_as_csv(service):
    service.fill(2, {user: 5000 - (user % 300) for user in range(1, 4501)})
    rows = exported(service, 2)
    assert rows[0] == ["rank", "userid", "score", "reached_at"]
    assert len(rows) == 4501
    assert [int(row[0]) for row in rows[1:]] == list(range(1, 4501))
    page = service.call("GET", "/admin/levels/2/scores?from=2001").json["entries"]
    assert [[str(e["rank"]), str(e["user"]), str(e["score"]), e["reached_at"]] for e in page] == (
        rows[2001:2101]
    )


def test_the_export_is_streamed_a_batch_at_a_time_with_no_length(service):
    service.fill(2, {user: user for user in range(1, 5001)})
    environ = Request.blank("/admin/levels/2/export", headers=AUTH).environ
    started = []
    body = service.client.app(environ, lambda status, headers: started.append((status, headers)))
    ((status, headers),) = started
    assert status == "200 OK"
    assert "Content-Length" not in dict(headers)
    chunks = []
    for chunk in body:
        chunks.append(chunk)
    body.close()
    assert chunks[0] == b"rank,userid,score,reached_at\n"
    assert len(chunks) == 1 + 3  # the header, then batches of 2000 rows
    assert b"".join(chunks).count(b"\n") == 5001


def test_an_export_closed_early_releases_its_snapshot(service):
    service.fill(2, {user: user for user in range(1, 5001)})
    for _ in range(30):  # more than the connections a pool holds
        environ = Request.blank("/admin/levels/2/export", headers=AUTH).environ
        body = service.client.app(environ, lambda status, headers: None)
        assert next(iter(body)).startswith(b"rank,")
        body.close()
    service.call("DELETE", "/admin/levels/2/scores/5000")
    assert service.top(2).startswith("4999=4999,")


def test_the_export_of_an_empty_level_is_its_header(service):
    assert exported(service, 9) == [["rank", "userid", "score", "reached_at"]]


def test_head_of_an_export_reads_nothing(service):
    response = service.call("HEAD", "/admin/levels/2/export")
    assert response.body == b""
    assert response.content_type == "text/csv"


# Removing a score


def test_deleting_a_score_removes_it_from_every_list_and_count(service):
    service.fill(2, {4711: 1500, 131: 1220, 7: 900})
    service.fill(3, {4711: 10})
    deleted = service.call("DELETE", "/admin/levels/2/scores/4711").json
    assert deleted["level"] == 2
    assert deleted["user"] == 4711
    assert deleted["score"] == 1500
    assert deleted["hidden"] is False
    assert service.top(2) == "131=1220,7=900"
    assert service.top(3) == "4711=10"
    service.client.get("/2/rank/4711", status=404)
    assert service.client.get("/2/rank/131").text == "1"
    assert service.client.get("/2/highscorelist", headers=AS_JSON).json["players"] == 2
    assert service.call("GET", "/admin/levels").json["levels"][0] == {"level": 2, "players": 2}
    service.call("DELETE", "/admin/levels/2/scores/4711", status=404)
    assert service.sql("SELECT action, level_id, user_id, detail FROM audit_log") == [
        ("delete_score", 2, 4711, "score 1500")
    ]


def test_a_deleted_score_can_be_posted_again(service):
    key = login(service.client, 4711)
    post_score(service.client, 2, key, "1500")
    service.call("DELETE", "/admin/levels/2/scores/4711")
    post_score(service.client, 2, key, "10")
    assert service.top(2) == "4711=10"


def test_deleting_a_score_nobody_has_is_404_and_records_nothing(service):
    problem = service.call("DELETE", "/admin/levels/2/scores/5", headers=AS_JSON, status=404)
    assert problem.json["detail"] == "user 5 has no score on level 2"
    assert service.sql("SELECT count(*) FROM audit_log") == [(0,)]


# Bans


def ban_fixture(service: Service) -> None:
    # The cheat is first on level 2, in the middle of level 3, and the only player of level 4.
    service.fill(2, {666: 2_147_483_647, **{user: 100 + user for user in range(1, 31)}})
    service.fill(3, {user: 1000 - 2 * user for user in range(1, 31)} | {666: 985})  # 8th
    service.fill(4, {666: 1})


def test_a_ban_hides_the_user_from_every_list_rank_and_count_at_once(service):
    ban_fixture(service)
    client = service.client
    assert service.top(2).startswith("666=2147483647,")
    # Read before the ban, so that the kept lists must be read anew.
    before = {level: service.top(level) for level in (2, 3, 4)}
    changed = service.call("PUT", "/admin/users/666/ban").json
    assert changed == {"user": 666, "banned": True, "changed": True, "levels": [2, 3, 4]}
    assert service.top(2) == ",".join(f"{u}={100 + u}" for u in range(30, 15, -1))
    assert "666=" not in service.top(3)
    assert service.top(4) == ""
    assert before[3] != service.top(3)
    for level in (2, 3, 4):
        client.get(f"/{level}/rank/666", status=404)
        client.get(f"/{level}/highscorelist?around=666", status=404)
        for first in (1, 2, 15, 16, 29, 30, 31):
            page = client.get(f"/{level}/highscorelist?from={first}", headers=AS_JSON).json
            assert 666 not in [entry["user"] for entry in page["entries"]]
            assert page["players"] == (0 if level == 4 else 30)
    assert client.get("/2/rank/30").text == "1"
    assert client.get("/3/rank/16").text == "16"  # was 17, behind the cheat
    around = client.get("/3/highscorelist?around=15", headers=AS_JSON).json
    assert [e["user"] for e in around["entries"]] == list(range(8, 23))
    assert [e["rank"] for e in around["entries"]] == list(range(8, 23))
    rank = client.get("/2/rank/1", headers=AS_JSON).json
    assert rank == {"level": 2, "user": 1, "rank": 30, "score": 101, "players": 30}
    assert service.call("GET", "/admin/levels").json["levels"] == [
        {"level": 2, "players": 30},
        {"level": 3, "players": 30},
    ]
    page = service.call("GET", "/admin/levels/2/scores").json
    assert page["players"] == 30
    assert 666 not in [entry["user"] for entry in page["entries"]]
    assert "666" not in [row[1] for row in exported(service, 2)]


@pytest.mark.parametrize("store_tokens", [False, True], ids=["signed-keys", "stored-keys"])
def test_a_banned_users_logins_and_posts_are_403_and_record_nothing(make_service, store_tokens):
    service = make_service(store_tokens=store_tokens)
    ban_fixture(service)
    key = login(service.client, 666)
    service.call("PUT", "/admin/users/666/ban")
    for path in ["/666/login", "/666/", "/0666/login"]:
        assert service.client.get(path, status=403).text == "user 666 is banned\n"
    assert service.client.head("/666/login", status=403).body == b""
    problem = service.client.get("/666/login", headers=AS_JSON, status=403).json
    assert problem["status"] == 403
    post_score(service.client, 5, key, "50", status=403)
    post_score(service.client, 2, key, "5", status=403)
    assert service.top(5) == ""
    # Others go on as before.
    post_score(service.client, 5, login(service.client, 1), "7")
    assert service.top(5) == "1=7"
    # What the refused posts tried is not what comes back on unban.
    service.call("DELETE", "/admin/users/666/ban")
    assert service.top(5) == "1=7"
    assert service.top(2).startswith("666=2147483647,")


def test_an_unban_restores_the_users_scores_ranks_and_counts(service):
    ban_fixture(service)
    before = {
        path: service.client.get(path, headers=AS_JSON).json
        for path in ["/2/highscorelist", "/3/highscorelist?around=666", "/3/rank/666"]
    }
    service.call("PUT", "/admin/users/666/ban")
    changed = service.call("DELETE", "/admin/users/666/ban").json
    assert changed == {"user": 666, "banned": False, "changed": True, "levels": [2, 3, 4]}
    for path, answer in before.items():
        assert service.client.get(path, headers=AS_JSON).json == answer
    assert service.top(4) == "666=1"
    key = login(service.client, 666)
    post_score(service.client, 4, key, "2")
    assert service.top(4) == "666=2"


def test_a_ban_and_an_unban_are_idempotent_and_audited_once(service):
    ban_fixture(service)
    assert service.call("PUT", "/admin/users/666/ban").json["changed"] is True
    again = service.call("PUT", "/admin/users/666/ban").json
    assert again == {"user": 666, "banned": True, "changed": False, "levels": []}
    assert service.call("DELETE", "/admin/users/666/ban").json["changed"] is True
    again = service.call("DELETE", "/admin/users/666/ban").json
    assert again == {"user": 666, "banned": False, "changed": False, "levels": []}
    never = service.call("DELETE", "/admin/users/5/ban").json
    assert never == {"user": 5, "banned": False, "changed": False, "levels": []}
    rows = service.sql(
        "SELECT action, level_id, user_id, detail, changed_at FROM audit_log ORDER BY id"
    )
    now_us = 1_800_000_000 * 1_000_000  # the fake clock's
    assert rows == [
        ("ban", None, 666, "3 scores hidden", now_us),
        ("unban", None, 666, "3 scores restored", now_us),
    ]


def test_a_user_banned_without_scores_is_still_refused(service):
    service.call("PUT", "/admin/users/77/ban")
    service.client.get("/77/login", status=403)
    assert service.sql("SELECT detail FROM audit_log") == [("0 scores hidden",)]
    assert service.sql("SELECT user_id FROM banned_users") == [(77,)]


def test_a_banned_users_hidden_rows_are_kept_not_deleted(service):
    ban_fixture(service)
    service.call("PUT", "/admin/users/666/ban")
    assert service.sql(
        "SELECT level_id, score FROM hidden_scores WHERE user_id = 666 ORDER BY level_id"
    ) == [(2, 2_147_483_647), (3, 985), (4, 1)]
    assert service.sql("SELECT count(*) FROM best_scores WHERE user_id = 666") == [(0,)]
    counted = service.sql("SELECT sum(players) FROM rank_counts WHERE depth = 1")
    assert counted == service.sql("SELECT count(*) FROM best_scores")


def test_deleting_a_banned_users_score_deletes_the_hidden_row(service):
    ban_fixture(service)
    service.call("PUT", "/admin/users/666/ban")
    deleted = service.call("DELETE", "/admin/levels/2/scores/666").json
    assert (deleted["score"], deleted["hidden"]) == (2_147_483_647, True)
    service.call("DELETE", "/admin/users/666/ban")
    service.client.get("/2/rank/666", status=404)
    assert service.client.get("/3/rank/666").text == "8"
    assert [row[0] for row in service.sql("SELECT action FROM audit_log ORDER BY id")] == [
        "ban", "delete_score", "unban",
    ]  # fmt: skip


def test_banned_users_are_listed_with_their_hidden_scores(service):
    ban_fixture(service)
    service.call("PUT", "/admin/users/666/ban")
    service.call("PUT", "/admin/users/5/ban")
    bans = service.call("GET", "/admin/bans").json
    assert [(b["user"], b["hidden_scores"]) for b in bans["bans"]] == [(5, 2), (666, 3)]
    assert bans["next"] is None
    assert service.call("GET", "/admin/bans?after=5").json["bans"][0]["user"] == 666


def test_the_audit_log_pages_newest_first(service):
    for user in range(1, 106):
        service.call("PUT", f"/admin/users/{user}/ban")
    first = service.call("GET", "/admin/audit").json
    assert [entry["user"] for entry in first["entries"]] == list(range(105, 5, -1))
    assert first["entries"][0]["action"] == "ban"
    assert first["entries"][0]["level"] is None
    older = service.call("GET", f"/admin/audit?before={first['next']}").json
    assert [entry["user"] for entry in older["entries"]] == [5, 4, 3, 2, 1]
    assert older["next"] is None


# Hostile input


@pytest.mark.parametrize(
    "path",
    [
        "/admin/levels?after=-1",
        "/admin/levels?after=1e3",
        "/admin/levels?after=",
        "/admin/levels?after=2147483648",
        "/admin/levels?after=1&after=2",
        "/admin/levels/2/scores?from=0",
        "/admin/levels/2/scores?from=000",
        "/admin/levels/2/scores?from=-5",
        "/admin/levels/2/scores?from=99999999999999999999999",
        "/admin/levels/2/scores?from=1&from=2",
        "/admin/levels/2/scores?from=%D9%A3",
        "/admin/levels/2147483648/scores",
        "/admin/levels/+2/scores",
        "/admin/levels//scores",
        "/admin/levels/0x10/export",
        "/admin/bans?after=x",
        "/admin/audit?before=1.0",
    ],
)
def test_malformed_numbers_are_400(service, path):
    assert service.call("GET", path, headers=AS_JSON, status=400).json["status"] == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/admin/users/%2B5/ban"),
        ("PUT", "/admin/users/99999999999/ban"),
        ("DELETE", "/admin/levels/2/scores/-1"),
    ],
)
def test_malformed_numbers_in_changes_are_400_and_change_nothing(service, method, path):
    service.call(method, path, status=400)
    assert service.sql("SELECT count(*) FROM audit_log") == [(0,)]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/admin/levels", "GET, HEAD"),
        ("DELETE", "/admin/levels", "GET, HEAD"),
        ("POST", "/admin/levels/2/scores", "GET, HEAD"),
        ("PUT", "/admin/levels/2/scores/5", "DELETE"),
        ("GET", "/admin/levels/2/scores/5", "DELETE"),
        ("POST", "/admin/levels/2/export", "GET, HEAD"),
        ("GET", "/admin/users/5/ban", "PUT, DELETE"),
        ("POST", "/admin/users/5/ban", "PUT, DELETE"),
        ("PATCH", "/admin/users/5/ban", "PUT, DELETE"),
        ("POST", "/admin/", "GET, HEAD"),
        ("DELETE", "/admin/audit", "GET, HEAD"),
    ],
)
def test_a_wrong_method_is_405_with_allow(service, method, path, allowed):
    response = service.call(method, path, status=405)
    assert response.headers["Allow"] == allowed


@pytest.mark.parametrize(
    "path",
    ["/admin/nope", "/admin/levels/2", "/admin/levels/2/scores/5/x", "/admin/score", "/admin//"],
)
def test_unknown_admin_paths_are_404_even_where_a_players_route_would_match(service, path):
    service.call("GET", path, status=404)


def test_a_huge_from_on_a_big_level_is_an_empty_page_not_an_error(service):
    service.fill(2, {user: user % 10 for user in range(1, 300)})
    page = service.call("GET", "/admin/levels/2/scores?from=2147483647").json
    assert (page["entries"], page["players"]) == ([], 299)


# The document


def as_json_schema(node):
    """OpenAPI 3.0's `nullable: true` as JSON Schema says it (the validator knows only that)."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: as_json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable"):
        converted["type"] = [node["type"], "null"]
    return converted


def test_the_admin_answers_are_as_the_document_describes_them(service):
    document = as_json_schema(yaml.safe_load(PACKAGED))
    ban_fixture(service)
    assert_valid(document, "LevelPage", service.call("GET", "/admin/levels").json)
    page = service.call("GET", "/admin/levels/2/scores").json
    assert_valid(document, "AdminScorePage", page)
    assert_valid(document, "BanState", service.call("PUT", "/admin/users/666/ban").json)
    assert_valid(document, "BanPage", service.call("GET", "/admin/bans").json)
    deleted = service.call("DELETE", "/admin/levels/3/scores/1").json
    assert_valid(document, "DeletedScore", deleted)
    assert_valid(document, "AuditPage", service.call("GET", "/admin/audit").json)
    problem = service.call("GET", "/admin/levels/2/scores?from=0", headers=AS_JSON, status=400)
    assert_valid(document, "Problem", problem.json)


def test_the_admin_routes_come_first_and_reserve_the_rest_of_admin():
    routes = build_routes(Mock(), admin=Mock())
    patterns = [route.pattern for route in routes]
    first_player_route = patterns.index("<int:userid>/login")
    assert patterns.index("admin/<path:rest>") < first_player_route
    assert all(pattern.startswith("admin") for pattern in patterns[:first_player_route])


@pytest.mark.parametrize(
    "body",
    [
        "[" * 1000,  # deep enough for the JSON parser's recursion limit, under 1 KiB
        '{"timezone": "localtime"}',  # a file of the system's zone database, not a zone
        '{"timezone": "../../etc/passwd"}',
        '{"min_score": true}',
    ],
)
def test_a_rules_body_the_service_cannot_take_is_a_400(service, body):
    response = service.call("PUT", "/admin/levels/2/rules", status=400, body=body.encode())
    assert "Traceback" not in response.text
    assert service.call("GET", "/admin/levels/2/rules").json["timezone"] == "UTC"
