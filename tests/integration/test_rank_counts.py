"""rank_counts, the tree of counts behind ranks: kept by the database for every writer."""

import random
import threading

from alembic import command
from sqlalchemy import text

from scoresvc.storage.database import open_database
from scoresvc.storage.migrate import alembic_config, upgrade_to_head
from scoresvc.storage.repository import Repository
from scoresvc.storage.schema import RANK_COUNT_SHIFTS
from tests.integration.conftest import query


def recounted(database) -> list[tuple]:
    """rank_counts as it should be, counted afresh from best_scores."""
    groups = " UNION ALL ".join(
        f"SELECT level_id, {depth} AS depth, score >> {shift} AS prefix, count(*) AS players "
        f"FROM best_scores GROUP BY level_id, score >> {shift}"
        for depth, shift in enumerate(RANK_COUNT_SHIFTS, start=1)
    )
    return query(database, f"SELECT * FROM ({groups}) AS counts ORDER BY 1, 2, 3")


def stored_counts(database) -> list[tuple]:
    return query(
        database, "SELECT level_id, depth, prefix, players FROM rank_counts ORDER BY 1, 2, 3"
    )


def ordering(database, level_id: int) -> list[int]:
    """The level's user ids in rank order, by a plain sort."""
    rows = query(
        database,
        "SELECT user_id FROM best_scores WHERE level_id = :level "
        "ORDER BY score DESC, reached_at, user_id",
        level=level_id,
    )
    return [user_id for (user_id,) in rows]


def assert_ranks_match_a_plain_sort(database, repository, level_id: int) -> None:
    users = ordering(database, level_id)
    ranks = [repository.rank(level_id, user_id) for user_id in users]
    assert [(found.rank, found.players) for found in ranks] == [
        (place, len(users)) for place in range(1, len(users) + 1)
    ]


def scores_across_the_tree(rng: random.Random) -> int:
    """A score near a node boundary at some depth, or anywhere."""
    shift = rng.choice(RANK_COUNT_SHIFTS)
    boundary = rng.randrange(2**31 >> shift) << shift
    return min(2**31 - 1, max(0, boundary + rng.choice((-1, 0, 1, rng.randrange(1 << 30)))))


def test_a_database_upgraded_with_scores_in_it_ranks_every_score_it_held(database):
    with database.unit_of_work() as uow:
        command.downgrade(alembic_config(uow.connection), "0002")
    rng = random.Random(3)
    rows = [
        {"user": user, "score": scores_across_the_tree(rng), "at": rng.randrange(50)}
        for user in range(400)
    ]
    with database.unit_of_work() as uow:
        uow.connection.execute(
            text("INSERT INTO best_scores VALUES (7, :user, :score, :at)"),
            rows,
        )
    upgrade_to_head(database)
    assert stored_counts(database) == recounted(database)
    assert_ranks_match_a_plain_sort(database, Repository(database), 7)


def test_rows_written_by_hand_are_counted(database, repository):
    for user, score in enumerate((5, 300, 70_000, 2**31 - 1, 0, 300)):
        repository.record_score(1, user, score)
    with database.unit_of_work() as uow:
        uow.connection.execute(text("INSERT INTO best_scores VALUES (1, 50, 16777216, 1)"))
        uow.connection.execute(text("UPDATE best_scores SET score = 65535 WHERE user_id = 0"))
        uow.connection.execute(text("UPDATE best_scores SET level_id = 2 WHERE user_id = 1"))
        uow.connection.execute(text("DELETE FROM best_scores WHERE user_id = 3"))
    assert stored_counts(database) == recounted(database)
    assert_ranks_match_a_plain_sort(database, repository, 1)
    assert repository.rank(2, 1).rank == 1


def test_a_node_left_empty_is_removed(database, repository):
    repository.record_score(1, 1, 10)
    repository.record_score(1, 1, 2**30)
    repository.top_scores(1)  # the in-process database runs its deferred writes first
    assert query(database, "SELECT count(*) FROM rank_counts WHERE players = 0") == [(0,)]
    assert len(stored_counts(database)) == len(RANK_COUNT_SHIFTS)


def test_concurrent_writers_on_one_level_keep_the_counts_exact(shared_database_url):
    # Writers on one level share the nodes near the root: on PostgreSQL each write locks the
    # ones it changes, and two writes taking them in different orders would deadlock.
    database = open_database(shared_database_url)
    upgrade_to_head(database)
    repository = Repository(database)
    errors: list[BaseException] = []

    def post(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(150):
                repository.record_score(1, rng.randrange(40), scores_across_the_tree(rng))
        except BaseException as error:  # reported below, on the test's thread
            errors.append(error)

    threads = [threading.Thread(target=post, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert stored_counts(database) == recounted(database)
    assert_ranks_match_a_plain_sort(database, repository, 1)
    database.close()
