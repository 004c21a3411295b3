"""Leaderboards over HTTP: rules per level, seasons, friends, the trusted writer, idempotent posts.

Every bullet of the SPEC section "Leaderboards: rules per level, seasons, friends, trusted
writes", on each kind of database, through WebTest. Time is the fake clock's: seasons are judged
by the database's clock (on PostgreSQL the server's, read at open, moved by the fake clock), so
the tests travel to an instant by asking the database what time it is.
"""

import csv
import datetime
import io
import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from hashlib import blake2b

import pytest
from prometheus_client.parser import text_string_to_metric_families
from webtest import TestApp, TestResponse

from scoresvc import create_app
from scoresvc.settings import Settings, SettingsError
from scoresvc.startup import open_ready_database
from scoresvc.storage.database import Database
from tests.clock import FakeClock

MAX = 2147483647
ADMIN_TOKEN = "admin-token-for-leaderboards-0123456789"
WRITER_TOKEN = "writer-token-for-leaderboards-012345678"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
AS_WRITER = {"Authorization": f"Bearer {WRITER_TOKEN}"}
AS_JSON = {"Accept": "application/json"}
TEXT_TYPE = "text/plain; charset=utf-8"
PROBLEM_TYPE = "application/problem+json"
DEFAULT_RULES = {
    "order": "desc",
    "keep": "best",
    "reset": "never",
    "timezone": "UTC",
    "min_score": 0,
    "max_score": MAX,
    "writes": "players",
}
RULES_KEYS = ["level", *DEFAULT_RULES, "season", "season_started", "season_ends"]
DAY = 24 * 3600
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z")


def us(iso: str) -> int:
    """An ISO 8601 instant in UTC as µs since the epoch."""
    moment = datetime.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return round(moment.timestamp() * 1_000_000)


def iso(at_us: int) -> str:
    """µs since the epoch as the service writes a season's times (seconds unless µs are set)."""
    moment = datetime.datetime.fromtimestamp(at_us / 1_000_000, tz=datetime.UTC)
    text = moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


