"""A level's rules and seasons kept in a PostgreSQL replica, confirmed by each list's version.

A replica lists a level's top 15 in one statement, on the board its last read of the level's
rules and seasons says; the statement returns the level's stored version with the list, and a
version other than the one kept means another replica changed the level: the rules are read
anew and the list again. Two databases opened on one PostgreSQL database are two replicas.
"""

from collections.abc import Iterator
from typing import Any

import pytest

from scoresvc.errors import NoSuchSeason
from scoresvc.storage.database import open_database
from scoresvc.storage.migrate import upgrade_to_head
from scoresvc.storage.moderation import Moderation
from scoresvc.storage.repository import Repository, ScoreEntry
from scoresvc.storage.statements import CompiledStatement


class Replica:
    """One replica's repository and admin API, on its own database connections."""

    def __init__(self, url: str) -> None:
        self.database = open_database(url)
        self.repository = Repository(self.database)
        self.moderation = Moderation(self.database, self.repository.levels)

    def post(self, level: int, *scores: tuple[int, int]) -> None:
        for user, score in scores:
            self.repository.record_score(level, user, score)

    def close(self) -> None:
        self.database.close()


class CountedStatement:
    """A compiled statement that counts its runs."""

    def __init__(self, statement: CompiledStatement) -> None:
        self._statement = statement
        self.runs = 0

    def execute(self, cursor: Any, **values: Any) -> Any:
        self.runs += 1
        return self._statement.execute(cursor, **values)


@pytest.fixture
def replicas(postgresql_url) -> Iterator[tuple[Replica, Replica]]:
    """Two replicas on one migrated PostgreSQL database: a (which changes) and b (which lists)."""
    migrated = open_database(postgresql_url)
    upgrade_to_head(migrated)
    Repository(migrated).begin_seasons()
    migrated.close()
    a, b = Replica(postgresql_url), Replica(postgresql_url)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def state_reads(replicas) -> CountedStatement:
    """How many times replica b has read a level's rules and seasons."""
    levels = replicas[1].repository.levels
    levels._read = counted = CountedStatement(levels._read)
    return counted


def test_a_list_reads_the_rules_of_an_unchanged_level_once(replicas, state_reads):
    a, b = replicas
    a.post(1, (1, 10), (2, 20))
    for _ in range(5):
        assert b.repository.top_scores(1) == [ScoreEntry(2, 20), ScoreEntry(1, 10)]
    assert state_reads.runs == 1


def test_a_list_read_again_unchanged_is_the_snapshot_built_before(replicas):
    a, b = replicas
    a.post(1, (1, 10), (2, 20))
    first = b.repository.top_scores_snapshot(1)
    first.rendered["text"] = "built once"
    again = b.repository.top_scores_snapshot(1)
    assert again is first  # read anew, and found as it was: not built again
    a.post(1, (3, 30))
    changed = b.repository.top_scores_snapshot(1)
    assert changed is not first
    assert changed.rendered == {}
    assert list(changed.entries) == [ScoreEntry(3, 30), ScoreEntry(2, 20), ScoreEntry(1, 10)]


def test_a_change_of_rules_in_one_replica_is_in_the_next_list_of_another(replicas, state_reads):
    a, b = replicas
    assert b.repository.top_scores(1) == []  # level 1's rules (none) kept in b
    reads = state_reads.runs
    a.moderation.change_rules(1, {"order": "asc"})
    a.post(1, (1, 10), (2, 20), (3, 30))
    ascending = [ScoreEntry(1, 10), ScoreEntry(2, 20), ScoreEntry(3, 30)]
    assert b.repository.top_scores(1) == ascending
    assert b.repository.top_scores(1) == ascending
    assert state_reads.runs == reads + 1  # read anew once, after the change


def test_a_season_started_in_one_replica_is_in_the_next_list_of_another(replicas):
    a, b = replicas
    a.post(1, (1, 10), (2, 20))
    assert b.repository.top_scores(1) == [ScoreEntry(2, 20), ScoreEntry(1, 10)]
    a.moderation.start_season(1)
    assert b.repository.top_scores(1) == []
    a.post(1, (3, 5))
    assert b.repository.top_scores(1) == [ScoreEntry(3, 5)]
    assert b.repository.top_scores(1, season=1) == [ScoreEntry(2, 20), ScoreEntry(1, 10)]


def test_a_list_kept_empty_is_confirmed_as_well(replicas):
    a, b = replicas
    assert b.repository.top_scores(1) == []  # season 1's board, empty, kept in b
    a.moderation.start_season(1)
    a.post(1, (1, 10))
    # b's kept board (season 1) is still empty: its list says no version, asked apart.
    assert b.repository.top_scores(1) == [ScoreEntry(1, 10)]
    assert b.repository.top_scores(1, season=1) == []


def test_a_season_begun_since_the_rules_were_kept_is_no_unknown_season(replicas):
    a, b = replicas
    assert b.repository.top_scores(1) == []  # season 1, the current one, kept in b
    a.post(1, (1, 10))
    a.moderation.start_season(1)
    a.post(1, (2, 20))
    a.moderation.start_season(1)
    assert b.repository.top_scores(1, season=2) == [ScoreEntry(2, 20)]
    assert b.repository.top_scores(1, season=1) == [ScoreEntry(1, 10)]
    with pytest.raises(NoSuchSeason):
        b.repository.top_scores(1, season=4)


def test_each_change_of_rules_or_seasons_gives_the_level_a_greater_version(replicas):
    a, _ = replicas
    levels = a.repository.levels
    versions = [levels.state(1).stored_version]
    a.moderation.change_rules(1, {"min_score": 5})
    versions.append(levels.state(1).stored_version)
    a.moderation.start_season(1)
    versions.append(levels.state(1).stored_version)
    a.moderation.change_rules(1, {"max_score": 500})
    versions.append(levels.state(1).stored_version)
    assert versions[0] == 0  # no rules stored
    assert versions == sorted(set(versions))


def test_a_version_never_comes_back_after_the_rules_are_emptied(replicas, state_reads):
    a, b = replicas
    a.moderation.change_rules(1, {"min_score": 5})
    a.post(1, (1, 10))
    assert b.repository.top_scores(1) == [ScoreEntry(1, 10)]  # min_score 5 kept in b
    kept = a.repository.levels.state(1).stored_version
    with a.database.unit_of_work() as uow:  # as by hand: every level's rules emptied
        uow.connection.exec_driver_sql("DELETE FROM level_rules")
        uow.connection.exec_driver_sql("DELETE FROM season_spans")
    a.moderation.change_rules(1, {"min_score": 5})  # as they were, but for the version
    assert a.repository.levels.state(1).stored_version > kept
    assert b.repository.top_scores(1) == [ScoreEntry(1, 10)]
    assert state_reads.runs == 2  # the rules read anew all the same
