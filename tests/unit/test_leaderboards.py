"""A level's rules and seasons as plain values (scoresvc.leaderboards): no database.

Rules: every field's good and bad values, unknown fields, bounds, time zone names (paths
included); stored and shown scores in both orders; board ids. Seasons: daily, weekly (from
Monday) and monthly boundaries at 00:00 local time, in UTC and in zones whose clocks change,
checked at fixed instants (tables) and against a model that walks local dates (Hypothesis).
"""

import datetime
import zoneinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoresvc.leaderboards import (
    DEFAULT_RULES,
    MAX_SCORE,
    RULE_FIELDS,
    SEASON_STRIDE,
    InvalidRules,
    Rules,
    SeasonSpan,
    board_id,
    iso_utc,
    zone,
)

UTC = datetime.UTC


def us(text: str) -> int:
    """An ISO 8601 instant with its offset ('2026-03-29T01:00:00+00:00') in µs since the epoch."""
    moment = datetime.datetime.fromisoformat(text)
    assert moment.tzinfo is not None, text
    whole = int(moment.replace(microsecond=0).timestamp())
    return whole * 1_000_000 + moment.microsecond


def local(at_us: int, name: str) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(at_us // 1_000_000, tz=zoneinfo.ZoneInfo(name)).replace(
        microsecond=at_us % 1_000_000
    )


# Rules


def test_the_defaults_are_the_three_calls_rules():
    assert (
        Rules(
            order="desc",
            keep="best",
            reset="never",
            timezone="UTC",
            min_score=0,
            max_score=MAX_SCORE,
            writes="players",
        )
        == DEFAULT_RULES
    )
    assert Rules(order="asc") != DEFAULT_RULES
    assert RULE_FIELDS == ("order", "keep", "reset", "timezone", "min_score", "max_score", "writes")


GOOD_CHANGES = [
    ({}, {}),
    ({"order": "asc"}, {"order": "asc"}),
    ({"order": "desc"}, {}),
    ({"keep": "latest"}, {"keep": "latest"}),
    ({"keep": "sum"}, {"keep": "sum"}),
    ({"keep": "best"}, {}),
    ({"reset": "manual"}, {"reset": "manual"}),
    ({"reset": "daily"}, {"reset": "daily"}),
    ({"reset": "weekly"}, {"reset": "weekly"}),
    ({"reset": "monthly"}, {"reset": "monthly"}),
    ({"reset": "never"}, {}),
    ({"writes": "server"}, {"writes": "server"}),
    ({"writes": "players"}, {}),
    ({"timezone": "UTC"}, {}),
    ({"timezone": "Europe/Berlin"}, {"timezone": "Europe/Berlin"}),
    ({"timezone": "America/Santiago"}, {"timezone": "America/Santiago"}),
    (
        {"timezone": "America/Argentina/Buenos_Aires"},
        {"timezone": "America/Argentina/Buenos_Aires"},
    ),
    ({"timezone": "Etc/GMT-14"}, {"timezone": "Etc/GMT-14"}),
    ({"timezone": "Etc/GMT+12"}, {"timezone": "Etc/GMT+12"}),
    ({"timezone": "Asia/Kathmandu"}, {"timezone": "Asia/Kathmandu"}),
    ({"min_score": 0}, {}),
    ({"min_score": 10}, {"min_score": 10}),
    ({"min_score": MAX_SCORE}, {"min_score": MAX_SCORE}),  # min == max: one score accepted
    ({"max_score": 0}, {"max_score": 0}),  # min == max == 0
    ({"max_score": 600_000}, {"max_score": 600_000}),
    ({"min_score": 5, "max_score": 5}, {"min_score": 5, "max_score": 5}),
    (
        {
            "order": "asc",
            "keep": "sum",
            "reset": "weekly",
            "timezone": "Europe/Berlin",
            "min_score": 1,
            "max_score": 99,
            "writes": "server",
        },
        {
            "order": "asc",
            "keep": "sum",
            "reset": "weekly",
            "timezone": "Europe/Berlin",
            "min_score": 1,
            "max_score": 99,
            "writes": "server",
        },
    ),
]