@dataclass
class Service:
    """A client of an app with the admin API and the trusted writer on, on the fake clock."""

    client: TestApp
    database: Database  # only to ask the time seasons are judged by
    clock: FakeClock

    # The admin API

    def admin(self, method: str, path: str, status: int = 200, **kwargs) -> TestResponse:
        headers = {**AS_ADMIN, **kwargs.pop("headers", {})}
        return self.client.request(path, method=method, headers=headers, status=status, **kwargs)

    def rules(self, level: int) -> dict:
        return self.admin("GET", f"/admin/levels/{level}/rules").json

    def put_rules(
        self, level: int, body: str | bytes, status: int = 200, headers: dict | None = None
    ) -> TestResponse:
        body = body.encode("utf-8") if isinstance(body, str) else body
        return self.admin(
            "PUT",
            f"/admin/levels/{level}/rules",
            status,
            body=body,
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    def set_rules(self, level: int, **fields) -> dict:
        return self.put_rules(level, json.dumps(fields), 200).json

    def start_season(self, level: int) -> dict:
        return self.admin("POST", f"/admin/levels/{level}/seasons").json

    def audit(self) -> list[dict]:
        return self.admin("GET", "/admin/audit").json["entries"]

    def admin_scores(self, level: int, query: str = "", status: int = 200) -> TestResponse:
        return self.admin("GET", f"/admin/levels/{level}/scores{query}", status)

    def export(self, level: int, query: str = "") -> list[list[str]]:
        response = self.admin("GET", f"/admin/levels/{level}/export{query}")
        return list(csv.reader(io.StringIO(response.text)))[1:]

    # Posts

    def post(
        self, level: int, user: int, score: int | str, status: int = 200, headers=None
    ) -> TestResponse:
        """A player's post with a fresh session key."""
        key = self.client.get(f"/{user}/login", status=200).text
        return self.client.post(
            f"/{level}/score?sessionkey={key}", str(score), headers=headers or {}, status=status
        )

    def write(
        self, level: int, user: int | str, score: int | str, status: int = 200, headers=None
    ) -> TestResponse:
        """The trusted writer's post for user."""
        return self.client.post(
            f"/{level}/score?user={user}",
            str(score),
            headers={**AS_WRITER, **(headers or {})},
            status=status,
        )

    def fill(self, level: int, scores: dict[int, int]) -> None:
        """Each user's score, posted by the writer in the dict's order (earlier wins a tie)."""
        for user, score in scores.items():
            self.write(level, user, score)

    # Reads

    def text(self, path: str, status: int = 200) -> str:
        return self.client.get(path, status=status).text

    def json(self, path: str, status: int = 200) -> dict:
        return self.client.get(path, headers=AS_JSON, status=status).json

    # Time

    def now_us(self) -> int:
        return self.database.now_us()

    def travel(self, to: str) -> None:
        """Move the fake clock so that the database's clock reads the instant `to`."""
        target = us(to)
        self.clock.now += (target - self.now_us()) / 1_000_000
        while self.now_us() < target:  # a float's rounding may land a µs early
            self.clock.now += 1e-6
        assert self.now_us() - target <= 2


@pytest.fixture
def make_service(database_url, clock) -> Iterator[Callable[..., Service]]:
    """make_service(**settings): a Service over the test's database (admin and writer on, the
    post limit off unless given)."""
    apps = []

    def make(**overrides) -> Service:
        values = {
            "database_url": database_url,
            "admin_token": ADMIN_TOKEN,
            "writer_token": WRITER_TOKEN,
            "post_limit": "0",
            **overrides,
        }
        settings = Settings(**values)
        database = open_ready_database(settings, clock=clock)
        app = create_app(settings, database=database, clock=clock)
        apps.append(app)
        return Service(TestApp(app, lint=True), database, clock)

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def service(make_service) -> Service:
    return make_service()


def entries(listing: dict) -> list[tuple[int, int, int]]:
    """A JSON list's entries as (rank, user, score)."""
    return [(e["rank"], e["user"], e["score"]) for e in listing["entries"]]


def admin_entries(page: dict) -> list[tuple[int, int, int]]:
    return [(e["rank"], e["user"], e["score"]) for e in page["entries"]]


def assert_problem(response: TestResponse, status: int) -> None:
    assert response.headers["Content-Type"] == PROBLEM_TYPE
    assert response.json["status"] == status
    assert response.json["detail"]


def pairs(users_scores: list[tuple[int, int]]) -> str:
    return ",".join(f"{user}={score}" for user, score in users_scores)


# --- Rules: read and change -----------------------------------------------------------


def test_any_level_has_the_default_rules_and_season_one(service):
    answers = [service.admin("GET", f"/admin/levels/{level}/rules") for level in (0, 7, MAX)]
    # Season 1 of every level nobody configured began when the database learned of seasons.
    started = answers[0].json["season_started"]
    assert ISO_UTC.fullmatch(started) and us(started) <= service.now_us()
    for level, response in zip((0, 7, MAX), answers, strict=True):
        assert response.headers["Content-Type"] == "application/json"
        assert list(response.json) == RULES_KEYS
        assert response.json == {
            "level": level,
            **DEFAULT_RULES,
            "season": 1,
            "season_started": started,
            "season_ends": None,
        }


def test_the_rules_calls_need_the_admin_token(service, make_service):
    off = make_service(admin_token=None).client
    for method, path in [
        ("GET", "/admin/levels/7/rules"),
        ("PUT", "/admin/levels/7/rules"),
        ("POST", "/admin/levels/7/seasons"),
    ]:
        service.client.request(path, method=method, status=401)
        wrong = {"Authorization": f"Bearer {WRITER_TOKEN}"}
        service.client.request(path, method=method, headers=wrong, status=401)
        off.request(path, method=method, headers=AS_ADMIN, status=404)
    assert service.rules(7)["season"] == 1  # nothing changed


RULE_VALUES = [
    ("order", "asc"),
    ("keep", "latest"),
    ("keep", "sum"),
    ("reset", "manual"),
    ("reset", "daily"),
    ("reset", "weekly"),
    ("reset", "monthly"),
    ("timezone", "Europe/Berlin"),
    ("timezone", "America/New_York"),
    ("min_score", 10),
    ("min_score", MAX),
    ("max_score", 0),
    ("max_score", 5000),
    ("writes", "server"),
]


@pytest.mark.parametrize(("field", "value"), RULE_VALUES)
def test_each_rule_can_be_set_on_its_own(service, field, value):
    changed = service.set_rules(7, **{field: value})
    assert list(changed) == RULES_KEYS
    assert {name: changed[name] for name in DEFAULT_RULES} == {**DEFAULT_RULES, field: value}
    assert changed["level"] == 7 and changed["season"] == 1
    assert service.rules(7) == changed
    assert service.rules(8) == {**service.rules(8), **DEFAULT_RULES}  # other levels keep theirs


def test_a_partial_change_keeps_the_fields_it_does_not_name(service):
    service.set_rules(7, order="asc", min_score=5, timezone="Asia/Tokyo")
    changed = service.set_rules(7, max_score=900, writes="server")
    assert {name: changed[name] for name in DEFAULT_RULES} == {
        **DEFAULT_RULES,
        "order": "asc",
        "min_score": 5,
        "max_score": 900,
        "timezone": "Asia/Tokyo",
        "writes": "server",
    }


def test_an_empty_object_changes_nothing_and_records_nothing(service):
    service.set_rules(7, keep="sum")
    before, audited = service.rules(7), len(service.audit())
    assert service.put_rules(7, "{}", 200).json == before
    assert service.put_rules(8, "{}", 200).json["keep"] == "best"
    assert service.rules(7) == before
    assert len(service.audit()) == audited


def test_setting_a_rule_to_its_value_is_no_change_even_with_scores(service):
    service.set_rules(7, order="asc", keep="latest")
    service.fill(7, {1: 50})
    audited = len(service.audit())
    same = service.put_rules(7, json.dumps({**DEFAULT_RULES, "order": "asc", "keep": "latest"}))
    assert same.status_int == 200 and same.json["order"] == "asc"
    service.put_rules(7, '{"order": "asc"}', 200)
    service.put_rules(7, '{"keep": "latest"}', 200)
    assert len(service.audit()) == audited
    assert service.text("/7/highscorelist") == "1=50"


def case(body, why: str):
    """A table row as a test case named by why."""
    return pytest.param(body, id=why)


BAD_RULES = [
    ('{"colour": "red"}', "an unknown field"),
    ('{"level": 7}', "a field of the answer, not of the rules"),
    ('{"season": 2}', "a field of the answer, not of the rules"),
    ('{"order": "up"}', "an unknown order"),
    ('{"order": "ASC"}', "an order in capitals"),
    ('{"order": 1}', "an order that is a number"),
    ('{"order": null}', "a null order"),
    ('{"keep": "max"}', "an unknown keep"),
    ('{"keep": ["best"]}', "a keep that is a list"),
    ('{"reset": "yearly"}', "an unknown reset"),
    ('{"reset": "Daily"}', "a reset in capitals"),
    ('{"writes": "admins"}', "an unknown writer"),
    ('{"writes": true}', "a writer that is a bool"),
    ('{"min_score": "5"}', "a bound that is a string"),
    ('{"min_score": 1.5}', "a bound that is a fraction"),
    ('{"min_score": true}', "a bound that is a bool"),
    ('{"max_score": false}', "a bound that is a bool"),
    ('{"min_score": -1}', "a negative bound"),
    ('{"max_score": 2147483648}', "a bound past 31 bits"),
    ('{"max_score": 1e400}', "an infinite bound"),
    ('{"min_score": NaN}', "a bound that is not a number"),
    ('{"max_score": null}', "a null bound"),
    ('{"min_score": 10, "max_score": 5}', "min_score over max_score"),
    ('{"timezone": "Mars/Olympus_Mons"}', "an unknown time zone"),
    ('{"timezone": "Europe"}', "a folder of zones"),
    ('{"timezone": ""}', "an empty time zone"),
    ('{"timezone": "../../../etc/passwd"}', "a path"),
    ('{"timezone": "/usr/share/zoneinfo/UTC"}', "an absolute path"),
    ('{"timezone": "Europe/Berlin\\u0000"}', "a NUL in a zone"),
    ('{"timezone": "' + "A" * 900 + '"}', "a zone name too long for a file"),
    ('{"timezone": 1}', "a zone that is a number"),
    ('{"order": "asc", "colour": "red"}', "a good field with an unknown one"),
]


@pytest.mark.parametrize("body", [case(*row) for row in BAD_RULES])
def test_a_bad_rules_object_is_400_problem_json_and_changes_nothing(service, body):
    before, audited = service.rules(7), len(service.audit())
    response = service.put_rules(7, body, 400, headers=AS_JSON)
    assert_problem(response, 400)
    text = service.put_rules(7, body, 400)
    assert text.headers["Content-Type"] == TEXT_TYPE
    assert text.text.endswith("\n") and text.text.count("\n") == 1
    assert service.rules(7) == before
    assert len(service.audit()) == audited


def test_min_over_max_is_judged_against_the_stored_bounds(service):
    service.set_rules(7, max_score=100)
    assert_problem(service.put_rules(7, '{"min_score": 101}', 400, headers=AS_JSON), 400)
    service.set_rules(8, min_score=100)
    service.put_rules(8, '{"max_score": 99}', 400)
    assert service.set_rules(8, max_score=100)["max_score"] == 100  # equal bounds are fine


@pytest.mark.parametrize("change", [{"order": "asc"}, {"keep": "latest"}, {"keep": "sum"}])
def test_order_or_keep_changes_only_while_the_season_has_no_score(service, change):
    service.fill(7, {1: 50})
    response = service.put_rules(7, json.dumps(change), 409, headers=AS_JSON)
    assert_problem(response, 409)
    service.put_rules(7, json.dumps({**change, "min_score": 1}), 409)  # nothing of it is made
    assert service.rules(7)["min_score"] == 0
    assert service.rules(7) == {**service.rules(7), **DEFAULT_RULES}
    service.start_season(7)
    assert {k: v for k, v in service.set_rules(7, **change).items() if k in change} == change
    assert service.text("/7/highscorelist?season=1") == "1=50"


@pytest.mark.parametrize(
    "change",
    [
        {"min_score": 10},
        {"max_score": 60},
        {"reset": "daily"},
        {"timezone": "Europe/Berlin"},
        {"writes": "server"},
    ],
)
def test_other_rules_change_while_the_season_has_scores(service, change):
    service.fill(7, {1: 50})
    service.put_rules(7, json.dumps(change), 200)
    assert service.text("/7/highscorelist") == "1=50"


def test_a_banned_players_hidden_score_still_holds_the_seasons_order(service):
    service.set_rules(7, order="asc")
    service.fill(7, {1: 30})
    service.admin("PUT", "/admin/users/1/ban")
    # The score is hidden, not deleted: an order change must either wait for a new season
    # (409), or leave the score as it was posted when it comes back.
    service.put_rules(7, '{"order": "desc"}', [200, 409])
    service.admin("DELETE", "/admin/users/1/ban")
    assert service.text("/7/highscorelist") == "1=30"
    assert service.json("/7/rank/1")["score"] == 30


def test_rule_changes_and_season_starts_are_audited(service):
    service.set_rules(7, order="asc", min_score=5)
    service.start_season(7)
    service.set_rules(7, timezone="Europe/Berlin")
    newest = service.audit()[:3]
    assert [(e["action"], e["level"], e["user"]) for e in newest] == [
        ("rules", 7, None),
        ("season", 7, None),
        ("rules", 7, None),
    ]
    assert "Europe/Berlin" in newest[0]["detail"]
    assert "2" in newest[1]["detail"]
    assert "asc" in newest[2]["detail"] and "5" in newest[2]["detail"]
    for entry in newest:
        assert entry["at"].endswith("Z")


# Two apps share a file or a PostgreSQL database; a memory database is one app's alone.
@pytest.mark.parametrize("database_url", ["file", "postgresql"], indirect=True)
def test_a_second_app_on_the_database_applies_new_rules_at_its_next_request(make_service):
    first, second = make_service(), make_service()
    first.fill(7, {1: 5})
    assert second.text("/7/highscorelist") == "1=5"
    first.set_rules(7, max_score=10, writes="server")
    second.post(7, 2, 6, status=403)
    second.write(7, 2, 11, status=422)
    first.start_season(7)
    assert second.text("/7/highscorelist") == ""
    assert second.text("/7/seasons") == "1,2"
    first.set_rules(7, order="asc")
    second.fill(7, {3: 9, 4: 1})
    assert first.text("/7/highscorelist") == "4=1,3=9"
    # An Idempotency-Key is known to every app on the database.
    first.set_rules(8, keep="sum")
    first.write(8, 1, 5, headers={"Idempotency-Key": "across-apps"})
    second.write(8, 1, 5, headers={"Idempotency-Key": "across-apps"})
    second.post(8, 1, 5, headers={"Idempotency-Key": "across-apps"})
    assert second.text("/8/highscorelist") == "1=5"


# --- order asc --------------------------------------------------------------------------


def test_an_asc_level_orders_lowest_first_everywhere(service):
    service.set_rules(3, order="asc")
    service.fill(3, {1: 95, 2: 80, 3: 120, 4: 80, 5: 60})
    service.write(3, 1, 99)  # worse in this order: changes nothing
    service.write(3, 3, 70)  # better: replaces
    order = [(5, 60), (3, 70), (2, 80), (4, 80), (1, 95)]
    ranked = [(rank, user, score) for rank, (user, score) in enumerate(order, 1)]
    assert service.text("/3/highscorelist") == pairs(order)
    listing = service.json("/3/highscorelist")
    assert listing["players"] == 5 and entries(listing) == ranked
    assert [service.text(f"/3/rank/{user}") for user, _ in order] == ["1", "2", "3", "4", "5"]
    assert service.json("/3/rank/4") == {
        "level": 3, "user": 4, "rank": 4, "score": 80, "players": 5,
    }  # fmt: skip
    assert service.text("/3/highscorelist?around=4") == pairs(order)
    assert service.text("/3/highscorelist?from=3") == pairs(order[2:])
    assert service.text("/3/highscorelist?users=1,4,5") == pairs([(5, 60), (4, 80), (1, 95)])
    assert entries(service.json("/3/highscorelist?users=1,4,5")) == [
        ranked[0], ranked[3], ranked[4],
    ]  # fmt: skip
    page = service.admin_scores(3).json
    assert page["players"] == 5 and admin_entries(page) == ranked
    assert [row[:3] for row in service.export(3)] == [
        [str(rank), str(user), str(score)] for rank, user, score in ranked
    ]
    deleted = service.admin("DELETE", "/admin/levels/3/scores/3").json
    assert (deleted["user"], deleted["score"]) == (3, 70)
    assert service.text("/3/highscorelist") == pairs([(5, 60), (2, 80), (4, 80), (1, 95)])


def test_an_asc_levels_windows_shift_at_either_end(service):
    service.set_rules(3, order="asc")
    service.fill(3, {user: user * 10 for user in range(20, 0, -1)})  # user n at rank n
    ladder = [(user, user * 10) for user in range(1, 21)]
    assert service.text("/3/highscorelist") == pairs(ladder[:15])
    assert service.text("/3/highscorelist?around=20") == pairs(ladder[5:])
    assert service.text("/3/highscorelist?around=1") == pairs(ladder[:15])
    assert service.text("/3/highscorelist?around=10") == pairs(ladder[2:17])
    assert service.text("/3/highscorelist?from=16") == pairs(ladder[15:])
    assert service.text("/3/highscorelist?from=21") == ""
    assert service.text("/3/rank/20") == "20"
    assert admin_entries(service.admin_scores(3, "?from=19").json) == [
        (19, 19, 190), (20, 20, 200),
    ]  # fmt: skip


@pytest.mark.parametrize(("order", "expected"), [("desc", [1, 7, 3, 9]), ("asc", [7, 3, 9, 1])])
def test_equal_scores_rank_by_who_reached_them_first_in_both_orders(service, order, expected):
    service.set_rules(4, order=order)
    for user, score in [(7, 500), (3, 500), (9, 500), (1, 600)]:
        service.post(4, user, score)
    service.post(4, 3, 500)  # equal again: keeps its first time
    assert [int(pair.split("=")[0]) for pair in service.text("/4/highscorelist").split(",")] == (
        expected
    )
    assert [service.text(f"/4/rank/{user}") for user in expected] == ["1", "2", "3", "4"]
    assert [row[1] for row in service.export(4)] == [str(user) for user in expected]
    assert [e["user"] for e in service.admin_scores(4).json["entries"]] == expected


# --- keep -----------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_keep_latest_replaces_the_entry_and_it_is_reached_now(service, order):
    service.set_rules(5, keep="latest", order=order)
    service.post(5, 1, 500)
    service.post(5, 2, 400)
    service.post(5, 1, 300)  # worse in either order, still replaces
    expected = "2=400,1=300" if order == "desc" else "1=300,2=400"
    assert service.text("/5/highscorelist") == expected
    service.post(5, 1, 400)  # equal to user 2's now, and reached after it
    assert service.text("/5/highscorelist") == "2=400,1=400"
    service.post(5, 2, 400)  # the same score again: reached now, after user 1
    assert service.text("/5/highscorelist") == "1=400,2=400"
    assert service.json("/5/rank/2")["rank"] == 2


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_keep_sum_adds_every_post_and_stops_at_the_largest_score(service, order):
    service.set_rules(6, keep="sum", order=order)
    service.post(6, 1, 10)
    service.post(6, 2, 15)
    service.post(6, 1, 10)
    service.post(6, 3, MAX - 5)
    service.post(6, 3, 10)  # the total stops at 2147483647
    service.post(6, 3, MAX)
    totals = [(1, 20), (2, 15), (3, MAX)]
    listed = sorted(totals, key=lambda pair: -pair[1] if order == "desc" else pair[1])
    assert service.text("/6/highscorelist") == pairs(listed)
    assert service.json("/6/rank/3")["score"] == MAX
    assert [row[2] for row in service.export(6)] == [str(score) for _, score in listed]


def test_keep_sum_is_reached_when_the_total_last_changed(service, clock):
    service.set_rules(6, keep="sum")
    service.post(6, 1, 10)
    service.post(6, 2, 20)
    service.post(6, 1, 10)  # 20 as well, reached after user 2
    assert service.text("/6/highscorelist") == "2=20,1=20"
    reached = {e["user"]: e["reached_at"] for e in service.admin_scores(6).json["entries"]}
    clock.advance(60)
    service.post(6, 2, 0)  # adds nothing: the total did not change
    assert service.text("/6/highscorelist") == "2=20,1=20"
    page = service.admin_scores(6).json["entries"]
    assert {e["user"]: e["reached_at"] for e in page} == reached
    service.post(6, 3, MAX)
    service.post(6, 4, MAX)
    service.post(6, 3, 5)  # at the cap already: no change, so no new time
    assert service.text("/6/highscorelist?from=1") == f"3={MAX},4={MAX},2=20,1=20"


def test_keep_best_in_asc_keeps_the_lowest(service):
    service.set_rules(5, order="asc")
    service.post(5, 1, 300)
    service.post(5, 1, 301)
    assert service.text("/5/highscorelist") == "1=300"
    service.post(5, 1, 299)
    assert service.text("/5/highscorelist") == "1=299"


# --- bounds and writers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("bounds", "refused", "accepted"),
    [
        ({"min_score": 10, "max_score": 100}, [0, 9, 101, MAX], [10, 55, 100]),
        ({"min_score": 1}, [0], [1, MAX]),
        ({"max_score": 0}, [1, MAX], [0]),
        ({"min_score": MAX}, [0, MAX - 1], [MAX]),
    ],
)
@pytest.mark.parametrize("keep", ["best", "sum"])
def test_a_score_outside_the_bounds_is_422_and_nothing_is_recorded(
    service, bounds, refused, accepted, keep
):
    service.set_rules(8, keep=keep, **bounds)
    for score in refused:
        response = service.post(8, 1, score, status=422)
        assert response.headers["Content-Type"] == TEXT_TYPE
        assert response.text.endswith("\n") and response.text.count("\n") == 1
        assert_problem(service.post(8, 1, score, status=422, headers=AS_JSON), 422)
        service.write(8, 2, score, status=422)
    assert service.text("/8/highscorelist") == ""
    service.text("/8/rank/1", status=404)
    for score in accepted:
        service.post(8, 1, score)
    assert service.json("/8/highscorelist")["players"] == 1


