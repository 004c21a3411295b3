"""A plain model of levels with rules and seasons, and a clock a test sets to the microsecond.

The model is the contract's (SPEC, "Leaderboards"), written without scoresvc.leaderboards:
each level has rules and numbered seasons; a season holds {user: (score, reached)} where
reached is a counter that grows with every write, so equal scores rank by who reached them
first; a season's order is the level's order while it was current. Scheduled seasons begin at
the first instant of a local day (00:00, or later where the clocks skip midnight), found here
by walking local dates and bisecting instants rather than by date arithmetic.
"""

import dataclasses
import datetime
import math
import zoneinfo
from dataclasses import dataclass, field

MAX_SCORE = 2**31 - 1
PAGE = 15
ABOVE = 7


class MicroClock:
    """Callable like time.time, set to the microsecond: int(clock() * 1e6) is exactly now_us."""

    def __init__(self, now_us: int) -> None:
        self.set(now_us)

    def set(self, now_us: int) -> None:
        seconds = now_us / 1_000_000
        while int(seconds * 1_000_000) < now_us:
            seconds = math.nextafter(seconds, math.inf)
        while int(seconds * 1_000_000) > now_us:
            seconds = math.nextafter(seconds, -math.inf)
        assert int(seconds * 1_000_000) == now_us
        self.now_us = now_us
        self._seconds = seconds

    def __call__(self) -> float:
        return self._seconds


def utc_us(text: str) -> int:
    """An ISO 8601 instant with its offset in µs since the epoch, exactly."""
    moment = datetime.datetime.fromisoformat(text)
    assert moment.tzinfo is not None, text
    return int(moment.replace(microsecond=0).timestamp()) * 1_000_000 + moment.microsecond


