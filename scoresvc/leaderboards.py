"""A level's rules and seasons: what a post changes, how the level orders, when a season ends.

Plain values and arithmetic, no database: the storage keeps rules and season starts, and asks
here what they mean.

Boards. Each season of a level is a board of its own, with its own ordering and counts. A
board's id is the level's id for season 1 and grows by 2**31 per season after it, so a level
with default rules keeps its rows exactly where they always were, and a new season starts
with no row copied or deleted: its board is simply empty.

Stored scores. Every board ranks its highest stored score first. A level ordered `asc` (race
times) stores MAX_SCORE - score, so that the lowest score ranks first with the same index, the
same rank counts and the same statements as every other level.
"""

import dataclasses
import datetime
import functools
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

MAX_SCORE = 2**31 - 1
# Boards of one level are this far apart: past every level id.
SEASON_STRIDE = 2**31
ORDERS = ("desc", "asc")
KEEPS = ("best", "latest", "sum")
RESETS = ("never", "manual", "daily", "weekly", "monthly")
SCHEDULED = ("daily", "weekly", "monthly")
WRITERS = ("players", "server")
RULE_FIELDS = ("order", "keep", "reset", "timezone", "min_score", "max_score", "writes")
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*\Z")


class InvalidRules(ValueError):
    """A change of rules that cannot be made: an unknown field, a wrong type or value."""


@dataclass(frozen=True)
class Rules:
    """How a level orders and keeps its scores, which it accepts, and when its seasons end."""

    order: str = "desc"
    keep: str = "best"
    reset: str = "never"
    timezone: str = "UTC"
    min_score: int = 0
    max_score: int = MAX_SCORE
    writes: str = "players"

    def accepts(self, score: int) -> bool:
        """Whether a posted score is within the level's bounds."""
        return self.min_score <= score <= self.max_score

    def stored(self, score: int) -> int:
        """score as the level's board stores it (highest stored first)."""
        return MAX_SCORE - score if self.order == "asc" else score

    def shown(self, stored: int) -> int:
        """The score a board's stored value stands for."""
        return MAX_SCORE - stored if self.order == "asc" else stored

    def changed_by(self, changes: Any) -> "Rules":
        """These rules with changes (a JSON object's fields) made; InvalidRules if any is bad."""
        if not isinstance(changes, dict):
            raise InvalidRules("the rules must be a JSON object")
        unknown = sorted(set(changes) - set(RULE_FIELDS))
        if unknown:
            raise InvalidRules(
                f"unknown field {unknown[0]!r}: the rules are {', '.join(RULE_FIELDS)}"
            )
        for name, value in changes.items():
            _check_field(name, value)
        rules = dataclasses.replace(self, **changes)
        if rules.min_score > rules.max_score:
            raise InvalidRules(
                f"min_score ({rules.min_score}) is greater than max_score ({rules.max_score})"
            )
        return rules


DEFAULT_RULES = Rules()


def _check_field(name: str, value: Any) -> None:
    if name in ("min_score", "max_score"):
        # bool is an int to Python, never to a client writing JSON.
        if type(value) is not int or not 0 <= value <= MAX_SCORE:
            raise InvalidRules(f"{name} must be a whole number from 0 to {MAX_SCORE}")
        return
    if not isinstance(value, str):
        raise InvalidRules(f"{name} must be a string")
    choices = {"order": ORDERS, "keep": KEEPS, "reset": RESETS, "writes": WRITERS}.get(name)
    if choices is not None and value not in choices:
        raise InvalidRules(f"{name} must be one of {', '.join(choices)}")
    if name == "timezone":
        zone(value)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone called name; InvalidRules if there is none."""
    # zoneinfo would also read a path, or a file of the system's such as localtime: only the
    # names of the zone database are taken.
    if not _ZONE_NAME.match(name) or name not in _zone_names():
        raise InvalidRules(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, a name too long
        raise InvalidRules(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin"
        ) from None


@functools.cache
def _zone_names() -> frozenset[str]:
    # localtime is the system's own zone under another name: what it means differs by machine.
    return frozenset(available_timezones()) - {"localtime"}


def board_id(level_id: int, season: int) -> int:
    """The board that holds the level's season (1-based)."""
    return level_id + (season - 1) * SEASON_STRIDE


@dataclass(frozen=True)
class SeasonSpan:
    """Since when a run of a level's seasons counts, and by which schedule.

    The run begins with season `first`, which started at `started_us`; under a scheduled
    reset, each boundary of the schedule after `counted_from_us` starts the next season. Its
    seasons' boards are stored in `order`. A manual season start, or a change of reset, time
    zone or order, begins a new run.
    """

    first: int
    started_us: int
    counted_from_us: int
    reset: str
    timezone: str
    order: str = "desc"

    def season_at(self, now_us: int) -> int:
        """The season that holds the instant now_us (at or after counted_from_us)."""
        if self.reset not in SCHEDULED:
            return self.first
        return self.first + _boundaries_between(self, self.counted_from_us, now_us)

    def started(self, season: int) -> int:
        """When a season of this run started, in µs since the epoch."""
        if season == self.first:
            return self.started_us
        return _boundary(self, season - self.first)

    def ends(self, season: int) -> int | None:
        """When a season of this run ends by the schedule (None: not by the schedule)."""
        if self.reset not in SCHEDULED:
            return None
        return _boundary(self, season - self.first + 1)


def _local_date(span: SeasonSpan, at_us: int) -> datetime.date:
    moment = datetime.datetime.fromtimestamp(at_us / 1_000_000, tz=zone(span.timezone))
    return moment.date()


def _period_index(reset: str, day: datetime.date) -> int:
    """A number that grows by one at each boundary of the schedule (and only there)."""
    if reset == "daily":
        return day.toordinal()
    if reset == "weekly":
        return (day.toordinal() - day.weekday()) // 7  # weeks start on Monday
    return day.year * 12 + day.month - 1


def _boundaries_between(span: SeasonSpan, since_us: int, now_us: int) -> int:
    if now_us <= since_us:
        return 0
    since = _period_index(span.reset, _local_date(span, since_us))
    return _period_index(span.reset, _local_date(span, now_us)) - since


def _boundary(span: SeasonSpan, k: int) -> int:
    """The k-th boundary (1-based) of the schedule after counted_from_us, in µs."""
    start = _local_date(span, span.counted_from_us)
    if span.reset == "daily":
        day = start + datetime.timedelta(days=k)
    elif span.reset == "weekly":
        day = start - datetime.timedelta(days=start.weekday()) + datetime.timedelta(weeks=k)
    else:
        months = start.year * 12 + start.month - 1 + k
        day = datetime.date(months // 12, months % 12 + 1, 1)
    midnight = datetime.datetime.combine(day, datetime.time(0), tzinfo=zone(span.timezone))
    # A midnight that a change of clocks skips does not exist; read with fold=0 (the offset
    # before the change) it is the instant of the change itself: the first of the new day.
    return _us(midnight.astimezone(datetime.UTC))


def _us(moment: datetime.datetime) -> int:
    return round(moment.timestamp() * 1_000_000)


def iso_utc(at_us: int | None) -> str | None:
    """µs since the epoch as ISO 8601 in UTC (2026-12-04T00:00:00Z); None stays None."""
    if at_us is None:
        return None
    moment = datetime.datetime.fromtimestamp(at_us / 1_000_000, tz=datetime.UTC)
    text = moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")