def test_bounds_judge_each_post_and_a_sum_is_capped_only_at_the_largest_score(service):
    service.set_rules(8, keep="sum", max_score=100)
    service.post(8, 1, 60)
    service.post(8, 1, 60)
    service.post(8, 1, 101, status=422)
    assert service.text("/8/highscorelist") == "1=120"


def test_a_server_only_level_takes_posts_from_the_trusted_writer_alone(service):
    service.set_rules(9, writes="server")
    response = service.post(9, 1, 100, status=403)
    assert response.text.count("\n") == 1
    assert_problem(service.post(9, 1, 100, status=403, headers=AS_JSON), 403)
    assert service.text("/9/highscorelist") == ""
    service.write(9, 1, 100)
    assert service.text("/9/highscorelist") == "1=100"
    service.post(10, 1, 5)  # players still post where the level lets them


# --- seasons ---------------------------------------------------------------------------


def test_a_new_season_starts_empty_and_the_earlier_stays_readable(service, clock):
    service.fill(2, {1: 100, 2: 300, 3: 200})
    first_started = service.rules(2)["season_started"]
    clock.advance(3600)
    now = iso(service.now_us())
    started = service.start_season(2)
    assert list(started) == RULES_KEYS
    assert started == {
        "level": 2, **DEFAULT_RULES, "season": 2, "season_started": now, "season_ends": None,
    }  # fmt: skip
    assert service.rules(2) == started
    assert service.text("/2/highscorelist") == ""
    assert service.json("/2/highscorelist") == {"level": 2, "players": 0, "entries": []}
    service.text("/2/rank/1", status=404)
    service.text("/2/highscorelist?around=1", status=404)
    assert service.text("/2/highscorelist?from=2") == ""
    assert service.text("/2/highscorelist?users=1,2") == ""
    assert service.admin_scores(2).json["entries"] == []
    assert service.export(2) == []
    service.fill(2, {4: 50})
    # Season 1, read-only, with its ordering.
    old = "?season=1"
    assert service.text(f"/2/highscorelist{old}") == "2=300,3=200,1=100"
    assert service.json(f"/2/highscorelist{old}")["players"] == 3
    assert service.text(f"/2/rank/1{old}") == "3"
    assert service.json(f"/2/rank/3{old}") == {
        "level": 2, "user": 3, "rank": 2, "score": 200, "players": 3,
    }  # fmt: skip
    assert service.text(f"/2/highscorelist{old}&around=1") == "2=300,3=200,1=100"
    assert service.text(f"/2/highscorelist{old}&from=2") == "3=200,1=100"
    assert service.text(f"/2/highscorelist{old}&users=1,4") == "1=100"
    page = service.admin_scores(2, f"{old}&from=2").json
    assert page["players"] == 3 and admin_entries(page) == [(2, 3, 200), (3, 1, 100)]
    assert [row[:3] for row in service.export(2, old)] == [
        ["1", "2", "300"], ["2", "3", "200"], ["3", "1", "100"],
    ]  # fmt: skip
    assert service.text("/2/highscorelist?season=2") == "4=50"
    assert service.text("/2/highscorelist?season=02") == "4=50"  # leading zeros are fine
    assert service.json("/2/seasons") == {
        "level": 2,
        "current": 2,
        "seasons": [
            {"season": 1, "started": first_started, "ended": now, "players": 3},
            {"season": 2, "started": now, "ended": None, "players": 1},
        ],
    }


