"""The repository against real SQLite, checked with raw SQL."""

import threading

from scoresvc.storage.repository import (
    IDEMPOTENCY_KEY_LIFETIME_US,
    PURGE_EVERY,
    ScoreEntry,
)
from tests.integration.conftest import query


def database_now_us(database, clock) -> int:
    """The database's clock: this process's (a fake) for SQLite, the server's for PostgreSQL."""
    if database.engine.dialect.name == "sqlite":
        return int(clock.now * 1_000_000)
    return query(database, "SELECT next_reached_at()")[0][0]


def test_a_first_score_is_stored_with_when_it_was_reached(repository, database, clock):
    repository.record_score(2, 4711, 1500)
    ((level, user, score, reached_at),) = query(
        database, "SELECT level_id, user_id, score, reached_at FROM best_scores"
    )
    assert (level, user, score) == (2, 4711, 1500)
    assert abs(database_now_us(database, clock) - reached_at) < 2_000_000


def test_only_a_higher_score_replaces_the_best(repository, database, clock):
    repository.record_score(1, 7, 100)
    first_time = query(database, "SELECT reached_at FROM best_scores")[0][0]
    clock.advance(10)
    repository.record_score(1, 7, 100)
    repository.record_score(1, 7, 99)
    assert query(database, "SELECT score, reached_at FROM best_scores") == [(100, first_time)]
    repository.record_score(1, 7, 101)
    ((score, reached_at),) = query(database, "SELECT score, reached_at FROM best_scores")
    assert score == 101
    assert reached_at > first_time
    if database.engine.dialect.name == "sqlite":  # this process's clock: the 10 s step shows
        assert reached_at > first_time + 9_000_000
    assert abs(database_now_us(database, clock) - reached_at) < 2_000_000


def test_one_row_per_level_and_user(repository, database):
    for score in (5, 3, 8, 8, 1):
        repository.record_score(1, 7, score)
    repository.record_score(2, 7, 4)
    repository.record_score(1, 8, 4)
    assert query(database, "SELECT level_id, user_id, score FROM best_scores ORDER BY 1, 2") == [
        (1, 7, 8),
        (1, 8, 4),
        (2, 7, 4),
    ]


def test_top_scores_are_highest_first_and_at_most_fifteen(repository):
    for user_id in range(1, 31):
        repository.record_score(9, user_id, (user_id * 37) % 100)
    top = repository.top_scores(9)
    assert len(top) == 15
    assert [entry.score for entry in top] == sorted((e.score for e in top), reverse=True)
    assert top[0] == ScoreEntry(27, 99)


def test_exactly_fifteen_entries_are_all_listed(repository):
    for user_id in range(15):
        repository.record_score(1, user_id, user_id)
    assert [e.user_id for e in repository.top_scores(1)] == list(range(14, -1, -1))


def test_equal_scores_rank_by_who_reached_them_first(repository, clock):
    repository.record_score(1, 30, 50)
    repository.record_score(1, 10, 50)  # same clock reading: still after user 30
    clock.advance(1)
    repository.record_score(1, 20, 50)
    repository.record_score(1, 30, 50)  # equal to its own best: keeps its place
    assert repository.top_scores(1) == [ScoreEntry(30, 50), ScoreEntry(10, 50), ScoreEntry(20, 50)]


def test_raising_a_tied_score_moves_the_user_up(repository, clock):
    repository.record_score(1, 1, 50)
    repository.record_score(1, 2, 50)
    clock.advance(1)
    repository.record_score(1, 2, 51)
    assert repository.top_scores(1) == [ScoreEntry(2, 51), ScoreEntry(1, 50)]


def test_a_clock_that_steps_back_does_not_reorder_ties(repository, clock):
    repository.record_score(1, 1, 50)
    clock.advance(-3600)
    repository.record_score(1, 2, 50)
    assert [e.user_id for e in repository.top_scores(1)] == [1, 2]


def test_an_empty_level_has_no_top_scores(repository):
    repository.record_score(1, 1, 1)
    assert repository.top_scores(2) == []


def test_the_extremes_of_the_number_range_are_stored_exactly(repository):
    repository.record_score(2147483647, 2147483647, 2147483647)
    repository.record_score(2147483647, 0, 0)
    assert repository.top_scores(2147483647) == [
        ScoreEntry(2147483647, 2147483647),
        ScoreEntry(0, 0),
    ]


