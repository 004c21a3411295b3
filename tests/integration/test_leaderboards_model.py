"""Levels with rules and seasons on real databases, driven by random operations, against a model.

The repository and moderation (Repository(database), Moderation(database, repository.levels))
and tests.leaderboardmodel are given the same posts (both orders, the three keeps, bounds,
server-only writes), rules changes (a 409 predicted where order or keep change while the
current season has scores, a banned player's hidden one included), manual season starts, bans,
unbans and deleted scores, and a clock that jumps to, just before and
just after the boundaries of daily, weekly and monthly schedules in a zone whose clocks change
in the days that follow (Europe/Berlin in March and October 2026, America/Santiago in
September 2026, where one night has no 00:00). After each step the current seasons' top lists,
rules and seasons listings are compared; rules compare ranks, pages, windows, friends and admin
pages of any season, past ones included.
"""

import tempfile

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from scoresvc.errors import (
    NoSuchSeason,
    RulesConflict,
    ScoreOutOfBounds,
    ServerWritesOnly,
    UserBanned,
)
from scoresvc.leaderboards import InvalidRules
from scoresvc.storage.database import open_database
from scoresvc.storage.migrate import upgrade_to_head
from scoresvc.storage.moderation import Moderation
from scoresvc.storage.repository import Repository
from tests.databases import empty_tables
from tests.leaderboardmodel import (
    MAX_SCORE,
    PAGE,
    LevelModel,
    MicroClock,
    Rejected,
    next_period_start,
    utc_us,
)

LEVELS = (3, MAX_SCORE)
# More users than a list shows, so that the 15-entry cut and the windows' shifts are exercised.
USERS = (*range(18), MAX_SCORE)
levels = st.sampled_from(LEVELS)
users = st.sampled_from(USERS)
# Small scores tie often; the extremes test the cap of a sum and the stored values of `asc`.
scores = st.integers(0, 12) | st.sampled_from([0, 1, 2**30, MAX_SCORE - 1, MAX_SCORE])
bounds = st.sampled_from([0, 3, 8, 12, MAX_SCORE])

# (zone, a start a few days before its clocks change, a month's end and a Monday)
STARTS = [
    ("Europe/Berlin", "2026-03-26T12:00:00+01:00"),  # summer time Sunday 03-29, Monday 03-30
    ("Europe/Berlin", "2026-10-22T18:00:00+02:00"),  # winter time Sunday 10-25, November
    ("America/Santiago", "2026-08-28T12:00:00-04:00"),  # September; Sunday 09-06 has no 00:00
    ("America/Santiago", "2026-04-01T12:00:00-03:00"),  # 23:00 twice on Saturday 04-04
]
OTHER_ZONES = ("UTC", "Europe/Berlin", "America/Santiago")
RESETS = ("never", "manual", "daily", "weekly", "monthly")

HOUR_US = 3600 * 1_000_000
DAY_US = 24 * HOUR_US


def rule_changes(zone: str):
    """A JSON object of rules to set: any of the fields, with the example's zone most often."""
    return st.fixed_dictionaries(
        {},
        optional={
            "order": st.sampled_from(["desc", "asc"]),
            "keep": st.sampled_from(["best", "latest", "sum"]),
            "reset": st.sampled_from(RESETS),
            "timezone": st.sampled_from([zone, zone, *OTHER_ZONES]),
            "min_score": bounds,
            "max_score": bounds,
            "writes": st.sampled_from(["players", "server"]),
        },
    )


def starting_rules(zone: str):
    """Valid rules for a level with no score yet: any order and keep, a schedule most often."""
    return st.fixed_dictionaries(
        {
            "order": st.sampled_from(["desc", "asc"]),
            "keep": st.sampled_from(["best", "latest", "sum"]),
            "reset": st.sampled_from(["daily", "weekly", "monthly", "manual"]),
            "timezone": st.just(zone),
        },
        optional={"min_score": st.sampled_from([0, 1]), "writes": st.just("server")},
    )