def test_a_season_can_be_started_whatever_the_reset(service, clock):
    for level, reset in enumerate(["never", "manual", "daily", "weekly", "monthly"], start=20):
        service.set_rules(level, reset=reset)
        clock.advance(1)
        assert service.start_season(level)["season"] == 2
        assert service.start_season(level)["season"] == 3
        assert service.text(f"/{level}/seasons") == "1,2,3"
    assert [e["action"] for e in service.audit()[:2]] == ["season", "season"]


def test_a_past_season_keeps_the_order_it_was_played_in(service):
    service.fill(2, {1: 10, 2: 20})
    service.start_season(2)
    service.set_rules(2, order="asc")
    service.fill(2, {1: 10, 2: 20})
    assert service.text("/2/highscorelist") == "1=10,2=20"
    assert service.text("/2/highscorelist?season=1") == "2=20,1=10"
    assert service.text("/2/rank/2?season=1") == "1"
    assert [row[1] for row in service.export(2, "?season=1")] == ["2", "1"]


SEASON_READS = [
    "/2/highscorelist?season={}",
    "/2/highscorelist?around=1&season={}",
    "/2/highscorelist?season={}&from=1",
    "/2/highscorelist?season={}&from=2",
    "/2/highscorelist?users=1,2&season={}",
    "/2/rank/1?season={}",
]
ADMIN_SEASON_READS = [
    "/admin/levels/2/scores?season={}",
    "/admin/levels/2/scores?from=2&season={}",
    "/admin/levels/2/export?season={}",
]
MISSING_SEASONS = ["0", "00", "3", "4", str(MAX)]
MALFORMED_NUMBERS = [
    "", "-1", "+1", "1.0", "1e0", "0x1", "%201", "1%20", "1_0", "%D9%A1", "%EF%BC%91", "%00",
    "a", "2147483648", "9" * 5000, "1,2", "%FF",
]  # fmt: skip


@pytest.mark.parametrize("path", SEASON_READS + ADMIN_SEASON_READS)
def test_a_season_that_does_not_exist_is_404_and_a_malformed_one_400(service, path):
    service.fill(2, {1: 10, 2: 5})
    service.start_season(2)
    service.fill(2, {1: 7, 2: 8})
    call = service.admin if path.startswith("/admin") else None
    for season, status in [("1", 200), ("2", 200), ("01", 200)] + [
        (season, 404) for season in MISSING_SEASONS
    ]:
        if call:
            call("GET", path.format(season), status)
        else:
            service.client.get(path.format(season), status=status)
    for season in MALFORMED_NUMBERS:
        if call:
            call("GET", path.format(season), 400)
        else:
            service.client.get(path.format(season), status=400)
            service.client.get(path.format(season), headers=AS_JSON, status=400)
    repeated = path.format("1") + "&season=1"
    if call:
        call("GET", repeated, 400)
    else:
        service.client.get(repeated, status=400)
    missing = service.client.get(path.format("3"), headers={**AS_JSON, **AS_ADMIN}, status=404)
    assert_problem(missing, 404)


def test_the_seasons_of_a_level_nobody_configured(service):
    started = service.rules(7)["season_started"]
    response = service.client.get("/7/seasons", status=200)
    assert response.headers["Content-Type"] == TEXT_TYPE
    assert response.text == "1"
    assert service.client.head("/7/seasons", status=200).body == b""
    service.fill(7, {1: 3, 2: 4})
    as_json = service.client.get("/7/seasons", headers=AS_JSON, status=200)
    assert as_json.headers["Content-Type"] == "application/json"
    assert list(as_json.json) == ["level", "current", "seasons"]
    assert as_json.json == {
        "level": 7,
        "current": 1,
        "seasons": [{"season": 1, "started": started, "ended": None, "players": 2}],
    }
    assert list(as_json.json["seasons"][0]) == ["season", "started", "ended", "players"]