def test_the_top_scores_query_reads_the_ranking_index_without_sorting(repository, database):
    for user_id in range(2000):  # enough rows for PostgreSQL's planner to prefer the index
        repository.record_score(user_id % 4, user_id, user_id % 97)
    ordered = "ORDER BY score DESC, reached_at, user_id LIMIT 15"
    if database.engine.dialect.name == "sqlite":
        sql = f"EXPLAIN QUERY PLAN SELECT * FROM best_scores WHERE level_id = 1 {ordered}"
        details = " ".join(row[-1] for row in query(database, sql))
        assert "ix_best_scores_ranking" in details
        assert "TEMP B-TREE" not in details
    else:
        with database.unit_of_work() as uow:
            uow.connection.exec_driver_sql("ANALYZE best_scores")
        sql = f"EXPLAIN SELECT user_id, score FROM best_scores WHERE level_id = 1 {ordered}"
        details = " ".join(row[0] for row in query(database, sql))
        assert "ix_best_scores_ranking" in details
        assert "Sort" not in details


def test_a_stored_session_key_replaces_the_users_previous_one(repository, database):
    repository.store_session_key(1, "a" * 64, 1000)
    repository.store_session_key(1, "b" * 64, 2000)
    repository.store_session_key(2, "c" * 64, 3000)
    assert query(database, "SELECT user_id, key_hash, expires_at FROM session_keys ORDER BY 1") == [
        (1, "b" * 64, 2000),
        (2, "c" * 64, 3000),
    ]
    assert repository.find_session_key("a" * 64) is None
    assert repository.find_session_key("b" * 64) == (1, 2000)


def test_a_setting_is_made_once_and_then_kept(repository, database):
    assert repository.setting("session_secret", default=lambda: "first") == "first"
    assert repository.setting("session_secret", default=lambda: "second") == "first"
    assert query(
        database, "SELECT name, value FROM service_settings WHERE name LIKE 'session%'"
    ) == [("session_secret", "first")]


def test_concurrent_writers_and_readers_never_fail_and_lose_no_best_score(repository):
    # Many threads on one database: on a shared-cache one, without serialization, this raises
    # SQLITE_LOCKED ("database table is locked"); on PostgreSQL each thread has a connection.
    errors: list[BaseException] = []

    def player(user_id: int) -> None:
        try:
            for score in range(200):
                repository.record_score(1, user_id, score * 7 % 1000)
                repository.top_scores(1)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=player, args=(user_id,)) for user_id in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    best = max(score * 7 % 1000 for score in range(200))
    assert [entry.score for entry in repository.top_scores(1)] == [best] * 15


def test_expired_stored_keys_are_deleted_a_few_at_a_time_as_keys_are_stored(repository, database):
    for user in range(300):  # expired at 1000 ms
        repository.store_session_key(user, f"{user:064x}", expires_at_ms=1000)
    assert query(database, "SELECT count(*) FROM session_keys") == [(300,)]
    for user in range(1000, 1000 + PURGE_EVERY * 2):  # valid until 10**9 ms; now is 2000 ms
        repository.store_session_key(user, f"{user:064x}", 10**9, now_ms=2000)
    repository.finish_writes()
    # Two purges of at most PURGE_ROWS keys each: every expired key gone, no valid one.
    remaining = query(database, "SELECT count(*), min(expires_at) FROM session_keys")
    assert remaining == [(PURGE_EVERY * 2, 10**9)]


def test_idempotency_keys_past_their_lifetime_are_deleted_and_free_again(
    repository, database, clock
):
    for n in range(PURGE_EVERY):
        assert repository.record_score(1, n, 10, idempotency_key=f"key-{n}") is True
    assert repository.record_score(1, 0, 20, idempotency_key="key-0") is False  # a retry
    assert query(database, "SELECT count(*) FROM idempotency_keys") == [(PURGE_EVERY,)]
    clock.advance(IDEMPOTENCY_KEY_LIFETIME_US / 1_000_000 + 1)
    assert repository.record_score(1, 0, 30, idempotency_key="key-0") is True  # new again
    for n in range(PURGE_EVERY - 1):
        repository.record_score(2, n, 10, idempotency_key=f"other-{n}")
    # The 64th keyed post since the last purge deleted the keys past their lifetime.
    assert query(database, "SELECT count(*) FROM idempotency_keys WHERE level_id = 1") == [(1,)]