class LeaderboardMachine(RuleBasedStateMachine):
    """The repository and moderation against LevelModel, on one database per example."""

    _directory: tempfile.TemporaryDirectory | None = None

    def database_url(self) -> str:
        return "sqlite://"

    def __init__(self) -> None:
        super().__init__()
        self.clock = MicroClock(utc_us("2026-01-01T00:00:00+00:00"))
        self.database = open_database(self.database_url(), clock=self.clock)
        upgrade_to_head(self.database)
        # The database's clock is this clock plus a fixed offset (PostgreSQL: its server's).
        self.offset_us = self.database.now_us() - self.clock.now_us
        self.repository = Repository(self.database)
        self.moderation = Moderation(self.database, self.repository.levels, clock=self.clock)
        self.models: dict[int, LevelModel] = {}
        self.zone = "UTC"
        self.now: int | None = None  # until seasons begin: the clock may be set anywhere
        self.writes = 0  # the model's `reached`: one more with every write
        self.banned: set[int] = set()

    def teardown(self) -> None:
        self.database.close()
        if self._directory is not None:
            self._directory.cleanup()

    def set_now(self, now_us: int) -> None:
        """Move the database's clock to now_us, and the model's seasons with it."""
        assert self.now is None or now_us >= self.now
        self.clock.set(now_us - self.offset_us)
        assert self.database.now_us() == now_us
        if self.now is not None:
            for model in self.models.values():
                model.time_passes(self.now, now_us)
        self.now = now_us

    @initialize(start=st.sampled_from(STARTS), data=st.data())
    def seasons_begin(self, start, data):
        self.zone, at = start
        self.set_now(utc_us(at))
        self.repository.begin_seasons()
        # Season 1 of every level began when the database learned of seasons: at the migration
        # (by the machine's own clock), or now where the migration's setting was emptied.
        since = int(self.repository.setting("seasons_since", default=lambda: "none"))
        self.models = {level: LevelModel.new(since) for level in LEVELS}
        # Levels start with rules of every kind (one of them often a schedule), before any post.
        for level in LEVELS:
            if data.draw(st.booleans(), label="rules at the start"):
                changes = data.draw(starting_rules(self.zone), label="changes")
                self.models[level].change_rules(changes)
                self.check_rules_answer(level, self.moderation.change_rules(level, changes))

    # Writes

    def post(self, level: int, user: int, score: int, by_server: bool = False) -> None:
        model = self.models[level]
        self.writes += 1
        try:
            expected = model.post(
                user, score, self.writes, by_server=by_server, banned=user in self.banned
            )
        except Rejected as rejected:
            error = {
                "server_only": ServerWritesOnly,
                "out_of_bounds": ScoreOutOfBounds,
                "banned": UserBanned,
            }
            with pytest.raises(error[rejected.kind]):
                self.repository.record_score(level, user, score, by_server=by_server)
            return
        changed = self.repository.record_score(level, user, score, by_server=by_server)
        assert changed in (None, expected), (level, user, score)

    @rule(level=levels, user=users, score=scores, by_server=st.booleans())
    def a_score_is_posted(self, level, user, score, by_server):
        self.post(level, user, score, by_server)

    @rule(level=levels, data=st.data())
    def a_player_posts_another_players_score(self, level, data):
        entries = self.models[level].seasons[-1].entries
        if entries:
            _, (score, _) = data.draw(st.sampled_from(sorted(entries.items())), label="other")
            self.post(level, data.draw(users, label="user"), score, True)

    @rule(
        level=levels,
        posts=st.lists(st.tuples(users, st.integers(0, 12)), min_size=14, max_size=20),
    )
    def a_crowd_posts(self, level, posts):
        for user, score in posts:
            self.post(level, user, score, True)

    # Moderation

    @rule(user=users)
    def a_user_is_banned(self, user):
        change = self.moderation.ban(user)
        assert change.changed == (user not in self.banned)
        self.banned.add(user)
        for model in self.models.values():
            model.ban(user)

    @rule(data=st.data())
    def a_user_is_unbanned(self, data):
        user = data.draw(st.sampled_from(sorted(self.banned)) if self.banned else users)
        change = self.moderation.unban(user)
        assert change.changed == (user in self.banned)
        self.banned.discard(user)
        for model in self.models.values():
            model.unban(user)

    @rule(level=levels, user=users)
    def a_score_is_deleted(self, level, user):
        expected = self.models[level].delete(user)
        deleted = self.moderation.delete_score(level, user)
        assert (None if deleted is None else (deleted.score, deleted.hidden)) == expected

    # Rules and seasons

    @rule(level=levels, data=st.data())
    def the_rules_change(self, level, data):
        changes = data.draw(rule_changes(self.zone), label="changes")
        model = self.models[level]
        try:
            model.change_rules(changes)
        except Rejected as rejected:
            error = {"invalid": InvalidRules, "conflict": RulesConflict}[rejected.kind]
            with pytest.raises(error):
                self.moderation.change_rules(level, changes)
        else:
            answer = self.moderation.change_rules(level, changes)
            self.check_rules_answer(level, answer)

    @rule(level=levels, which=st.sampled_from(["order", "keep", "both"]), then=st.booleans())
    def order_or_keep_change(self, level, which, then):
        """A 409 while the current season has scores; after a new season (then), none."""
        model = self.models[level]
        if then:
            self.a_season_is_started_by_hand(level)
        changes = {}
        if which in ("order", "both"):
            changes["order"] = "asc" if model.rules.order == "desc" else "desc"
        if which in ("keep", "both"):
            keeps = ["best", "latest", "sum"]
            changes["keep"] = keeps[(keeps.index(model.rules.keep) + 1) % 3]
        try:
            model.change_rules(changes)
        except Rejected as rejected:
            assert rejected.kind == "conflict"
            with pytest.raises(RulesConflict):
                self.moderation.change_rules(level, changes)
        else:
            self.check_rules_answer(level, self.moderation.change_rules(level, changes))

    @rule(level=levels, field=st.sampled_from(["colour", "season", "Order"]))
    def an_unknown_field_changes_nothing(self, level, field):
        with pytest.raises(InvalidRules):
            self.moderation.change_rules(level, {field: "asc"})

    @rule(level=levels)
    def a_season_is_started_by_hand(self, level):
        self.models[level].next_season(self.now)
        self.check_rules_answer(level, self.moderation.start_season(level))

    # Time

    @rule(seconds=st.sampled_from([0.000001, 1, 3600, 86_400, 7 * 86_400, 31 * 86_400]))
    def time_passes(self, seconds):
        self.set_now(self.now + int(seconds * 1_000_000))

    @rule(
        reset=st.sampled_from(["daily", "weekly", "monthly"]),
        to_the_level=st.sampled_from([None, *LEVELS]),
        offset=st.sampled_from([-1, 0, 1, -HOUR_US, HOUR_US]),
    )
    def time_passes_to_a_boundary(self, reset, to_the_level, offset):
        """To the next boundary of a level's own schedule (or of reset in the example's zone),
        to the µs before or after it, or an hour either side."""
        zone = self.zone
        if to_the_level is not None and self.models[to_the_level].rules.reset in (
            "daily",
            "weekly",
            "monthly",
        ):
            rules = self.models[to_the_level].rules
            reset, zone = rules.reset, rules.timezone
        boundary = next_period_start(reset, zone, self.now)
        self.set_now(max(self.now, boundary + offset))

    # Reads

    def check_rules_answer(self, level: int, answer) -> None:
        model = self.models[level]
        assert answer.level_id == level
        assert _rules_dict(answer.rules) == vars(model.rules), (answer.rules, model.rules)
        season = answer.season
        assert season.number == model.current
        assert season.started_us == model.seasons[-1].started_us
        assert season.ended_us == model.ends_us(self.now)

    @invariant()
    def each_levels_current_season_is_the_models(self):
        for level, model in self.models.items():
            season = model.seasons[-1]
            top = self.repository.top_scores_snapshot(level)
            assert [tuple(entry) for entry in top.entries] == season.top(), level
            assert top.players == season.players(), level
            self.check_rules_answer(level, self.moderation.rules(level))

    @invariant()
    def each_levels_seasons_are_the_models(self):
        levels = self.repository.levels
        for level, model in self.models.items():
            listed = levels.seasons(levels.state(level))
            expected = [
                (
                    number,
                    season.started_us,
                    season.ended_us if number < model.current else model.ends_us(self.now),
                    season.players(),
                )
                for number, season in enumerate(model.seasons, start=1)
            ]
            got = [
                (season.number, season.started_us, season.ended_us, players)
                for season, players in listed
            ]
            # Each season's board: the level's id, then 2**31 further on per season.
            assert [season.board for season, _ in listed] == [
                level + (number - 1) * 2**31 for number in range(1, model.current + 1)
            ]
            assert got == expected, level
            for number in (0, model.current + 1):
                with pytest.raises(NoSuchSeason):
                    self.repository.board(level, number)

    @rule(level=levels, data=st.data())
    def a_seasons_ranks_windows_and_pages_are_the_models(self, level, data):
        model = self.models[level]
        number = data.draw(st.integers(1, model.current), label="season")
        season = model.season(number)
        # The current season by default, or any season by its number.
        for asked in (number, None) if number == model.current else (number,):
            assert [tuple(e) for e in self.repository.top_scores(level, asked)] == season.top()
            for user in USERS:
                assert self.repository.rank(level, user, asked) == season.rank(user), user
                assert self.repository.window_around(level, user, asked) == season.window_around(
                    user
                ), user
            players = season.players()
            for first in sorted({1, 2, PAGE, PAGE + 1, max(players, 1), players + 1}):
                assert self.repository.window_from(level, first, asked) == season.window_from(
                    first
                ), first
            page = self.moderation.scores_from(level, 1, asked)
            assert page.season == number
            assert page.players == players
            assert [(e.rank, e.user_id, e.score) for e in page.entries] == season.ordering()
            exported = [entry for batch in self.moderation.export(level, asked) for entry in batch]
            assert [(e.rank, e.user_id, e.score) for e in exported] == season.ordering()

    @rule(
        level=levels,
        data=st.data(),
        friends=st.lists(users, max_size=8) | st.just(list(USERS)),
    )
    def friends_are_the_models(self, level, data, friends):
        model = self.models[level]
        number = data.draw(st.integers(1, model.current), label="season")
        window = self.repository.entries_of_users(level, friends + friends[:2], number)
        assert window == model.season(number).entries_of(friends)