def test_each_seasons_end_is_the_next_ones_start(service, clock):
    service.fill(7, {1: 1})
    for _ in range(3):
        clock.advance(DAY)
        service.start_season(7)
    clock.advance(DAY)
    service.set_rules(7, reset="daily")
    clock.advance(3 * DAY)  # three midnights: three more seasons, two of them empty
    listing = service.json("/7/seasons")
    seasons = listing["seasons"]
    assert listing["current"] == 7 == len(seasons)
    assert service.text("/7/seasons") == "1,2,3,4,5,6,7"
    assert [s["season"] for s in seasons] == list(range(1, 8))
    for earlier, later in itertools.pairwise(seasons):
        assert earlier["ended"] == later["started"]
    assert seasons[-1]["ended"] is None
    assert [s["players"] for s in seasons] == [1, 0, 0, 0, 0, 0, 0]
    assert [s["started"][11:] for s in seasons[5:]] == ["00:00:00Z", "00:00:00Z"]


# Scheduled resets in Europe/Berlin (CET, UTC+1; CEST, UTC+2 from the last Sunday of March
# to the last Sunday of October). In 2027 the clocks change on 28 March and 31 October.
BERLIN_DAILY = [
    # (when, season, its start, its scheduled end)
    ("2027-03-27T22:59:59Z", 1, None, "2027-03-27T23:00:00Z"),  # Sat 23:59:59 CET
    ("2027-03-27T23:00:00Z", 2, "2027-03-27T23:00:00Z", "2027-03-28T22:00:00Z"),  # 23 h day
    ("2027-03-28T21:59:59Z", 2, "2027-03-27T23:00:00Z", "2027-03-28T22:00:00Z"),
    ("2027-03-28T22:00:00Z", 3, "2027-03-28T22:00:00Z", "2027-03-29T22:00:00Z"),  # Mon, CEST
]
BERLIN_AUTUMN_DAILY = [
    ("2027-10-30T21:59:59Z", 1, None, "2027-10-30T22:00:00Z"),  # Sat 23:59:59 CEST
    ("2027-10-30T22:00:00Z", 2, "2027-10-30T22:00:00Z", "2027-10-31T23:00:00Z"),  # 25 h day
    ("2027-10-31T22:59:59Z", 2, "2027-10-30T22:00:00Z", "2027-10-31T23:00:00Z"),
    ("2027-10-31T23:00:00Z", 3, "2027-10-31T23:00:00Z", "2027-11-01T23:00:00Z"),  # Mon, CET
]
BERLIN_WEEKLY = [
    ("2027-03-27T23:00:00Z", 1, None, "2027-03-28T22:00:00Z"),  # Sunday midnight: no reset
    ("2027-03-28T21:59:59Z", 1, None, "2027-03-28T22:00:00Z"),  # Sun 23:59:59 CEST
    ("2027-03-28T22:00:00Z", 2, "2027-03-28T22:00:00Z", "2027-04-04T22:00:00Z"),  # Monday
    ("2027-04-04T22:00:00Z", 3, "2027-04-04T22:00:00Z", "2027-04-11T22:00:00Z"),
    ("2027-10-31T22:59:59Z", 32, "2027-10-24T22:00:00Z", "2027-10-31T23:00:00Z"),
    ("2027-10-31T23:00:00Z", 33, "2027-10-31T23:00:00Z", "2027-11-07T23:00:00Z"),  # CET
]
BERLIN_MONTHLY = [
    ("2027-03-31T21:59:59Z", 1, None, "2027-03-31T22:00:00Z"),  # Wed 23:59:59 CEST
    ("2027-03-31T22:00:00Z", 2, "2027-03-31T22:00:00Z", "2027-04-30T22:00:00Z"),  # 1 April
    ("2027-10-31T22:59:59Z", 8, "2027-09-30T22:00:00Z", "2027-10-31T23:00:00Z"),
    ("2027-10-31T23:00:00Z", 9, "2027-10-31T23:00:00Z", "2027-11-30T23:00:00Z"),  # 1 Nov, CET
    ("2028-01-01T00:00:00Z", 11, "2027-12-31T23:00:00Z", "2028-01-31T23:00:00Z"),  # a new year
]
# America/Santiago moves its clocks at midnight: 5 September 2027 begins at 01:00 (UTC-3).
SANTIAGO_DAILY = [
    ("2027-09-05T03:59:59Z", 1, None, "2027-09-05T04:00:00Z"),  # Sat 23:59:59, UTC-4
    ("2027-09-05T04:00:00Z", 2, "2027-09-05T04:00:00Z", "2027-09-06T03:00:00Z"),  # 23 h day
    ("2027-09-06T03:00:00Z", 3, "2027-09-06T03:00:00Z", "2027-09-07T03:00:00Z"),
]


@pytest.mark.parametrize(
    ("reset", "zone", "set_at", "steps"),
    [
        ("daily", "Europe/Berlin", "2027-03-27T11:00:00Z", BERLIN_DAILY),
        ("daily", "Europe/Berlin", "2027-10-30T11:00:00Z", BERLIN_AUTUMN_DAILY),
        ("weekly", "Europe/Berlin", "2027-03-24T11:00:00Z", BERLIN_WEEKLY),  # a Wednesday
        ("monthly", "Europe/Berlin", "2027-03-15T11:00:00Z", BERLIN_MONTHLY),
        ("daily", "America/Santiago", "2027-09-04T16:00:00Z", SANTIAGO_DAILY),
    ],
    ids=["daily-spring", "daily-autumn", "weekly", "monthly", "daily-midnight-skipped"],
)
def test_scheduled_seasons_start_at_local_midnight_across_clock_changes(
    service, reset, zone, set_at, steps
):
    service.travel(set_at)
    first_started = service.rules(11)["season_started"]
    changed = service.set_rules(11, reset=reset, timezone=zone)
    assert changed["season"] == 1 and changed["season_started"] == first_started
    assert changed["season_ends"] == steps[0][3]
    service.fill(11, {1: 10})
    posted = {1: "1=10"}  # each season's list: a new one starts empty, then user n posts n
    for when, season, started, ends in steps:
        service.travel(when)
        rules = service.rules(11)
        assert (rules["season"], rules["season_ends"]) == (season, ends), when
        assert rules["season_started"] == (started or first_started), when
        assert service.text("/11/seasons") == ",".join(map(str, range(1, season + 1))), when
        assert service.text("/11/highscorelist") == posted.get(season, ""), when
        if season not in posted:
            service.fill(11, {season: season})
            posted[season] = f"{season}={season}"
    for season, listed in posted.items():
        assert service.text(f"/11/highscorelist?season={season}") == listed
    seasons = service.json("/11/seasons")["seasons"]
    assert seasons[0]["players"] == 1 and seasons[0]["ended"] == steps[0][3]
    for earlier, later in itertools.pairwise(seasons):
        assert earlier["ended"] == later["started"]


def test_a_season_started_by_hand_on_a_schedule_ends_at_the_next_boundary(service):
    service.travel("2027-05-10T10:00:00Z")
    service.set_rules(14, reset="daily", timezone="Europe/Berlin")
    service.fill(14, {1: 1})
    started = service.start_season(14)
    assert started["season"] == 2
    assert started["season_started"] == iso(service.now_us())
    assert started["season_ends"] == "2027-05-10T22:00:00Z"  # midnight, CEST
    service.fill(14, {2: 2})
    service.travel("2027-05-10T22:00:00Z")
    assert service.rules(14)["season"] == 3
    assert service.text("/14/highscorelist") == ""
    assert service.text("/14/highscorelist?season=2") == "2=2"
    seasons = service.json("/14/seasons")["seasons"]
    assert [(s["season"], s["ended"], s["players"]) for s in seasons] == [
        (1, started["season_started"], 1),
        (2, "2027-05-10T22:00:00Z", 1),
        (3, None, 0),
    ]