@pytest.mark.parametrize(("changes", "expected"), GOOD_CHANGES)
def test_changed_by_makes_the_changes_it_names_and_no_other(changes, expected):
    before = Rules()
    after = before.changed_by(changes)
    assert after == Rules(**expected)
    assert before == DEFAULT_RULES  # frozen: the rules changed are a new value


def test_a_change_is_made_on_the_rules_as_they_are():
    rules = Rules(order="asc", keep="sum", reset="daily", timezone="Europe/Berlin", max_score=50)
    assert rules.changed_by({}) == rules
    assert rules.changed_by({"keep": "sum", "order": "asc"}) == rules
    assert rules.changed_by({"min_score": 50}) == Rules(
        order="asc", keep="sum", reset="daily", timezone="Europe/Berlin", min_score=50, max_score=50
    )
    assert rules.changed_by({"reset": "never"}).timezone == "Europe/Berlin"


BAD_ZONES = [
    "",
    " ",
    "UTC ",
    " UTC",
    "UTC\n",
    "Europe/Berlin\n",
    "Europe/Berlin\x00",
    "../etc",
    "../etc/passwd",
    "../../../../etc/localtime",
    "/etc/localtime",
    "/usr/share/zoneinfo/UTC",
    "/UTC",
    "./UTC",
    "Europe/../UTC",
    "Europe/./Berlin",
    "Europe//Berlin",
    "Europe/Berlin/",
    "Europe\\Berlin",
    "..",
    ".",
    "~",
    # Folders of zones, and a name too long for a file: zoneinfo (with the tzdata package)
    # raises OSError for them.
    "Europe",
    "America",
    "Etc",
    "America/Argentina",
    "A" * 300,
    # The system's own zone under another name: it differs from machine to machine.
    "localtime",
    "Mars/Olympus_Mons",
    "Europe/Atlantis",
    "Berlin",
    "CEST",
    "UTC+1",
    "zone.tab",
    "zone1970.tab",
    "tzdata.zi",
    "iso3166.tab",
    "leap-seconds.list",
    "leapseconds",
    "A/" * 200 + "B",
    "Europe/Berlin/x",
    "UTC/x",
    "Europe/Berlín",
]


BAD_CHANGES = [
    # Not an object.
    None,
    [],
    [("order", "asc")],
    "order=asc",
    7,
    # Unknown fields.
    {"Order": "asc"},
    {"sort_order": "asc"},
    {"season": 2},
    {"level": 7},
    {"order": "asc", "colour": "red"},
    {"": "x"},
    {"min": 0},
    # order, keep, reset, writes: one of their words, exactly, as a string.
    *[
        {field: value}
        for field, words in [
            ("order", ("desc", "asc")),
            ("keep", ("best", "latest", "sum")),
            ("reset", ("never", "manual", "daily", "weekly", "monthly")),
            ("writes", ("players", "server")),
        ]
        for value in (
            "",
            words[0].upper(),
            words[-1].capitalize(),
            f" {words[0]}",
            f"{words[0]}\n",
            "max",
            "ascending",
            "hourly",
            "yearly",
            "admin",
            None,
            0,
            1,
            True,
            False,
            1.5,
            [words[0]],
            {"value": words[0]},
        )
    ],
    # min_score, max_score: a whole number from 0 to 2**31 - 1, never a bool, float or string.
    *[
        {field: value}
        for field in ("min_score", "max_score")
        for value in (
            -1,
            -(2**31),
            MAX_SCORE + 1,
            2**32,
            2**63,
            True,
            False,
            1.0,
            0.0,
            float("nan"),
            float("inf"),
            "5",
            "0",
            None,
            [5],
            {"value": 5},
        )
    ],
    # min_score > max_score, whichever of them the change names.
    {"min_score": 10, "max_score": 9},
    {"min_score": MAX_SCORE, "max_score": 0},
    {"max_score": -1, "min_score": 0},
    # Time zones: an IANA name, never a path, nor a name of no zone.
    *[{"timezone": name} for name in BAD_ZONES],
    {"timezone": None},
    {"timezone": 0},
    {"timezone": 1.0},
    {"timezone": ["UTC"]},
    {"timezone": True},
    # One bad field spoils a change whose other fields are good.
    {"order": "asc", "keep": "best", "reset": "Daily"},
    {"timezone": "Europe/Berlin", "min_score": -5},
]


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}...({len(text)} chars)"