def _rules_dict(rules) -> dict:
    return {
        name: getattr(rules, name)
        for name in ("order", "keep", "reset", "timezone", "min_score", "max_score", "writes")
    }


class FileLeaderboardMachine(LeaderboardMachine):
    def database_url(self) -> str:
        self._directory = tempfile.TemporaryDirectory(prefix="scoresvc-leaderboards-")
        return f"sqlite:///{self._directory.name}/scores.db"


SETTINGS = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestLevelsWithRulesAndSeasonsInMemoryAreThoseOfTheModel = LeaderboardMachine.TestCase
TestLevelsWithRulesAndSeasonsInMemoryAreThoseOfTheModel.settings = SETTINGS
TestLevelsWithRulesAndSeasonsInAFileAreThoseOfTheModel = FileLeaderboardMachine.TestCase
TestLevelsWithRulesAndSeasonsInAFileAreThoseOfTheModel.settings = settings(
    SETTINGS, max_examples=40
)


def test_levels_with_rules_and_seasons_on_postgresql_are_those_of_the_model(postgresql_url):
    upgrade_to_head(migrated := open_database(postgresql_url))
    migrated.close()

    class OnPostgreSQL(LeaderboardMachine):
        def database_url(self) -> str:
            empty_tables(postgresql_url)  # each example starts from an empty database
            return postgresql_url

    run_state_machine_as_test(OnPostgreSQL, settings=settings(SETTINGS, max_examples=30))
