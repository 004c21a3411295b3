"""The cache of each level's top scores: what the database holds, dropped by any write to it."""

import subprocess
import sys
import threading
import time

from scoresvc.storage.database import open_database
from scoresvc.storage.levelversions import SLOTS, LevelVersions
from scoresvc.storage.migrate import upgrade_to_head
from scoresvc.storage.repository import Repository, ScoreEntry
from tests.integration.conftest import query


def in_database(database, level_id: int) -> list[ScoreEntry]:
    """The level's top 15, straight from the table."""
    rows = query(
        database,
        "SELECT user_id, score FROM best_scores WHERE level_id = :level "
        "ORDER BY score DESC, reached_at, user_id LIMIT 15",
        level=level_id,
    )
    return [ScoreEntry(*row) for row in rows]


def full_list(repository: Repository, level_id: int = 1) -> None:
    """Users 1..15 with scores 100, 200, ... 1500 on the level."""
    for user_id in range(1, 16):
        repository.record_score(level_id, user_id, user_id * 100)


def test_a_second_read_with_no_write_between_comes_from_memory(repository, database):
    full_list(repository)
    first = repository.top_scores_snapshot(1)
    cached = repository.top_scores_snapshot(1)
    # Kept where every writer shares the level versions (SQLite); read each time on PostgreSQL,
    # where the rows read, found as they were, give the snapshot built from them back.
    assert cached is first


def test_the_cached_list_is_what_the_database_holds(repository, database, clock):
    for user_id in range(40):
        repository.record_score(1, user_id, user_id * 37 % 100)
        clock.advance(0.001)
        assert repository.top_scores(1) == in_database(database, 1)


def test_a_write_replaces_the_list_before_it_returns(repository, database):
    full_list(repository)
    before = repository.top_scores_snapshot(1)
    repository.record_score(1, 7, 5000)
    after = repository.top_scores_snapshot(1)
    assert after is not before
    assert after.entries[0] == ScoreEntry(7, 5000)
    assert list(after.entries) == in_database(database, 1)


def file_repository(tmp_path, **options) -> Repository:
    """A repository on a new, migrated database file (SQLite: lists are kept)."""
    database = open_database(f"sqlite:///{tmp_path}/scores.db")
    upgrade_to_head(database)
    return Repository(database, **options)


def test_writes_to_another_level_keep_the_list(tmp_path):
    repository = file_repository(tmp_path)
    full_list(repository)
    before = repository.top_scores_snapshot(1)
    repository.record_score(2, 7, 99999)
    assert repository.top_scores_snapshot(1) is before
    repository.database.close()


def test_a_write_by_another_process_on_the_file_replaces_the_list(tmp_path):
    repository = file_repository(tmp_path)
    url = f"sqlite:///{tmp_path}/scores.db"
    full_list(repository)
    before = repository.top_scores_snapshot(1)
    other_process = (
        "from scoresvc.storage.database import open_database;"
        "from scoresvc.storage.repository import Repository;"
        f"database = open_database({url!r}); Repository(database).record_score(1, 99, 10**6);"
        "database.close()"
    )
    subprocess.run([sys.executable, "-c", other_process], check=True, timeout=60)
    after = repository.top_scores_snapshot(1)
    assert after is not before
    assert after.entries[0] == ScoreEntry(99, 10**6)
    repository.database.close()


def test_the_cache_keeps_the_most_recently_read_levels_only(tmp_path):
    repository = file_repository(tmp_path, top_scores_cache_levels=2)
    for level_id in (1, 2, 3):
        repository.record_score(level_id, 1, level_id)
    first = repository.top_scores_snapshot(1)
    repository.top_scores_snapshot(2)
    third = repository.top_scores_snapshot(3)  # level 1 makes room
    assert repository.top_scores_snapshot(3) is third
    assert repository.top_scores_snapshot(1) is not first
    assert repository.top_scores(1) == [ScoreEntry(1, 1)]
    repository.database.close()


def test_with_no_cache_every_read_goes_to_the_database(database):
    repository = Repository(database, top_scores_cache_levels=0)
    repository.record_score(1, 1, 1)
    assert repository.top_scores_snapshot(1) is not repository.top_scores_snapshot(1)
    assert repository.top_scores(1) == [ScoreEntry(1, 1)]


def test_level_versions_in_one_file_are_shared_and_never_repeat(tmp_path):
    first, second = LevelVersions(tmp_path / "v"), LevelVersions(tmp_path / "v")
    seen = {first.current(5)}
    for versions in (first, second, first, second):
        versions.changed(5)
        assert first.current(5) == second.current(5) not in seen
        seen.add(first.current(5))
    assert first.current(5 + SLOTS) == first.current(5)  # levels share slots modulo SLOTS
    assert first.current(6) == 0
    first.close()
    second.close()


def test_no_read_after_a_write_returns_gets_the_list_from_before_it(repository):
    # Writers raise their own best again and again; readers keep the cache busy refilling. As
    # soon as record_score returns, the writer's new best must be on the list it reads.
    errors: list[BaseException] = []
    stop = threading.Event()
    scores = iter(range(1, 10**9))  # one rising sequence shared by all writers
    scores_lock = threading.Lock()

    def writer(user_id: int) -> None:
        try:
            for _ in range(300):
                with scores_lock:
                    score = next(scores)
                repository.record_score(1, user_id, score)
                listed = dict(repository.top_scores(1))
                assert listed.get(user_id, -1) >= score, (user_id, score, listed)
        except BaseException as error:
            errors.append(error)

    def reader() -> None:
        try:
            while not stop.is_set():
                entries = repository.top_scores(1)
                assert [e.score for e in entries] == sorted(
                    (e.score for e in entries), reverse=True
                )
                # A cached read never gives up the GIL by itself: without this, four readers
                # starve the eight writers for half a minute.
                time.sleep(0)
        except BaseException as error:
            errors.append(error)

    readers = [threading.Thread(target=reader) for _ in range(4)]
    writers = [threading.Thread(target=writer, args=(user_id,)) for user_id in range(8)]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    stop.set()
    for thread in readers:
        thread.join(timeout=120)
    assert errors == []