def test_scheduled_seasons_need_no_write_to_begin(service):
    service.travel("2027-05-10T10:00:00Z")
    service.set_rules(12, reset="daily", timezone="Europe/Berlin")
    service.fill(12, {1: 10})
    etag = service.client.get("/12/highscorelist", status=200).headers["ETag"]
    service.travel("2027-05-10T22:00:01Z")  # past midnight in Berlin, and nothing written
    response = service.client.get("/12/highscorelist", headers={"If-None-Match": etag}, status=200)
    assert response.text == ""
    assert response.headers["ETag"] != etag
    service.client.get("/12/highscorelist?season=1", headers={"If-None-Match": etag}, status=304)


def test_a_new_reset_or_zone_starts_no_season_but_ends_the_current_at_its_next_boundary(
    service,
):
    service.travel("2027-05-12T10:00:00Z")  # a Wednesday
    service.set_rules(13, reset="daily")  # UTC
    service.fill(13, {1: 10})
    assert service.rules(13)["season_ends"] == "2027-05-13T00:00:00Z"
    weekly = service.set_rules(13, reset="weekly")
    assert (weekly["season"], weekly["season_ends"]) == (1, "2027-05-17T00:00:00Z")
    service.travel("2027-05-13T00:00:01Z")  # the daily boundary no longer counts
    assert service.text("/13/highscorelist") == "1=10"
    zoned = service.set_rules(13, timezone="Pacific/Auckland")  # UTC+12 in May
    assert (zoned["season"], zoned["season_ends"]) == (1, "2027-05-16T12:00:00Z")
    service.travel("2027-05-16T12:00:00Z")
    assert service.rules(13)["season"] == 2
    assert service.text("/13/highscorelist") == ""
    never = service.set_rules(13, reset="never")
    assert (never["season"], never["season_ends"]) == (2, None)
    service.travel("2027-07-01T00:00:00Z")
    assert service.rules(13)["season"] == 2
    manual = service.set_rules(13, reset="manual")
    assert (manual["season"], manual["season_ends"]) == (2, None)
    assert service.text("/13/seasons") == "1,2"


# --- friends ---------------------------------------------------------------------------


def test_friends_are_listed_in_the_levels_order_with_their_place_in_it(service):
    service.fill(2, {user: 1000 - user for user in range(1, 31)})  # user n at rank n
    assert service.text("/2/highscorelist?users=25,3,99,17") == "3=997,17=983,25=975"
    listing = service.json("/2/highscorelist?users=25,3,99,17")
    assert listing == {
        "level": 2,
        "players": 30,
        "entries": [
            {"rank": 3, "user": 3, "score": 997},
            {"rank": 17, "user": 17, "score": 983},
            {"rank": 25, "user": 25, "score": 975},
        ],
    }
    assert service.text("/2/highscorelist?users=99") == ""
    assert service.json("/2/highscorelist?users=99") == {
        "level": 2, "players": 30, "entries": [],
    }  # fmt: skip
    assert service.text("/2/highscorelist?users=3,3,03,3") == "3=997"  # duplicates once
    assert service.text("/2/highscorelist?users=%33%2C4") == "3=997,4=996"  # escaped


def test_friends_take_at_most_100_distinct_ids(service):
    service.fill(2, {user: user for user in range(1, 102)})
    hundred = ",".join(str(user) for user in range(1, 101))
    listed = service.json(f"/2/highscorelist?users={hundred}")
    assert len(listed["entries"]) == 100
    assert listed["entries"][0] == {"rank": 2, "user": 100, "score": 100}
    service.client.get(f"/2/highscorelist?users={hundred},101", status=400)
    assert_problem(
        service.client.get(f"/2/highscorelist?users={hundred},101", headers=AS_JSON, status=400),
        400,
    )
    # 101 ids of which 100 differ: duplicates count once.
    assert len(service.json(f"/2/highscorelist?users={hundred},100")["entries"]) == 100
    many = ",".join(["1"] * 5000)
    assert service.text(f"/2/highscorelist?users={many}") == "1=1"


MALFORMED_FRIENDS = [
    "", ",", "1,", ",1", "1,,2", "1;2", "1%202", "-1", "+1", "1.5", "%D9%A1", "%EF%BC%91",
    "2147483648", "9" * 5000, "0x1", "1e3", "a,b", "1_0", "%00", "%FF",
]  # fmt: skip


@pytest.mark.parametrize("users", MALFORMED_FRIENDS)
def test_a_malformed_friends_list_is_400(service, users):
    service.fill(2, {1: 1})
    service.client.get(f"/2/highscorelist?users={users}", status=400)
    assert_problem(
        service.client.get(f"/2/highscorelist?users={users}", headers=AS_JSON, status=400), 400
    )


@pytest.mark.parametrize(
    "query",
    [
        "users=1&around=1",
        "around=1&users=1",
        "users=1&from=1",
        "from=2&users=1,2",
        "users=1&from=1&around=1",
        "users=1&users=2",
        "users=1&season=1&around=1",
    ],
)
def test_friends_with_around_or_from_are_400(service, query):
    service.fill(2, {1: 1, 2: 2})
    service.client.get(f"/2/highscorelist?{query}", status=400)


# --- the trusted writer ----------------------------------------------------------------


