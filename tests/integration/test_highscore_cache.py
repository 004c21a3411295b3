"""The cache of each level's top scores: what the database holds, dropped only by a change."""

import threading
import time

from scoresvc.storage.repository import Repository, ScoreEntry
from tests.integration.conftest import query


def in_database(database, level_id: int) -> list[ScoreEntry]:
    """The level's top 15, straight from the table."""
    rows = query(
        database,
        "SELECT user_id, score FROM best_scores WHERE level_id = :level "
        "ORDER BY score DESC, reached_at LIMIT 15",
        level=level_id,
    )
    return [ScoreEntry(*row) for row in rows]


def full_list(repository: Repository, level_id: int = 1) -> None:
    """Users 1..15 with scores 100, 200, ... 1500 on the level."""
    for user_id in range(1, 16):
        repository.record_score(level_id, user_id, user_id * 100)


def test_a_second_read_with_no_write_between_comes_from_memory(repository):
    full_list(repository)
    first = repository.top_scores_snapshot(1)
    assert repository.top_scores_snapshot(1) is first
    assert repository.top_scores(1) == list(first.entries)


def test_the_cached_list_is_what_the_database_holds(repository, database, clock):
    for user_id in range(40):
        repository.record_score(1, user_id, user_id * 37 % 100)
        clock.advance(0.001)
        assert repository.top_scores(1) == in_database(database, 1)


def test_a_write_that_changes_the_list_replaces_it_before_it_returns(repository, database):
    full_list(repository)
    before = repository.top_scores_snapshot(1)
    repository.record_score(1, 7, 5000)
    after = repository.top_scores_snapshot(1)
    assert after is not before
    assert after.entries[0] == ScoreEntry(7, 5000)
    assert list(after.entries) == in_database(database, 1)


def test_a_write_that_does_not_improve_a_best_keeps_the_list(repository):
    full_list(repository)
    before = repository.top_scores_snapshot(1)
    repository.record_score(1, 7, 700)  # equal
    repository.record_score(1, 7, 3)  # lower
    assert repository.top_scores_snapshot(1) is before


def test_an_improved_best_below_a_full_list_keeps_it(repository, database):
    full_list(repository)
    repository.record_score(1, 99, 1)
    before = repository.top_scores_snapshot(1)
    repository.record_score(1, 99, 99)  # improved, still below the 15th (100)
    repository.record_score(1, 98, 50)  # a new player, below too
    assert repository.top_scores_snapshot(1) is before
    assert list(before.entries) == in_database(database, 1)


def test_an_improved_best_that_ties_the_last_entry_keeps_the_list(repository, database):
    full_list(repository)
    before = repository.top_scores_snapshot(1)
    repository.record_score(1, 99, 100)  # ties the 15th, reached later: 16th
    assert repository.top_scores_snapshot(1) is before
    assert list(before.entries) == in_database(database, 1)


def test_an_improved_best_above_the_last_entry_replaces_a_full_list(repository, database):
    full_list(repository)
    before = repository.top_scores_snapshot(1)
    repository.record_score(1, 99, 101)
    after = repository.top_scores_snapshot(1)
    assert after is not before
    assert ScoreEntry(99, 101) in after.entries
    assert ScoreEntry(1, 100) not in after.entries
    assert list(after.entries) == in_database(database, 1)


def test_the_last_listed_user_improving_replaces_the_list(repository, database):
    full_list(repository)
    before = repository.top_scores_snapshot(1)
    repository.record_score(1, 1, 150)  # still 15th, with a new score
    after = repository.top_scores_snapshot(1)
    assert after is not before
    assert after.entries[-1] == ScoreEntry(1, 150)
    assert list(after.entries) == in_database(database, 1)


def test_any_improved_best_replaces_a_list_that_is_not_full(repository, database):
    for user_id in range(1, 4):
        repository.record_score(1, user_id, 100)
    before = repository.top_scores_snapshot(1)
    repository.record_score(1, 9, 1)  # lowest of all, yet it joins a short list
    after = repository.top_scores_snapshot(1)
    assert after is not before
    assert after.entries[-1] == ScoreEntry(9, 1)
    assert list(after.entries) == in_database(database, 1)


def test_an_empty_level_read_before_its_first_score_shows_that_score(repository):
    assert repository.top_scores(5) == []
    repository.record_score(5, 1, 10)
    assert repository.top_scores(5) == [ScoreEntry(1, 10)]


def test_writes_to_another_level_keep_the_list(repository):
    full_list(repository)
    before = repository.top_scores_snapshot(1)
    repository.record_score(2, 7, 99999)
    assert repository.top_scores_snapshot(1) is before


def test_the_cache_keeps_the_most_recently_read_levels_only(database, clock):
    repository = Repository(database, clock=clock, top_scores_cache_levels=2)
    for level_id in (1, 2, 3):
        repository.record_score(level_id, 1, level_id)
    first = repository.top_scores_snapshot(1)
    repository.top_scores_snapshot(2)
    third = repository.top_scores_snapshot(3)  # level 1 makes room
    assert repository.top_scores_snapshot(3) is third
    assert repository.top_scores_snapshot(1) is not first
    assert repository.top_scores(1) == [ScoreEntry(1, 1)]


def test_with_no_cache_every_read_goes_to_the_database(database, clock):
    repository = Repository(database, clock=clock, top_scores_cache_levels=0)
    repository.record_score(1, 1, 1)
    assert repository.top_scores_snapshot(1) is not repository.top_scores_snapshot(1)
    assert repository.top_scores(1) == [ScoreEntry(1, 1)]


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