def local_date(at_us: int, zone: str) -> datetime.date:
    return datetime.datetime.fromtimestamp(at_us // 1_000_000, tz=zoneinfo.ZoneInfo(zone)).date()


def starts_a_period(reset: str, day: datetime.date) -> bool:
    """Whether a scheduled season begins on the local day `day`."""
    if reset == "daily":
        return True
    if reset == "weekly":
        return day.isoweekday() == 1  # Monday
    if reset == "monthly":
        return day.day == 1
    return False


def first_instant_of(day: datetime.date, zone: str) -> int:
    """The earliest instant (µs) whose local date is `day` or later, by bisection."""
    noon = datetime.datetime.combine(day, datetime.time(12), tzinfo=zoneinfo.ZoneInfo(zone))
    high = int(noon.timestamp()) * 1_000_000
    low = high - 2 * 86_400_000_000
    assert local_date(low, zone) < day <= local_date(high, zone)
    while high - low > 1:
        middle = (low + high) // 2
        if local_date(middle, zone) >= day:
            high = middle
        else:
            low = middle
    return high


def period_starts(reset: str, zone: str, after_us: int, until_us: int) -> list[int]:
    """The instants in (after_us, until_us] at which a scheduled season begins."""
    if reset not in ("daily", "weekly", "monthly"):
        return []
    day, last = local_date(after_us, zone), local_date(until_us, zone)
    starts = []
    while day < last:
        day += datetime.timedelta(days=1)
        if starts_a_period(reset, day):
            at = first_instant_of(day, zone)
            assert after_us < at <= until_us
            starts.append(at)
    return starts


def next_period_start(reset: str, zone: str, now_us: int) -> int | None:
    """The first instant after now_us at which a scheduled season begins; None unscheduled."""
    if reset not in ("daily", "weekly", "monthly"):
        return None
    day = local_date(now_us, zone)
    while True:
        day += datetime.timedelta(days=1)
        if starts_a_period(reset, day):
            return first_instant_of(day, zone)


@dataclass
class ModelRules:
    order: str = "desc"
    keep: str = "best"
    reset: str = "never"
    timezone: str = "UTC"
    min_score: int = 0
    max_score: int = MAX_SCORE
    writes: str = "players"


@dataclass
class ModelSeason:
    started_us: int
    order: str
    ended_us: int | None = None  # set when the next season begins
    entries: dict[int, tuple[int, int]] = field(default_factory=dict)  # user: (score, reached)
    hidden: dict[int, tuple[int, int]] = field(default_factory=dict)  # banned users' entries

    def ordering(self) -> list[tuple[int, int, int]]:
        """(rank, user, score), rank 1 first: best score, then who reached it first, then id."""
        sign = -1 if self.order == "desc" else 1
        ordered = sorted(
            self.entries,
            key=lambda user: (sign * self.entries[user][0], self.entries[user][1], user),
        )
        return [(rank, user, self.entries[user][0]) for rank, user in enumerate(ordered, 1)]

    def players(self) -> int:
        return len(self.entries)

    def rank(self, user: int) -> tuple[int, int, int] | None:
        for rank, other, score in self.ordering():
            if other == user:
                return (rank, score, self.players())
        return None

    def window_from(self, first: int):
        return (tuple(self.ordering()[first - 1 : first - 1 + PAGE]), self.players())

    def window_around(self, user: int):
        found = self.rank(user)
        if found is None:
            return None
        first = max(min(found[0] - ABOVE, self.players() - PAGE + 1), 1)
        return self.window_from(first)

    def top(self) -> list[tuple[int, int]]:
        return [(user, score) for _, user, score in self.ordering()[:PAGE]]

    def entries_of(self, users) -> tuple:
        wanted = set(users)
        entries = tuple(entry for entry in self.ordering() if entry[1] in wanted)
        return (entries, self.players())


class Rejected(Exception):
    """What the model expects a call to raise: kind names the error."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass
class LevelModel:
    """One level's rules and its seasons, oldest first (season n is seasons[n - 1])."""

    rules: ModelRules
    seasons: list[ModelSeason]

    @classmethod
    def new(cls, since_us: int) -> "LevelModel":
        return cls(ModelRules(), [ModelSeason(since_us, "desc")])

    @property
    def current(self) -> int:
        return len(self.seasons)

    def season(self, number: int) -> ModelSeason:
        return self.seasons[number - 1]

    def next_season(self, at_us: int) -> None:
        self.seasons[-1].ended_us = at_us
        self.seasons.append(ModelSeason(at_us, self.rules.order))

    def time_passes(self, before_us: int, now_us: int) -> None:
        """The scheduled seasons that begin after before_us, up to now_us."""
        for at in period_starts(self.rules.reset, self.rules.timezone, before_us, now_us):
            self.next_season(at)

    def ends_us(self, now_us: int) -> int | None:
        """When the current season ends by the schedule."""
        return next_period_start(self.rules.reset, self.rules.timezone, now_us)

    def post(self, user: int, score: int, reached: int, *, by_server: bool, banned: bool) -> bool:
        """Record a post as the rules keep it: whether the entry changed; Rejected."""
        rules = self.rules
        if rules.writes == "server" and not by_server:
            raise Rejected("server_only")
        if not rules.min_score <= score <= rules.max_score:
            raise Rejected("out_of_bounds")
        if banned:
            raise Rejected("banned")
        entries = self.seasons[-1].entries
        previous = entries.get(user)
        if previous is None:
            entries[user] = (score, reached)
            return True
        old = previous[0]
        if rules.keep == "best":
            better = score > old if rules.order == "desc" else score < old
            if better:
                entries[user] = (score, reached)
            return better
        if rules.keep == "latest":
            entries[user] = (score, reached)
            return True
        total = min(old + score, MAX_SCORE)
        if total == old:
            return False
        entries[user] = (total, reached)
        return True

    def change_rules(self, changes: dict) -> bool:
        """Make the changes (valid fields only): whether anything changed; Rejected."""
        new = dataclasses.replace(self.rules, **changes)
        if new.min_score > new.max_score:
            raise Rejected("invalid")
        if new == self.rules:
            return False
        current = self.seasons[-1]
        # A banned user's hidden score counts: it comes back, as stored, on unban.
        if (new.order, new.keep) != (self.rules.order, self.rules.keep) and (
            current.entries or current.hidden
        ):
            raise Rejected("conflict")
        self.rules = new
        self.seasons[-1].order = new.order  # an empty season: stored in the new order from now
        return True

    def ban(self, user: int) -> None:
        """Hide the user's entries in every season."""
        for season in self.seasons:
            if user in season.entries:
                season.hidden[user] = season.entries.pop(user)

    def unban(self, user: int) -> None:
        """Bring the user's hidden entries back where they rank."""
        for season in self.seasons:
            if user in season.hidden:
                season.entries[user] = season.hidden.pop(user)

    def delete(self, user: int) -> tuple[int, bool] | None:
        """Remove the user's entry in the current season: (score, hidden), or None."""
        current = self.seasons[-1]
        for entries, hidden in ((current.entries, False), (current.hidden, True)):
            if user in entries:
                return (entries.pop(user)[0], hidden)
        return None