def test_the_trusted_writer_posts_for_any_user_on_any_level(service):
    service.write(2, 4711, 1500)
    service.write(2, "0131", 1220)  # leading zeros are fine
    assert service.text("/2/highscorelist") == "4711=1500,131=1220"
    service.set_rules(3, writes="server", order="asc")
    service.write(3, 1, 20)
    assert service.text("/3/highscorelist") == "1=20"
    service.write(2, 4711, "1600\n")  # one line ending, as players may send
    assert service.text("/2/rank/4711") == "1"


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        f"Bearer {ADMIN_TOKEN}",
        "Bearer ",
        f"Bearer {WRITER_TOKEN[:-1]}",
        f"Bearer {WRITER_TOKEN}x",
        f"Basic {WRITER_TOKEN}",
        WRITER_TOKEN,
        "Bearer \xe9\xe9\xe9",
    ],
)
def test_a_post_with_user_and_no_or_a_wrong_token_is_401(service, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    service.client.post("/2/score?user=1", "5", headers=headers, status=401)
    key = service.client.get("/1/login", status=200).text
    # A session key does not stand in for the writer's token.
    service.client.post(f"/2/score?user=1&sessionkey={key}", "5", headers=headers, status=401)
    assert service.text("/2/highscorelist") == ""


def test_with_no_writer_token_set_user_posts_are_401(make_service):
    off = make_service(writer_token=None)
    off.client.post("/2/score?user=1", "5", headers=AS_WRITER, status=401)
    assert off.text("/2/highscorelist") == ""


@pytest.mark.parametrize("token", ["", "x" * 31, "short"])
def test_a_writer_token_is_at_least_32_characters(token):
    with pytest.raises(SettingsError):
        Settings(writer_token=token)
    assert Settings(writer_token="x" * 32).writer_token == "x" * 32


@pytest.mark.parametrize(
    "user", ["", "-1", "+1", "%D9%A1", "2147483648", "9" * 5000, "1.0", "0x1", "%201", "%FF"]
)
def test_a_malformed_user_for_the_writer_is_400(service, user):
    service.write(2, user, 5, status=400)
    service.client.post("/2/score?user=1&user=2", "5", headers=AS_WRITER, status=400)
    assert service.text("/2/highscorelist") == ""


def test_the_trusted_writer_is_outside_the_per_user_post_limit(make_service):
    limited = make_service(post_limit="1/1")
    limited.post(2, 1, 10)
    limited.post(2, 1, 11, status=429)
    for score in range(20, 40):
        limited.write(2, 1, score)
    assert limited.text("/2/highscorelist") == "1=39"


def test_the_writer_posts_nothing_for_a_banned_user(service):
    service.admin("PUT", "/admin/users/5/ban")
    service.write(2, 5, 100, status=403)
    assert service.text("/2/highscorelist") == ""


# --- idempotent posts ------------------------------------------------------------------


def test_a_retry_with_the_same_key_answers_as_the_first_and_changes_nothing(service):
    retry = {"Idempotency-Key": "post-0001_a"}
    first = service.post(2, 1, 100, headers=retry)
    again = service.post(2, 1, 200, headers=retry)
    assert (again.status_int, again.body) == (first.status_int, first.body)
    assert service.text("/2/highscorelist") == "1=100"
    service.write(2, 1, 300, headers=retry)  # the writer's post for the same user and level
    assert service.text("/2/highscorelist") == "1=100"
    service.post(2, 1, 300, headers={"Idempotency-Key": "post-0002"})
    assert service.text("/2/highscorelist") == "1=300"


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_a_retried_post_to_a_sum_level_adds_once(service, order):
    service.set_rules(6, keep="sum", order=order)
    for _ in range(3):
        service.post(6, 1, 10, headers={"Idempotency-Key": "k1"})
    service.write(6, 1, 10, headers={"Idempotency-Key": "k1"})
    assert service.text("/6/highscorelist") == "1=10"
    service.post(6, 1, 10, headers={"Idempotency-Key": "k2"})
    service.post(6, 1, 10)  # no key: always counted
    assert service.text("/6/highscorelist") == "1=30"


def test_the_same_key_for_another_user_or_level_is_another_key(service):
    same = {"Idempotency-Key": "shared"}
    service.post(2, 1, 10, headers=same)
    service.post(2, 2, 20, headers=same)  # another user
    service.post(3, 1, 30, headers=same)  # another level
    assert service.text("/2/highscorelist") == "2=20,1=10"
    assert service.text("/3/highscorelist") == "1=30"
    service.set_rules(4, keep="sum")
    service.write(4, 1, 5, headers=same)
    service.write(4, 2, 5, headers=same)
    assert service.text("/4/highscorelist") == "1=5,2=5"


def test_a_key_is_new_again_after_24_hours(service, clock):
    service.set_rules(6, keep="sum")
    key = {"Idempotency-Key": "daily-retry"}
    service.post(6, 1, 10, headers=key)
    clock.advance(DAY - 1)
    service.post(6, 1, 10, headers=key)
    assert service.text("/6/highscorelist") == "1=10"
    clock.advance(2)
    service.post(6, 1, 10, headers=key)
    assert service.text("/6/highscorelist") == "1=20"
    service.post(6, 1, 10, headers=key)  # and it is remembered from this post on
    assert service.text("/6/highscorelist") == "1=20"


def test_a_retry_answers_as_the_first_even_after_the_rules_change(service):
    service.set_rules(8, keep="sum")
    key = {"Idempotency-Key": "lost-answer"}
    service.post(8, 1, 50, headers=key)
    service.set_rules(8, max_score=10, writes="server")
    # The first post was answered 200 (its answer lost on the way): its retry answers 200.
    service.post(8, 1, 50, headers=key, status=200)
    service.write(8, 1, 50, headers=key, status=200)
    assert service.text("/8/highscorelist") == "1=50"


def test_a_retry_answers_as_the_first_even_over_the_post_limit(make_service):
    limited = make_service(post_limit="1/1")
    key = {"Idempotency-Key": "lost-answer"}
    limited.post(2, 1, 50, headers=key)
    limited.post(2, 1, 50, headers=key, status=200)
    assert limited.text("/2/highscorelist") == "1=50"


def test_a_refused_post_does_not_use_up_its_key(service):
    service.set_rules(8, max_score=100)
    key = {"Idempotency-Key": "bounded"}
    service.post(8, 1, 101, status=422, headers=key)
    service.post(8, 1, 101, status=422, headers=key)  # the same answer again
    assert service.text("/8/highscorelist") == ""


@pytest.mark.parametrize(
    "key",
    ["", "a" * 65, "a b", " a", "a.b", "a/b", "a+b", "a=b", "a:b", "\xe4", "a\tb", "é" * 3],
)
def test_a_malformed_idempotency_key_is_400_and_records_nothing(service, key):
    service.post(2, 1, 10, status=400, headers={"Idempotency-Key": key})
    service.write(2, 1, 10, status=400, headers={"Idempotency-Key": key})
    assert service.text("/2/highscorelist") == ""


@pytest.mark.parametrize("key", ["a", "Z" * 64, "0", "-", "_", "aZ09-_"])
def test_well_formed_idempotency_keys_are_taken(service, key):
    service.post(2, 1, 10, headers={"Idempotency-Key": key})
    service.post(2, 1, 20, headers={"Idempotency-Key": key})
    assert service.text("/2/highscorelist") == "1=10"


# --- bans, metrics ---------------------------------------------------------------------


def test_a_banned_user_leaves_every_season_and_comes_back_on_unban(service):
    service.set_rules(2, order="asc")
    service.fill(2, {1: 10, 2: 20, 3: 30})
    service.start_season(2)
    service.set_rules(2, order="desc", keep="sum")
    service.fill(2, {1: 5, 2: 7})
    service.set_rules(9, reset="daily")
    service.fill(9, {1: 1})

    def views() -> list:
        return [
            service.text("/2/highscorelist?season=1"),
            service.text("/2/highscorelist"),
            service.text("/2/highscorelist?season=1&users=1,2"),
            service.text("/9/highscorelist"),
            [s["players"] for s in service.json("/2/seasons")["seasons"]],
            service.admin_scores(2, "?season=1").json["players"],
            [row[1] for row in service.export(2, "?season=1")],
        ]

    before = views()
    assert before == [
        "1=10,2=20,3=30", "2=7,1=5", "1=10,2=20", "1=1", [3, 2], 3, ["1", "2", "3"],
    ]  # fmt: skip
    service.admin("PUT", "/admin/users/1/ban")
    assert views() == ["2=20,3=30", "2=7", "2=20", "", [2, 1], 2, ["2", "3"]]
    service.text("/2/rank/1?season=1", status=404)
    service.text("/2/rank/1", status=404)
    service.text("/2/highscorelist?around=1&season=1", status=404)
    assert service.text("/2/rank/2?season=1") == "1"
    service.client.get("/1/login", status=403)
    service.write(2, 1, 99, status=403)
    service.admin("DELETE", "/admin/users/1/ban")
    assert views() == before
    assert service.text("/2/rank/1?season=1") == "1"


def test_posts_refused_by_a_levels_rules_are_counted_by_reason(service):
    service.set_rules(3, min_score=10, max_score=20)
    service.set_rules(4, writes="server")
    service.post(3, 1, 9, status=422)
    service.write(3, 1, 21, status=422)
    service.post(3, 1, 22, status=422)
    service.post(4, 1, 5, status=403)
    service.post(3, 1, 15)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(service.text("/metrics"))
        for sample in family.samples
    }
    rejected = "scoresvc_scores_rejected_total"
    assert samples[(rejected, (("reason", "below_min_score"),))] == 1
    assert samples[(rejected, (("reason", "above_max_score"),))] == 2
    assert samples[(rejected, (("reason", "server_only"),))] == 1
    assert samples[("scoresvc_scores_received_total", ())] == 1


# --- a level with default rules answers as before ---------------------------------------


def etag(body: bytes, variant: str) -> str:
    return f'"{variant}-{blake2b(body, digest_size=12).hexdigest()}"'