@pytest.mark.parametrize("changes", BAD_CHANGES, ids=_short)
def test_changed_by_refuses_every_bad_change_with_a_one_line_reason(changes):
    with pytest.raises(InvalidRules) as raised:
        Rules().changed_by(changes)
    reason = str(raised.value)
    assert reason and "\n" not in reason
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(
    ("rules", "changes"),
    [
        (Rules(max_score=9), {"min_score": 10}),
        (Rules(min_score=100), {"max_score": 99}),
        (Rules(min_score=1, max_score=1), {"max_score": 0}),
    ],
)
def test_bounds_are_judged_together_with_the_rules_as_they_are(rules, changes):
    with pytest.raises(InvalidRules, match="greater than"):
        rules.changed_by(changes)


@pytest.mark.parametrize(
    "name",
    [
        "UTC",
        "Europe/Berlin",
        "America/Santiago",
        "America/Argentina/Buenos_Aires",
        "America/Port-au-Prince",
        "Etc/GMT+5",
        "Etc/GMT-14",
        "Pacific/Chatham",
        "Australia/Lord_Howe",
    ],
)
def test_zone_finds_iana_names(name):
    assert zone(name) == zoneinfo.ZoneInfo(name)
    assert Rules().changed_by({"timezone": name}).timezone == name


@pytest.mark.parametrize("name", BAD_ZONES, ids=_short)
def test_zone_refuses_paths_and_names_of_no_zone(name):
    with pytest.raises(InvalidRules, match="unknown time zone"):
        zone(name)


# Stored and shown scores


@pytest.mark.parametrize(
    ("order", "score", "stored"),
    [
        ("desc", 0, 0),
        ("desc", 1, 1),
        ("desc", 12345, 12345),
        ("desc", MAX_SCORE, MAX_SCORE),
        ("asc", 0, MAX_SCORE),
        ("asc", 1, MAX_SCORE - 1),
        ("asc", 12345, MAX_SCORE - 12345),
        ("asc", MAX_SCORE, 0),
    ],
)
def test_stored_and_shown_in_both_orders(order, score, stored):
    rules = Rules(order=order)
    assert rules.stored(score) == stored
    assert rules.shown(stored) == score


@given(
    order=st.sampled_from(["desc", "asc"]), a=st.integers(0, MAX_SCORE), b=st.integers(0, MAX_SCORE)
)
def test_a_better_score_is_stored_higher_in_either_order(order, a, b):
    rules = Rules(order=order)
    assert 0 <= rules.stored(a) <= MAX_SCORE
    assert rules.shown(rules.stored(a)) == a
    better = a > b if order == "desc" else a < b
    assert (rules.stored(a) > rules.stored(b)) == better


@pytest.mark.parametrize(
    ("bounds", "score", "accepted"),
    [
        ({}, 0, True),
        ({}, MAX_SCORE, True),
        ({"min_score": 10, "max_score": 20}, 9, False),
        ({"min_score": 10, "max_score": 20}, 10, True),
        ({"min_score": 10, "max_score": 20}, 20, True),
        ({"min_score": 10, "max_score": 20}, 21, False),
        ({"min_score": 7, "max_score": 7}, 7, True),
        ({"min_score": 7, "max_score": 7}, 6, False),
        ({"max_score": 0}, 0, True),
        ({"max_score": 0}, 1, False),
    ],
)
def test_bounds_are_inclusive(bounds, score, accepted):
    assert Rules(**bounds).accepts(score) is accepted
    assert Rules(order="asc", **bounds).accepts(score) is accepted


# Boards


