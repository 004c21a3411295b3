"""Ranks, windows and top lists of the repository on real databases, against a plain model.

Random posts (ties, improvements across powers of two and multiples of 2^8, 2^16 and 2^24,
crowds of 0, 1, 14, 15, 16 and 30 players, scores left by 1.0 with equal times) are checked
against tests.rankingmodel: every user's rank, pages from anywhere (the first rank, the last,
just past the end, far past it), the window around every player, the top list and the number
of players.
"""

import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import bindparam, text

from scoresvc.storage.database import open_database
from scoresvc.storage.leftoverjournal import ScoreRecord
from scoresvc.storage.migrate import upgrade_to_head
from scoresvc.storage.repository import Repository
from tests.clock import FakeClock
from tests.databases import empty_tables
from tests.rankingmodel import LEVELS, USERS, PostingRules, RankingModel, levels, scores, users


class RankingMachine(PostingRules, RuleBasedStateMachine):
    """The repository and RankingModel, fed the same posts, must agree on every read."""

    # SQLite's next_reached_at() is strictly increasing in a process; PostgreSQL's is the server's
    # clock in microseconds, so two posts could in principle share one.
    strictly_increasing_reached_at = True
    _directory: tempfile.TemporaryDirectory | None = None

    def database_url(self) -> str:
        return "sqlite://"

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.database = open_database(self.database_url(), clock=self.clock)
        upgrade_to_head(self.database)
        self.repository = Repository(self.database)
        self.model = RankingModel()
        self.last_reached_at: int | None = None  # of the latest improving post

    def teardown(self) -> None:
        self.database.close()
        if self._directory is not None:
            self._directory.cleanup()

    # Writes.

    def stored(self, level: int, users: list[int]) -> dict[int, tuple[int, int]]:
        """{user: (score, reached_at)} as the table holds them (deferred writes run first)."""
        with self.database.unit_of_work() as uow:
            rows = uow.connection.execute(
                text(
                    "SELECT user_id, score, reached_at FROM best_scores "
                    "WHERE level_id = :level AND user_id IN :users"
                ).bindparams(bindparam("users", expanding=True)),
                {"level": level, "users": users},
            )
            return {user: (score, reached_at) for user, score, reached_at in rows}

    def post(self, level: int, posts: list[tuple[int, int]]) -> None:
        """Record each (user, score) in turn, then check the table and teach the model."""
        improving: dict[int, int] = {}  # user -> score, of the posts that beat the user's best
        order: list[int] = []  # users in the order of their last improving post
        bests = {user: self.model.best.get(level, {}).get(user) for user, _ in posts}
        for user, score in posts:
            self.repository.record_score(level, user, score)
            best = improving.get(user, None if bests[user] is None else bests[user][0])
            if best is None or score > best:
                improving[user] = score
                if user in order:
                    order.remove(user)
                order.append(user)
        if not posts:
            return
        rows = self.stored(level, sorted({user for user, _ in posts}))
        for user, _ in posts:
            if user not in improving:
                assert rows[user] == bests[user], "an equal or lower score changed the best"
        # Each improving post is reached after every earlier one.
        for user in order:
            score, reached_at = rows[user]
            assert score == improving[user]
            if self.last_reached_at is not None:
                if self.strictly_increasing_reached_at:
                    assert reached_at > self.last_reached_at
                else:
                    assert reached_at >= self.last_reached_at
            self.last_reached_at = reached_at
            assert self.model.post(level, user, score, reached_at)

    @initialize(
        groups=st.lists(
            st.tuples(
                levels,
                st.lists(users, min_size=1, max_size=6, unique=True),
                st.integers(0, 2) | scores,
                st.integers(1, 3),
            ),
            max_size=6,
        )
    )
    def scores_left_by_version_1_0_at_equal_times(self, groups):
        # Before any read, as at a start: these bypass the top lists kept in memory. Groups of
        # users reaching one score at one time are where the ordering falls back on user ids.
        journal = sorted(
            (
                ScoreRecord(level, user, score, reached_at)
                for level, group, score, reached_at in groups
                for user in group
            ),
            key=lambda record: record.reached_at,
        )
        self.repository.record_scores_reached(journal)
        for record in journal:
            self.model.post(record.level_id, record.user_id, record.score, record.reached_at)

    @rule(seconds=st.sampled_from([0.000001, 1.0, -1.0, -3600.0]))
    def the_clock_moves(self, seconds):
        # Ties rank by the order of posts whichever way the clock goes.
        self.clock.advance(seconds)

    # Reads.

    @rule(level=levels)
    def every_users_rank_is_the_models(self, level):
        for user in USERS:
            assert self.repository.rank(level, user) == self.model.rank(level, user), user

    @rule(level=levels, data=st.data())
    def pages_from_anywhere_are_the_models(self, level, data):
        for first in self.first_ranks(level, data):
            assert self.repository.window_from(level, first) == self.model.window_from(
                level, first
            ), first

    @rule(level=levels)
    def the_window_around_every_user_is_the_models(self, level):
        for user in USERS:
            expected = self.model.window_around(level, user)
            assert self.repository.window_around(level, user) == expected, user

    @invariant()
    def every_top_list_is_the_models(self):
        for level in LEVELS:
            top = self.repository.top_scores_snapshot(level)
            assert [tuple(entry) for entry in top.entries] == self.model.top(level), level
            assert top.players == self.model.players(level), level


class FileRankingMachine(RankingMachine):
    def database_url(self) -> str:
        self._directory = tempfile.TemporaryDirectory(prefix="scoresvc-ranking-")
        return f"sqlite:///{self._directory.name}/scores.db"


SETTINGS = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestRanksWindowsAndTopListsInMemoryAreThoseOfAPlainModel = RankingMachine.TestCase
TestRanksWindowsAndTopListsInMemoryAreThoseOfAPlainModel.settings = SETTINGS
TestRanksWindowsAndTopListsInAFileAreThoseOfAPlainModel = FileRankingMachine.TestCase
TestRanksWindowsAndTopListsInAFileAreThoseOfAPlainModel.settings = settings(
    SETTINGS, max_examples=30
)


def test_ranks_windows_and_top_lists_on_postgresql_are_those_of_a_plain_model(postgresql_url):
    upgrade_to_head(migrated := open_database(postgresql_url))
    migrated.close()

    class OnPostgreSQL(RankingMachine):
        strictly_increasing_reached_at = False

        def database_url(self) -> str:
            empty_tables(postgresql_url)  # each example starts from an empty database
            return postgresql_url

    run_state_machine_as_test(OnPostgreSQL, settings=settings(SETTINGS, max_examples=20))