def test_a_default_level_answers_byte_for_byte_as_before(service):
    # Level 2 nobody configured; level 3 set to the defaults, field by field: the same answers.
    service.put_rules(3, json.dumps(DEFAULT_RULES), 200)
    service.put_rules(3, "{}", 200)
    for level in (2, 3):
        for user, score in [(4711, 1500), (131, 1220), (7, 1500), (8, 1)]:
            service.post(level, user, score)
        service.post(level, 131, 1000)  # lower: changes nothing
    answers = {}
    for level in (2, 3):
        got = []
        for path, headers in [
            ("highscorelist", {}),
            ("highscorelist", AS_JSON),
            ("highscorelist?around=7", {}),
            ("highscorelist?from=2", {}),
            ("rank/131", {}),
            ("rank/131", AS_JSON),
        ]:
            response = service.client.get(f"/{level}/{path}", headers=headers, status=200)
            got.append((response.body, response.headers["ETag"], response.headers["Content-Type"]))
            assert response.headers["Cache-Control"] == "no-cache"
            assert response.headers["Vary"] == "Accept"
        answers[level] = got
    text, as_json, around, page, rank, rank_json = answers[2]
    assert text[0] == b"4711=1500,7=1500,131=1220,8=1"
    assert text[1:] == (etag(text[0], "text"), TEXT_TYPE)
    assert as_json[0] == (
        b'{"level":2,"players":4,"entries":[{"rank":1,"user":4711,"score":1500},'
        b'{"rank":2,"user":7,"score":1500},{"rank":3,"user":131,"score":1220},'
        b'{"rank":4,"user":8,"score":1}]}'
    )
    assert as_json[1:] == (etag(as_json[0], "json"), "application/json")
    assert around[0] == text[0] and page[0] == b"7=1500,131=1220,8=1"
    assert rank[0] == b"3" and rank[1] == etag(b"3", "text")
    assert rank_json[0] == b'{"level":2,"user":131,"rank":3,"score":1220,"players":4}'
    for (body, _, kind), (same_body, same_tag, same_kind) in zip(
        answers[2], answers[3], strict=True
    ):
        assert same_body == body.replace(b'"level":2', b'"level":3')
        variant = "json" if kind == "application/json" else "text"
        assert (same_tag, same_kind) == (etag(same_body, variant), kind)
    service.client.get("/2/highscorelist", headers={"If-None-Match": text[1]}, status=304)
    service.client.get("/2/highscorelist?users=8", status=200)
    assert service.text("/2/seasons") == "1"


def test_an_etag_changes_when_a_seasons_body_would(service):
    service.fill(2, {1: 10})
    tag = service.client.get("/2/highscorelist", status=200).headers["ETag"]
    rank_tag = service.client.get("/2/rank/1", status=200).headers["ETag"]
    service.set_rules(2, min_score=1)  # the body stays: so does the tag
    service.client.get("/2/highscorelist", headers={"If-None-Match": tag}, status=304)
    service.start_season(2)
    fresh = service.client.get("/2/highscorelist", headers={"If-None-Match": tag}, status=200)
    assert fresh.text == "" and fresh.headers["ETag"] != tag
    service.client.get("/2/highscorelist?season=1", headers={"If-None-Match": tag}, status=304)
    service.client.get("/2/rank/1?season=1", headers={"If-None-Match": rank_tag}, status=304)
    service.fill(2, {1: 10})
    again = service.client.get("/2/highscorelist", headers={"If-None-Match": tag}, status=304)
    assert again.headers["ETag"] == tag  # the same body as season 1's: the same tag


# --- hostile input ---------------------------------------------------------------------


GARBAGE_BODIES = [
    (b"", "an empty body"),
    (b"not json", "not JSON"),
    (b"[]", "an array"),
    (b'["order", "asc"]', "an array of a field"),
    (b'"order"', "a string"),
    (b"null", "null"),
    (b"1", "a number"),
    (b"true", "true"),
    (b'{"order": "asc"', "an unfinished object"),
    (b'{"order": "asc"}}', "trailing garbage"),
    (b"\xff\xfe{}", "bytes that are not UTF-8"),
    (b'{"order": "\xff"}', "a string that is not UTF-8"),
    (b"[" * 1024, "arrays nested deeper than the parser recurses"),
    (b'{"a":' * 150 + b"1" + b"}" * 150, "nested objects"),
    (b'{"min_score": ' + b"9" * 1000 + b"}", "a number of a thousand digits"),
    (b"{'order': 'asc'}", "single quotes"),
]


@pytest.mark.parametrize("body", [case(*row) for row in GARBAGE_BODIES])
def test_put_rules_with_a_garbage_body_is_400(service, body):
    before = service.rules(7)
    assert_problem(service.put_rules(7, body, 400, headers=AS_JSON), 400)
    service.put_rules(7, body, 400)
    assert service.rules(7) == before


def test_put_rules_with_a_huge_body_is_refused_unread(service):
    huge = json.dumps({"timezone": "UTC", "pad": "x" * 100_000})
    service.put_rules(7, huge, 413)
    service.put_rules(7, b"{" + b" " * 2000 + b"}", 413)
    assert service.rules(7)["timezone"] == "UTC"


@pytest.mark.parametrize(
    "path",
    [
        "/2/highscorelist?season=%D9%A1&users=%D9%A1",
        "/2/highscorelist?users=1&users=1",
        "/2/highscorelist?around=1&around=1",
        "/2/highscorelist?from=1&from=1",
        "/2/highscorelist?season=1&season=2",
        "/2/rank/1?season=-0",
        "/2/rank/1?season=1&season=1",
        "/2/highscorelist?users=" + ",".join(map(str, range(100_000))),
        "/2/highscorelist?season=" + "0" * 100_000 + "1x",
    ],
)
def test_garbage_in_the_new_parameters_is_a_400(service, path):
    service.fill(2, {1: 1})
    service.client.get(path, status=400)
    service.client.get(path, headers=AS_JSON, status=400)


GARBAGE_READS = [
    ("/6/seasons?season=x", 200),  # seasons takes no parameters
    ("/6/seasons?users=x&season=0", 200),
    ("/6/highscorelist?season=" + "0" * 100_000, 404),  # zeros: season 0
    ("/6/highscorelist?season=" + "0" * 100_000 + "1", 200),
    ("/6/highscorelist?users=" + ",".join(["01"] * 20_000), 200),
    ("/6/highscorelist?season=%ff%fe", 400),
    ("/6/highscorelist?users=%ff", 400),
    ("/6/rank/1?season=%F0%9F%98%80", 400),
    ("/6/highscorelist?season=1&from=%D9%A1", 400),
    ("/6/highscorelist?season=1&around=%EF%BC%91", 400),
    ("/admin/levels/6/export?season=%00", 400),
    ("/admin/levels/6/export?season=1&season=1", 400),
    ("/admin/levels/6/scores?season=1&season=x", 400),
    ("/admin/levels/6/scores?season=%2B1", 400),
]
GARBAGE_POSTS = [
    ("user=1&user=%ff", AS_WRITER, 400),
    ("user=%ff", AS_WRITER, 400),
    ("user=", {}, 401),
    ("sessionkey=x&user=1", {"Authorization": "Bearer"}, 401),
    ("user=1", {**AS_WRITER, "Idempotency-Key": "k" * 10_000}, 400),
    ("user=1", {**AS_WRITER, "Idempotency-Key": "\x00"}, 400),
    ("user=1", {**AS_WRITER, "Idempotency-Key": "\u0661"}, 400),
    ("user=1", {**AS_WRITER, "Authorization": "Bearer " + "x" * 100_000}, 401),
]


@pytest.mark.parametrize(("path", "status"), GARBAGE_READS)
def test_garbage_in_reads_is_answered_never_with_a_500(service, path, status):
    service.set_rules(6, keep="sum", order="asc", reset="daily", timezone="Europe/Berlin")
    service.fill(6, {1: 1})
    service.client.get(path, headers=AS_ADMIN, status=status)
    service.client.get(path, headers={**AS_ADMIN, **AS_JSON}, status=status)


@pytest.mark.parametrize(("query", "headers", "status"), GARBAGE_POSTS)
def test_garbage_in_posts_is_answered_never_with_a_500(service, query, headers, status):
    service.set_rules(6, keep="sum", order="asc")
    service.client.post(f"/6/score?{query}", "5", headers=headers, status=status)
    assert service.text("/6/highscorelist") == ""


def test_garbage_bodies_to_the_admin_calls_never_make_a_500(service):
    garbage = {**AS_ADMIN, "Content-Type": "text/plain"}
    service.client.put("/admin/levels/6/rules", b"\x00\x01garbage", headers=garbage, status=400)
    # Starting a season reads no body.
    service.client.post("/admin/levels/6/seasons", b"\x00\x01", headers=garbage, status=200)
    assert service.rules(6)["season"] == 2