@pytest.mark.parametrize(
    ("level", "season", "board"),
    [
        (0, 1, 0),
        (7, 1, 7),
        (MAX_SCORE, 1, MAX_SCORE),
        (0, 2, 2**31),
        (7, 2, 7 + 2**31),
        (7, 3, 7 + 2 * 2**31),
        (MAX_SCORE, 2, MAX_SCORE + 2**31),
        (MAX_SCORE, 1000, MAX_SCORE + 999 * 2**31),
    ],
)
def test_board_id(level, season, board):
    assert SEASON_STRIDE == 2**31
    assert board_id(level, season) == board


@given(
    st.tuples(st.integers(0, MAX_SCORE), st.integers(1, 10**6)),
    st.tuples(st.integers(0, MAX_SCORE), st.integers(1, 10**6)),
)
def test_every_level_and_season_has_a_board_of_its_own(one, other):
    assert (board_id(*one) == board_id(*other)) == (one == other)
    assert board_id(*one) < 2**63  # a bigint


# Seasons at fixed instants


def span(reset: str, timezone: str, counted_from: str, *, first: int = 1, started=None):
    counted_from_us = us(counted_from)
    started_us = counted_from_us if started is None else us(started)
    return SeasonSpan(first, started_us, counted_from_us, reset, timezone)


