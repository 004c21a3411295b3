"""Moderation on real databases: bans move rows and counts, exports read one snapshot."""

import threading

import pytest

from scoresvc.errors import UserBanned
from scoresvc.storage.bannedusers import BannedUsersCache
from scoresvc.storage.database import open_database
from scoresvc.storage.leftoverjournal import ScoreRecord
from scoresvc.storage.levels import Levels
from scoresvc.storage.levelversions import LevelVersions
from scoresvc.storage.migrate import upgrade_to_head
from scoresvc.storage.moderation import EXPORT_BATCH_ROWS, Moderation
from scoresvc.storage.repository import Repository
from tests.integration.conftest import query


@pytest.fixture
def moderation(database, clock) -> Moderation:
    return Moderation(database, Levels(database), clock=clock)


def counted_players(database) -> list[tuple]:
    """Each level's players as rank_counts has them, beside a plain count of best_scores."""
    return query(
        database,
        "SELECT level_id, (SELECT sum(players) FROM rank_counts AS c "
        "WHERE c.level_id = b.level_id AND c.depth = 1), count(*) "
        "FROM best_scores AS b GROUP BY level_id ORDER BY level_id",
    )


def test_a_ban_moves_the_users_rows_and_the_counts_follow(database, repository, moderation):
    for level in (1, 2, 3):
        for user in range(1, 21):
            repository.record_score(level, user, user * 10 + level)
    moderation.ban(7)
    assert query(database, "SELECT count(*) FROM best_scores WHERE user_id = 7") == [(0,)]
    assert query(
        database, "SELECT level_id, score FROM hidden_scores WHERE user_id = 7 ORDER BY level_id"
    ) == [(1, 71), (2, 72), (3, 73)]
    assert counted_players(database) == [(1, 19, 19), (2, 19, 19), (3, 19, 19)]
    assert repository.rank(1, 20).rank == 1
    assert repository.rank(1, 6).rank == 14  # 20..8 ahead of it: 13 players
    moderation.unban(7)
    assert query(database, "SELECT count(*) FROM hidden_scores") == [(0,)]
    assert counted_players(database) == [(1, 20, 20), (2, 20, 20), (3, 20, 20)]
    assert repository.rank(1, 6).rank == 15


def test_a_ban_finds_the_users_rows_on_levels_far_apart(database, repository, moderation):
    levels = [0, 1, 77, 4096, 65_536 + 77, 2_147_483_647]
    for level in levels:
        repository.record_score(level, 5, level % 1000)
        repository.record_score(level, 6, 1)
    assert moderation.ban(5).levels == tuple(levels)
    assert moderation.levels() == [(level, 1) for level in levels]


def test_levels_leave_the_list_with_their_last_player(database, repository, moderation):
    repository.record_score(1, 5, 10)
    repository.record_score(2, 6, 10)
    moderation.delete_score(1, 5)
    assert moderation.levels() == [(2, 1)]
    moderation.ban(6)
    assert moderation.levels() == []


def test_nothing_is_written_for_a_banned_user(database, repository, moderation):
    moderation.ban(5)
    with pytest.raises(UserBanned):
        repository.record_score(1, 5, 10)
    assert repository.is_banned(5)
    assert not repository.is_banned(6)
    # Even a writer that did not ask first (one that raced the ban) writes nothing.
    repository.record_scores_reached([ScoreRecord(1, 5, 10, 1)])
    database.finish_writes()
    assert query(database, "SELECT count(*) FROM best_scores") == [(0,)]


def test_a_ban_is_seen_by_another_repository_on_the_database_at_once(database, moderation):
    other = Repository(database)
    assert not other.is_banned(5)  # read and kept
    moderation.ban(5)
    assert other.is_banned(5)
    moderation.unban(5)
    assert not other.is_banned(5)


