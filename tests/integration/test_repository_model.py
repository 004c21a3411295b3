"""The repository on real databases, driven by random operations and compared with a dict model."""

import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from scoresvc.numbers import MAX_UINT31
from scoresvc.storage.database import open_database
from scoresvc.storage.migrate import upgrade_to_head
from scoresvc.storage.repository import TOP_SCORES_LIMIT, Repository, StoredSessionKey
from tests.clock import FakeClock
from tests.databases import empty_tables

levels = st.integers(0, 2) | st.just(MAX_UINT31)
# More users than a list shows, so that the 15-entry cut is exercised.
users = st.integers(0, 20) | st.just(MAX_UINT31)
# A narrow range makes ties and non-improvements common; the extremes are always in play.
scores = st.integers(0, 30) | st.sampled_from([0, MAX_UINT31])
key_hashes = st.sampled_from([f"{n:064x}" for n in range(6)])


class RepositoryModel(RuleBasedStateMachine):
    """Best scores as {level: {user: (score, order reached)}}; keys as {user: (hash, ms)}."""

    _directory: tempfile.TemporaryDirectory | None = None

    def database_url(self) -> str:
        """In memory, where score writes are deferred."""
        return "sqlite://"

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.database = open_database(self.database_url(), clock=self.clock)
        upgrade_to_head(self.database)
        self.repository = Repository(self.database)
        self.best: dict[int, dict[int, tuple[int, int]]] = {}
        self.keys: dict[int, tuple[str, int]] = {}
        self.settings: dict[str, str] = {}
        self.order = 0

    def teardown(self) -> None:
        self.database.close()
        if self._directory is not None:
            self._directory.cleanup()

    @rule(level=levels, user=users, score=scores)
    def record_score(self, level, user, score):
        previous = self.best.setdefault(level, {}).get(user)
        beats = previous is None or score > previous[0]
        self.repository.record_score(level, user, score)
        if beats:
            self.order += 1
            self.best[level][user] = (score, self.order)

    @rule(level=levels)
    def top_scores_are_the_models_best_fifteen(self, level):
        entries = sorted(self.best.get(level, {}).items(), key=lambda e: (-e[1][0], e[1][1]))
        expected = [(user, score) for user, (score, _) in entries[:TOP_SCORES_LIMIT]]
        assert [tuple(entry) for entry in self.repository.top_scores(level)] == expected

    @rule()
    def the_table_holds_the_models_best_scores(self):
        # Straight from the table (a memory database's deferred writes run first), not the cache.
        with self.database.unit_of_work() as uow:
            rows = uow.connection.exec_driver_sql(
                "SELECT level_id, user_id, score FROM best_scores"
            ).fetchall()
        expected = {
            (level, user, score)
            for level, users in self.best.items()
            for user, (score, _) in users.items()
        }
        assert set(rows) == expected

    @rule(seconds=st.sampled_from([0, 0.000001, 1, 3600]))
    def time_passes(self, seconds):
        self.clock.advance(seconds)

    @rule(seconds=st.sampled_from([1, 3600]))
    def the_clock_steps_back(self, seconds):
        # Ranking must not depend on the wall clock moving forward.
        self.clock.advance(-seconds)

    @rule(user=users, key_hash=key_hashes, expires_at=st.integers(0, 2**62))
    def store_session_key(self, user, key_hash, expires_at):
        # key_hash is unique in the table: a hash held by another user is never stored twice.
        if any(held == key_hash for other, (held, _) in self.keys.items() if other != user):
            return
        self.repository.store_session_key(user, key_hash, expires_at)
        self.keys[user] = (key_hash, expires_at)

    @rule(key_hash=key_hashes)
    def find_session_key_as_the_model_does(self, key_hash):
        expected = next(
            (
                StoredSessionKey(user, ms)
                for user, (held, ms) in self.keys.items()
                if held == key_hash
            ),
            None,
        )
        assert self.repository.find_session_key(key_hash) == expected

    @rule(name=st.sampled_from(["session_secret", "other"]), value=st.text("ab", max_size=3))
    def a_setting_keeps_its_first_value(self, name, value):
        self.settings.setdefault(name, value)
        assert self.repository.setting(name, default=lambda: value) == self.settings[name]

    @invariant()
    def the_database_answers(self):
        self.repository.check()


class FileRepositoryModel(RepositoryModel):
    """The same, on a database file, where score writes are made before record_score returns."""

    def database_url(self) -> str:
        self._directory = tempfile.TemporaryDirectory(prefix="scoresvc-model-")
        return f"sqlite:///{self._directory.name}/scores.db"


_SETTINGS = settings(max_examples=100, stateful_step_count=50, deadline=None)
TestTheRepositoryBehavesLikeAPlainPythonModel = RepositoryModel.TestCase
TestTheRepositoryBehavesLikeAPlainPythonModel.settings = _SETTINGS
TestTheRepositoryOnAFileBehavesLikeAPlainPythonModel = FileRepositoryModel.TestCase
TestTheRepositoryOnAFileBehavesLikeAPlainPythonModel.settings = settings(_SETTINGS, max_examples=30)


def test_the_repository_on_postgresql_behaves_like_the_model(postgresql_url):
    upgrade_to_head(migrated := open_database(postgresql_url))
    migrated.close()

    class OnPostgreSQL(RepositoryModel):
        def database_url(self) -> str:
            empty_tables(postgresql_url)  # each example starts from an empty database
            return postgresql_url

    run_state_machine_as_test(OnPostgreSQL, settings=settings(_SETTINGS, max_examples=15))