# (reset, zone, counted from, [the boundaries that follow it, in order, as UTC instants])
BOUNDARIES = [
    # UTC: days, weeks from Monday, months of every length, the year's end.
    (
        "daily",
        "UTC",
        "2026-03-10T15:00:00+00:00",
        ["2026-03-11T00:00:00+00:00", "2026-03-12T00:00:00+00:00", "2026-03-13T00:00:00+00:00"],
    ),
    (
        "daily",
        "UTC",
        "2026-12-30T23:59:59.999999+00:00",
        ["2026-12-31T00:00:00+00:00", "2027-01-01T00:00:00+00:00", "2027-01-02T00:00:00+00:00"],
    ),
    (
        "daily",
        "UTC",
        "2028-02-28T12:00:00+00:00",  # a leap year
        ["2028-02-29T00:00:00+00:00", "2028-03-01T00:00:00+00:00"],
    ),
    (  # counted from a boundary itself: the next one is a whole period later
        "daily",
        "UTC",
        "2026-03-11T00:00:00+00:00",
        ["2026-03-12T00:00:00+00:00"],
    ),
    (  # a Wednesday: the next Monday, then every Monday
        "weekly",
        "UTC",
        "2026-03-11T08:00:00+00:00",
        ["2026-03-16T00:00:00+00:00", "2026-03-23T00:00:00+00:00", "2026-03-30T00:00:00+00:00"],
    ),
    (  # a Monday at 00:00: the Monday after
        "weekly",
        "UTC",
        "2026-03-16T00:00:00+00:00",
        ["2026-03-23T00:00:00+00:00"],
    ),
    (  # a Sunday's last µs: the Monday that follows
        "weekly",
        "UTC",
        "2026-03-15T23:59:59.999999+00:00",
        ["2026-03-16T00:00:00+00:00", "2026-03-23T00:00:00+00:00"],
    ),
    (  # across the year's end: Monday 2026-12-28, then Monday 2027-01-04
        "weekly",
        "UTC",
        "2026-12-24T00:00:00+00:00",
        ["2026-12-28T00:00:00+00:00", "2027-01-04T00:00:00+00:00"],
    ),
    (  # January 31st: February, March (28 days later), April
        "monthly",
        "UTC",
        "2026-01-31T12:00:00+00:00",
        ["2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00", "2026-04-01T00:00:00+00:00"],
    ),
    (  # the year's end, and on through a whole year
        "monthly",
        "UTC",
        "2026-11-15T00:00:00+00:00",
        [
            "2026-12-01T00:00:00+00:00",
            "2027-01-01T00:00:00+00:00",
            "2027-02-01T00:00:00+00:00",
            "2027-03-01T00:00:00+00:00",
            "2027-04-01T00:00:00+00:00",
            "2027-05-01T00:00:00+00:00",
            "2027-06-01T00:00:00+00:00",
            "2027-07-01T00:00:00+00:00",
            "2027-08-01T00:00:00+00:00",
            "2027-09-01T00:00:00+00:00",
            "2027-10-01T00:00:00+00:00",
            "2027-11-01T00:00:00+00:00",
            "2027-12-01T00:00:00+00:00",
            "2028-01-01T00:00:00+00:00",
        ],
    ),
    (  # December 31st: the next day is the next month, and the next year
        "monthly",
        "UTC",
        "2026-12-31T23:00:00+00:00",
        ["2027-01-01T00:00:00+00:00", "2027-02-01T00:00:00+00:00"],
    ),
    (  # the first of a month at 00:00: the next month
        "monthly",
        "UTC",
        "2026-02-01T00:00:00+00:00",
        ["2026-03-01T00:00:00+00:00"],
    ),
    # Europe/Berlin: summer time from Sunday 2026-03-29 02:00 (a 23-hour day) to Sunday
    # 2026-10-25 03:00 (a 25-hour day); midnight at +01:00 in winter, +02:00 in summer.
    (
        "daily",
        "Europe/Berlin",
        "2026-03-28T12:00:00+01:00",
        [
            "2026-03-29T00:00:00+01:00",
            "2026-03-30T00:00:00+02:00",  # 23 hours later
            "2026-03-31T00:00:00+02:00",
        ],
    ),
    (
        "daily",
        "Europe/Berlin",
        "2026-10-24T12:00:00+02:00",
        [
            "2026-10-25T00:00:00+02:00",
            "2026-10-26T00:00:00+01:00",  # 25 hours later
            "2026-10-27T00:00:00+01:00",
        ],
    ),
    (  # counted from inside the hour that 2026-10-25 has twice (the first time, +02:00)
        "daily",
        "Europe/Berlin",
        "2026-10-25T02:30:00+02:00",
        ["2026-10-26T00:00:00+01:00"],
    ),
    (  # ... and the second time (+01:00)
        "daily",
        "Europe/Berlin",
        "2026-10-25T02:30:00+01:00",
        ["2026-10-26T00:00:00+01:00"],
    ),
    (
        "weekly",
        "Europe/Berlin",
        "2026-03-25T12:00:00+01:00",  # a Wednesday
        [
            "2026-03-30T00:00:00+02:00",  # Monday after the change
            "2026-04-06T00:00:00+02:00",
        ],
    ),
    (
        "weekly",
        "Europe/Berlin",
        "2026-03-16T00:00:00+01:00",  # a Monday at 00:00
        ["2026-03-23T00:00:00+01:00", "2026-03-30T00:00:00+02:00"],
    ),
    (
        "weekly",
        "Europe/Berlin",
        "2026-10-21T00:00:00+02:00",
        ["2026-10-26T00:00:00+01:00", "2026-11-02T00:00:00+01:00"],
    ),
    (  # Sunday 23:30 local is already Monday in UTC: the week still ends at local 00:00
        "weekly",
        "Europe/Berlin",
        "2026-03-15T23:30:00+01:00",
        ["2026-03-16T00:00:00+01:00"],
    ),
    (
        "monthly",
        "Europe/Berlin",
        "2026-02-15T00:00:00+01:00",
        [
            "2026-03-01T00:00:00+01:00",
            "2026-04-01T00:00:00+02:00",
            "2026-05-01T00:00:00+02:00",
        ],
    ),
    (
        "monthly",
        "Europe/Berlin",
        "2026-09-15T00:00:00+02:00",
        [
            "2026-10-01T00:00:00+02:00",
            "2026-11-01T00:00:00+01:00",
            "2026-12-01T00:00:00+01:00",
            "2027-01-01T00:00:00+01:00",
        ],
    ),
    (  # local 2026-12-31 23:30 is still 2026 in Berlin, but 22:30 in UTC
        "monthly",
        "Europe/Berlin",
        "2026-12-31T23:30:00+01:00",
        ["2027-01-01T00:00:00+01:00"],
    ),
    (  # west of UTC: the local month ends after UTC's
        "monthly",
        "America/New_York",
        "2026-01-31T22:00:00-05:00",  # 2026-02-01 in UTC already
        ["2026-02-01T00:00:00-05:00", "2026-03-01T00:00:00-05:00", "2026-04-01T00:00:00-04:00"],
    ),
    # America/Santiago: clocks go back at 24:00 on Saturday 2026-04-04 (to 23:00, -04:00) and
    # forward at 24:00 on Saturday 2026-09-05 (to 01:00, -03:00): that night has no 00:00, and
    # Sunday 2026-09-06 begins at 01:00 local, 04:00 UTC.
    (
        "daily",
        "America/Santiago",
        "2026-09-04T12:00:00-04:00",
        [
            "2026-09-05T00:00:00-04:00",
            "2026-09-06T01:00:00-03:00",  # the first instant of the day
            "2026-09-07T00:00:00-03:00",
        ],
    ),
    (  # counted from inside the day that begins at 01:00
        "daily",
        "America/Santiago",
        "2026-09-06T01:00:00-03:00",
        ["2026-09-07T00:00:00-03:00"],
    ),
    (
        "daily",
        "America/Santiago",
        "2026-04-03T12:00:00-03:00",
        [
            "2026-04-04T00:00:00-03:00",
            "2026-04-05T00:00:00-04:00",  # 25 hours later: 23:00 came twice
            "2026-04-06T00:00:00-04:00",
        ],
    ),
    (  # counted from the second 23:30 of 2026-04-04
        "daily",
        "America/Santiago",
        "2026-04-04T23:30:00-04:00",
        ["2026-04-05T00:00:00-04:00"],
    ),
    (
        "weekly",
        "America/Santiago",
        "2026-09-02T12:00:00-04:00",
        ["2026-09-07T00:00:00-03:00", "2026-09-14T00:00:00-03:00"],
    ),
    (
        "monthly",
        "America/Santiago",
        "2026-08-20T12:00:00-04:00",
        ["2026-09-01T00:00:00-04:00", "2026-10-01T00:00:00-03:00"],
    ),
    # Zones whose clocks skipped the midnight a weekly or monthly season begins at.
    (  # Monday 2002-04-01 began at 01:00 in Damascus: the week's and the month's first instant
        "weekly",
        "Asia/Damascus",
        "2002-03-27T12:00:00+02:00",
        ["2002-04-01T01:00:00+03:00", "2002-04-08T00:00:00+03:00"],
    ),
    (
        "monthly",
        "Asia/Damascus",
        "2002-03-15T12:00:00+02:00",
        ["2002-04-01T01:00:00+03:00", "2002-05-01T00:00:00+03:00"],
    ),
    (  # Monday 2010-03-22 began at 01:00 in Tehran
        "weekly",
        "Asia/Tehran",
        "2010-03-18T12:00:00+03:30",
        ["2010-03-22T01:00:00+04:30", "2010-03-29T00:00:00+04:30"],
    ),
    (  # 2023-10-01 began at 01:00 in Asuncion
        "monthly",
        "America/Asuncion",
        "2023-09-10T12:00:00-04:00",
        ["2023-10-01T01:00:00-03:00", "2023-11-01T00:00:00-03:00"],
    ),
    # Zones a whole number of hours from nothing.
    (
        "daily",
        "Asia/Kathmandu",
        "2026-06-01T12:00:00+05:45",
        ["2026-06-02T00:00:00+05:45", "2026-06-03T00:00:00+05:45"],
    ),
    (  # 30-minute summer time, at 02:00
        "daily",
        "Australia/Lord_Howe",
        "2026-10-03T12:00:00+10:30",
        ["2026-10-04T00:00:00+10:30", "2026-10-05T00:00:00+11:00"],
    ),
    (  # the far east: its day begins while UTC's is the day before
        "daily",
        "Pacific/Kiritimati",
        "2026-06-01T12:00:00+14:00",
        ["2026-06-02T00:00:00+14:00"],
    ),
]