def test_posts_racing_a_ban_never_leave_the_user_visible(shared_database_url, clock):
    # Posts of the user on new levels (inserts) and on old ones (updates) while the ban runs:
    # whatever the interleaving, once it has returned no row of the user is visible.
    database = open_database(shared_database_url, clock=clock)
    upgrade_to_head(database)
    try:
        for round_number in range(5):
            user = 1000 + round_number
            repository = Repository(database)
            for level in range(20):
                repository.record_score(level, user, 1)
            stop = threading.Event()

            def post(first_level: int, user: int = user, stop: threading.Event = stop) -> None:
                poster = Repository(database)
                score = 2
                while not stop.is_set():
                    for level in range(first_level, first_level + 40):
                        try:
                            poster.record_score(level, user, score)
                        except UserBanned:
                            return
                    score += 1

            posters = [threading.Thread(target=post, args=(n * 20,)) for n in range(3)]
            for thread in posters:
                thread.start()
            Moderation(database, Levels(database), clock=clock).ban(user)
            stop.set()
            for thread in posters:
                thread.join(30)
            visible = query(database, "SELECT count(*) FROM best_scores WHERE user_id = :u", u=user)
            assert visible == [(0,)]
            for level, counted, rows in counted_players(database):
                assert counted == rows, level
    finally:
        database.close()


def test_an_export_reads_the_ordering_in_batches(database, repository, moderation):
    players = EXPORT_BATCH_ROWS * 2 + 5
    with database.unit_of_work() as uow:
        uow.connection.exec_driver_sql(
            "INSERT INTO best_scores (level_id, user_id, score, reached_at) "
            f"SELECT 1, n, n / 3, n FROM ({_numbers(players)}) AS numbers"  # ties in threes
        )
    batches = list(moderation.export(1))
    assert [len(batch) for batch in batches] == [EXPORT_BATCH_ROWS, EXPORT_BATCH_ROWS, 5]
    entries = [entry for batch in batches for entry in batch]
    assert [entry.rank for entry in entries] == list(range(1, players + 1))
    for entry in entries[:: players // 7]:
        assert repository.rank(1, entry.user_id).rank == entry.rank


@pytest.mark.parametrize("database_url", ["file", "postgresql"], indirect=True)
def test_an_export_reads_one_snapshot_while_writers_go_on(database, repository, moderation):
    for user in range(1, EXPORT_BATCH_ROWS + 101):
        repository.record_score(1, user, user)
    export = moderation.export(1)
    first = next(export)
    # Written while the export runs, without waiting for it: none of it shows in the export.
    repository.record_score(1, 999_999, 2**31 - 1)
    moderation.delete_score(1, 1)
    moderation.ban(2)
    rest = [entry for batch in export for entry in batch]
    exported = first + rest
    assert len(exported) == EXPORT_BATCH_ROWS + 100
    assert [entry.user_id for entry in exported[-2:]] == [2, 1]
    assert 999_999 not in {entry.user_id for entry in exported}
    assert repository.rank(1, 999_999).rank == 1


def test_an_export_left_unfinished_gives_its_connection_back(database, repository, moderation):
    for user in range(1, EXPORT_BATCH_ROWS * 2):
        repository.record_score(1, user, user)
    for _ in range(40):  # more than any pool holds
        export = moderation.export(1)
        next(export)
        export.close()
    repository.record_score(1, 1, 10**6)
    assert repository.rank(1, 1).rank == 1


class FakeVersions:
    def __init__(self) -> None:
        self.version = 0

    def bans(self) -> int:
        return self.version


def test_the_banned_users_are_read_again_only_when_their_version_changes():
    versions, reads = FakeVersions(), []
    banned = {5}

    def load():
        reads.append(1)
        return set(banned)

    cache = BannedUsersCache(versions, load)
    assert 5 in cache
    assert 6 not in cache
    assert len(reads) == 1
    banned.add(6)
    assert 6 not in cache  # same version: what was read stands
    versions.version = 1
    assert 6 in cache
    assert len(reads) == 2


def test_the_bans_version_is_shared_through_the_file(tmp_path):
    first, second = LevelVersions(tmp_path / "v"), LevelVersions(tmp_path / "v")
    before = second.bans()
    first.bans_changed()
    assert second.bans() != before
    first.changed(0)
    assert second.bans() == first.bans()  # a level's change is not the bans'
    first.close()
    second.close()


def _numbers(count: int) -> str:
    # 1..count from a recursive CTE: both databases have them.
    return (
        f"WITH RECURSIVE numbers(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM numbers "
        f"WHERE n < {count}) SELECT n FROM numbers"
    )