def _ids(case):
    reset, name, counted_from, _ = case
    return f"{reset}-{name}-{counted_from}"


@pytest.mark.parametrize(("reset", "name", "counted_from", "boundaries"), BOUNDARIES, ids=[
    _ids(case) for case in BOUNDARIES
])  # fmt: skip
def test_seasons_end_at_each_boundary_of_the_schedule(reset, name, counted_from, boundaries):
    for first in (1, 5):
        run = span(reset, name, counted_from, first=first, started="2000-01-01T00:00:00+00:00")
        ends = [us(boundary) for boundary in boundaries]
        assert run.started(first) == us("2000-01-01T00:00:00+00:00")
        for n, end in enumerate(ends):
            season = first + n
            assert run.ends(season) == end, (season, local(run.ends(season), name))
            assert run.started(season + 1) == end
            # The boundary is the first instant of a new local day (at 00:00 when there is one).
            assert local(end, name).date() > local(end - 1, name).date()
            assert local(end, name).time() <= datetime.time(1)
            # The season holds every instant up to the boundary, the next one from it on.
            assert run.season_at(end - 1) == season
            assert run.season_at(end) == season + 1
            assert run.season_at(end + 1) == season + 1
        assert run.season_at(us(counted_from)) == first
        assert run.season_at(us(counted_from) - 1) == first  # before the run: its first season


@pytest.mark.parametrize("reset", ["never", "manual"])
def test_unscheduled_seasons_never_end_by_the_clock(reset):
    run = span(reset, "Europe/Berlin", "2026-03-28T12:00:00+01:00", first=3)
    assert run.started(3) == us("2026-03-28T12:00:00+01:00")
    assert run.ends(3) is None
    for later in ("2026-03-29T00:00:00+01:00", "2027-01-01T00:00:00+01:00", "2100-01-01T00:00Z"):
        assert run.season_at(us(later)) == 3


def test_a_run_counts_its_first_season_from_when_it_started():
    # Season 4 started by hand on a Wednesday afternoon; then the reset became weekly.
    run = SeasonSpan(
        4,
        us("2026-03-11T15:00:00+00:00"),
        us("2026-03-12T09:00:00+00:00"),
        "weekly",
        "UTC",
    )
    assert run.started(4) == us("2026-03-11T15:00:00+00:00")
    assert run.ends(4) == us("2026-03-16T00:00:00+00:00")
    assert run.started(5) == us("2026-03-16T00:00:00+00:00")
    assert run.season_at(us("2026-03-12T09:00:00+00:00")) == 4
    assert run.season_at(us("2026-03-15T23:59:59.999999+00:00")) == 4
    assert run.season_at(us("2026-03-16T00:00:00+00:00")) == 5
    assert run.season_at(us("2026-03-29T23:59:59+00:00")) == 6
    assert run.season_at(us("2026-03-30T12:00:00+00:00")) == 7


@pytest.mark.parametrize(
    ("reset", "later", "seasons"),
    [
        ("daily", "2026-03-10T23:59:59+00:00", 0),
        ("daily", "2027-03-10T15:00:00+00:00", 365),
        ("daily", "2028-03-10T15:00:00+00:00", 365 + 366),
        ("weekly", "2027-03-10T15:00:00+00:00", 52),  # Tuesday 2026-03-10 to Wednesday 2027
        ("monthly", "2027-03-10T15:00:00+00:00", 12),
        ("monthly", "2036-03-01T00:00:00+00:00", 120),
    ],
)
def test_many_seasons_later(reset, later, seasons):
    run = span(reset, "UTC", "2026-03-10T15:00:00+00:00")
    assert run.season_at(us(later)) == 1 + seasons
    n = 1 + seasons
    assert run.started(n) <= us(later) and (n == 1 or run.started(n) > run.started(n - 1))


# Seasons against a model that walks local dates


ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/Santiago",
    "America/New_York",
    "Asia/Damascus",
    "Asia/Tehran",
    "America/Asuncion",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "Pacific/Kiritimati",
]
# 2000-01-01 to 2036-12-31 in µs: every zone's rules in this range are known to zoneinfo.
instants = st.integers(us("2000-01-01T00:00:00+00:00"), us("2036-12-01T00:00:00+00:00"))


def starts_a_period(reset: str, day: datetime.date) -> bool:
    if reset == "daily":
        return True
    if reset == "weekly":
        return day.isoweekday() == 1
    return day.day == 1


def local_date(at_us: int, name: str) -> datetime.date:
    return local(at_us, name).date()


def first_instant_of(day: datetime.date, name: str) -> int:
    """The earliest instant whose local date is day (or later), found by bisection."""
    noon = datetime.datetime.combine(day, datetime.time(12), tzinfo=zoneinfo.ZoneInfo(name))
    low, high = us(noon.isoformat()) - 2 * 86_400_000_000, us(noon.isoformat())
    while high - low > 1:
        middle = (low + high) // 2
        if local_date(middle, name) >= day:
            high = middle
        else:
            low = middle
    return high


@settings(max_examples=300, deadline=None)
@given(
    reset=st.sampled_from(["daily", "weekly", "monthly"]),
    name=st.sampled_from(ZONES),
    counted_from=instants,
    later=st.integers(0, 100 * 86_400_000_000),
    first=st.integers(1, 1000),
)
def test_season_at_counts_the_local_period_starts_since_the_run_was_counted_from(
    reset, name, counted_from, later, first
):
    now = counted_from + later
    since = local_date(counted_from, name)
    until = local_date(now, name)
    day, starts = since, []
    while day < until:
        day += datetime.timedelta(days=1)
        if starts_a_period(reset, day):
            starts.append(day)
    run = SeasonSpan(first, counted_from, counted_from, reset, name)
    season = run.season_at(now)
    assert season == first + len(starts)
    if starts:  # the season began at its period's first local instant
        assert run.started(season) == first_instant_of(starts[-1], name)
        assert local(run.started(season), name).time() <= datetime.time(1)
    else:
        assert run.started(season) == counted_from
    assert run.started(season) <= now < run.ends(season)
    # The season's end is the first instant of the next period.
    end = run.ends(season)
    assert starts_a_period(reset, local_date(end, name))
    assert local_date(end - 1, name) < local_date(end, name)
    assert run.season_at(end) == season + 1


# iso_utc


@pytest.mark.parametrize(
    ("at_us", "text"),
    [
        (None, None),
        (0, "1970-01-01T00:00:00Z"),
        (1, "1970-01-01T00:00:00.000001Z"),
        (999_999, "1970-01-01T00:00:00.999999Z"),
        (1_000_000, "1970-01-01T00:00:01Z"),
        (us("2026-12-04T00:00:00+00:00"), "2026-12-04T00:00:00Z"),
        (us("2026-03-29T00:00:00+01:00"), "2026-03-28T23:00:00Z"),
        (us("2026-09-06T01:00:00-03:00"), "2026-09-06T04:00:00Z"),
        (us("2026-12-04T00:00:00.5+00:00"), "2026-12-04T00:00:00.500000Z"),
        (us("2038-01-19T03:14:08+00:00"), "2038-01-19T03:14:08Z"),  # past 32-bit seconds
        (us("2099-12-31T23:59:59.999999+00:00"), "2099-12-31T23:59:59.999999Z"),
    ],
)
def test_iso_utc(at_us, text):
    assert iso_utc(at_us) == text


@given(st.integers(0, us("2200-01-01T00:00:00+00:00")))
def test_iso_utc_is_exact_to_the_microsecond(at_us):
    seconds, micro = divmod(at_us, 1_000_000)
    whole = datetime.datetime(1970, 1, 1, tzinfo=UTC) + datetime.timedelta(seconds=seconds)
    expected = whole.strftime("%Y-%m-%dT%H:%M:%S") + (f".{micro:06d}" if micro else "") + "Z"
    assert iso_utc(at_us) == expected
