"""tie_counts, the trees that rank players tied on one score: kept by the database for every
writer, and read by every statement that places a player among the tied."""

import random
import threading

from alembic import command
from sqlalchemy import text

from scoresvc.storage.database import open_database
from scoresvc.storage.migrate import alembic_config, upgrade_to_head
from scoresvc.storage.moderation import Moderation
from scoresvc.storage.repository import RankedEntry, Repository
from scoresvc.storage.schema import CROWDED_SCORE, TIE_COUNT_SHIFTS
from tests.integration.conftest import query
from tests.integration.test_rank_counts import ordering, recounted, stored_counts

LEVEL = 3
# Times as the service writes them (µs since the epoch), spread over a few days.
EPOCH = 1_790_000_000_000_000


def recounted_ties(database) -> list[tuple]:
    """tie_counts as it should be, counted afresh from best_scores, for the scores that have a
    tree (a score gets one at CROWDED_SCORE players and keeps it while anyone holds it)."""
    rooted = "SELECT level_id, score FROM tie_counts WHERE depth = 0"
    groups = [
        "SELECT b.level_id, b.score, 0 AS depth, 0 AS prefix, count(*) AS players "
        f"FROM best_scores AS b JOIN ({rooted}) AS r "
        "ON r.level_id = b.level_id AND r.score = b.score GROUP BY b.level_id, b.score"
    ] + [
        f"SELECT b.level_id, b.score, {depth}, b.reached_at >> {shift}, count(*) "
        f"FROM best_scores AS b JOIN ({rooted}) AS r "
        "ON r.level_id = b.level_id AND r.score = b.score "
        f"GROUP BY b.level_id, b.score, b.reached_at >> {shift}"
        for depth, shift in enumerate(TIE_COUNT_SHIFTS, start=1)
    ]
    return query(database, f"SELECT * FROM ({' UNION ALL '.join(groups)}) AS c ORDER BY 1, 2, 3, 4")


def stored_ties(database) -> list[tuple]:
    return query(
        database,
        "SELECT level_id, score, depth, prefix, players FROM tie_counts ORDER BY 1, 2, 3, 4",
    )


def assert_counts_exact(database) -> None:
    """Both trees as a recount has them, and every score without a tie tree uncrowded."""
    assert stored_counts(database) == recounted(database)
    assert stored_ties(database) == recounted_ties(database)
    crowded_without_a_tree = query(
        database,
        "SELECT level_id, score FROM best_scores AS b GROUP BY level_id, score "
        f"HAVING count(*) >= {CROWDED_SCORE} AND NOT EXISTS (SELECT 1 FROM tie_counts AS t "
        "WHERE t.level_id = b.level_id AND t.score = b.score AND t.depth = 0)",
    )
    assert crowded_without_a_tree == []
    assert query(database, "SELECT count(*) FROM tie_counts WHERE players <= 0") == [(0,)]


def assert_places_match_a_plain_sort(repository: Repository, users: list[int]) -> None:
    """Every rank, every window from a rank, windows around a few players and a few friends'
    lists, against the level's order by a plain sort (users)."""
    places = {user: place for place, user in enumerate(users, start=1)}
    for user in users:
        found = repository.rank(LEVEL, user)
        assert (found.rank, found.players) == (places[user], len(users)), user
    for first in range(1, len(users) + 2):
        window = repository.window_from(LEVEL, first)
        expected = [
            (place, user)
            for place, user in enumerate(users, start=1)
            if first <= place < first + 15
        ]
        assert [(entry.rank, entry.user_id) for entry in window.entries] == expected, first
    rng = random.Random(len(users))
    for user in rng.sample(users, min(len(users), 25)):
        around = repository.window_around(LEVEL, user)
        first = max(1, min(places[user] - 7, len(users) - 14))
        assert [entry.rank for entry in around.entries][:1] == [first]
        assert [entry.user_id for entry in around.entries] == users[first - 1 : first + 14]
    friends = rng.sample(users, min(len(users), 30))
    listed = repository.entries_of_users(LEVEL, friends).entries
    assert [(entry.rank, entry.user_id) for entry in listed] == sorted(
        (places[user], user) for user in friends
    )


def write(database, sql: str, rows: list[dict] | dict | None = None) -> None:
    with database.unit_of_work() as uow:
        uow.connection.execute(text(sql), rows if rows is not None else {})


def test_a_crowded_score_gets_a_tree_and_ranks_by_when_each_player_reached_it(database, repository):
    # Players reach one score out of user order; then the tree is read at every place.
    rng = random.Random(1)
    users = rng.sample(range(1, 10_000), CROWDED_SCORE * 2)
    rows = [{"level": LEVEL, "user": user, "at": EPOCH + rng.randrange(10**9)} for user in users]
    for row in rows[: CROWDED_SCORE - 1]:
        write(database, "INSERT INTO best_scores VALUES (:level, :user, 500, :at)", row)
    assert stored_ties(database) == []  # uncrowded: no tree
    for row in rows[CROWDED_SCORE - 1 :]:
        write(database, "INSERT INTO best_scores VALUES (:level, :user, 500, :at)", row)
    assert_counts_exact(database)
    assert query(database, "SELECT players FROM tie_counts WHERE depth = 0") == [(len(users),)]
    assert_places_match_a_plain_sort(repository, ordering(database, LEVEL))


def test_players_who_reached_a_crowded_score_in_the_same_microsecond_rank_by_user_id(
    database, repository
):
    rows = [
        {"user": user, "at": EPOCH + (user % 7) * 256 + (user % 3)}
        for user in range(CROWDED_SCORE * 3, 0, -1)
    ]
    write(database, f"INSERT INTO best_scores VALUES ({LEVEL}, :user, 9, :at)", rows)
    assert_counts_exact(database)
    assert_places_match_a_plain_sort(repository, ordering(database, LEVEL))


def test_every_kind_of_write_keeps_the_trees_exact(database, repository):
    # Scores from a handful, so that several are crowded; posts that keep the best, rows
    # moved, re-timed and deleted by hand, bans and unbans, and a score emptied and refilled.
    rng = random.Random(2)
    scores = (100, 200, 300, 2**31 - 1, 0)
    users = list(range(1, 3 * CROWDED_SCORE))
    for user in users:
        repository.record_score(LEVEL, user, rng.choice(scores[:3]))
    repository.finish_writes()
    assert_counts_exact(database)
    for _ in range(60):
        user = rng.choice(users)
        repository.record_score(LEVEL, user, rng.choice(scores))
    repository.finish_writes()
    assert_counts_exact(database)
    # A `latest` post of the same score: the same player, reached again.
    write(
        database,
        "UPDATE best_scores SET reached_at = reached_at + :later WHERE level_id = :level "
        "AND user_id % 5 = 0",
        {"later": 3 * 2**24 + 17, "level": LEVEL},
    )
    write(
        database,
        "UPDATE best_scores SET reached_at = :at WHERE level_id = :level AND user_id = 7",
        {"at": EPOCH - 1, "level": LEVEL},
    )
    assert_counts_exact(database)
    moderation = Moderation(database, repository.levels)
    banned = rng.sample(users, 40)
    for user in banned:
        moderation.ban(user)
    assert_counts_exact(database)
    assert_places_match_a_plain_sort(repository, ordering(database, LEVEL))
    for user in banned:
        moderation.unban(user)
    assert_counts_exact(database)
    write(database, "UPDATE best_scores SET level_id = :other WHERE user_id < 20", {"other": 4})
    write(database, "DELETE FROM best_scores WHERE user_id % 3 = 0 AND level_id = :l", {"l": LEVEL})
    assert_counts_exact(database)
    assert_places_match_a_plain_sort(repository, ordering(database, LEVEL))
    write(database, "DELETE FROM best_scores WHERE level_id = :level", {"level": LEVEL})
    assert query(database, "SELECT count(*) FROM tie_counts WHERE level_id = :l", l=LEVEL) == [(0,)]
    for user in users:
        repository.record_score(LEVEL, user, 77)
    repository.finish_writes()
    assert_counts_exact(database)
    assert_places_match_a_plain_sort(repository, ordering(database, LEVEL))


def test_a_score_keeps_its_tree_until_its_last_player_leaves(database, repository):
    for user in range(CROWDED_SCORE + 1):
        repository.record_score(LEVEL, user, 50)
    for user in range(CROWDED_SCORE - 2):
        repository.record_score(LEVEL, user, 60)  # better: they leave 50
    repository.finish_writes()
    assert query(database, "SELECT score, players FROM tie_counts WHERE depth = 0") == [(50, 3)]
    assert_counts_exact(database)
    assert_places_match_a_plain_sort(repository, ordering(database, LEVEL))
    for user in range(CROWDED_SCORE - 2, CROWDED_SCORE + 1):
        repository.record_score(LEVEL, user, 60)
    repository.finish_writes()
    # 50 is empty and its tree gone; 60 just became crowded.
    assert query(database, "SELECT score, players FROM tie_counts WHERE depth = 0") == [
        (60, CROWDED_SCORE + 1)
    ]
    assert_counts_exact(database)


def test_a_database_upgraded_with_crowded_scores_gets_their_trees(database):
    with database.unit_of_work() as uow:
        command.downgrade(alembic_config(uow.connection), "0005")
    rng = random.Random(4)
    rows = [
        {"user": user, "score": rng.choice((1, 2, 3, 4000)), "at": EPOCH + rng.randrange(10**8)}
        for user in range(5 * CROWDED_SCORE)
    ]
    write(database, f"INSERT INTO best_scores VALUES ({LEVEL}, :user, :score, :at)", rows)
    upgrade_to_head(database)
    assert len(query(database, "SELECT score FROM tie_counts WHERE depth = 0")) >= 3
    assert_counts_exact(database)
    assert_places_match_a_plain_sort(Repository(database), ordering(database, LEVEL))


def test_concurrent_writers_to_crowded_scores_keep_the_trees_exact(shared_database_url):
    # Writers that make one score crowded at once race to build its tree, and every later
    # write changes the nodes near its root: neither may fail, deadlock or count twice.
    database = open_database(shared_database_url)
    upgrade_to_head(database)
    repository = Repository(database)
    errors: list[BaseException] = []

    def post(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for n in range(120):
                repository.record_score(LEVEL, seed * 1000 + n % 60, rng.choice((10, 11, 12)))
        except BaseException as error:  # reported below, on the test's thread
            errors.append(error)

    threads = [threading.Thread(target=post, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    repository.finish_writes()
    assert errors == []
    assert query(database, "SELECT count(*) FROM tie_counts WHERE depth = 0") != [(0,)]
    assert_counts_exact(database)
    assert_places_match_a_plain_sort(repository, ordering(database, LEVEL))
    database.close()


def test_places_among_the_tied_are_those_of_a_plain_sort_at_every_offset(database, repository):
    # Times straddling node boundaries at every depth of the tie tree.
    rng = random.Random(5)
    rows = []
    for user in range(1, 4 * CROWDED_SCORE):
        shift = rng.choice(TIE_COUNT_SHIFTS)
        boundary = (EPOCH >> shift << shift) + (rng.randrange(4) << shift)
        rows.append({"user": user, "at": boundary + rng.choice((-1, 0, 1))})
    write(database, f"INSERT INTO best_scores VALUES ({LEVEL}, :user, 1234, :at)", rows)
    write(database, f"INSERT INTO best_scores VALUES ({LEVEL}, 9000, 1235, {EPOCH})")
    write(database, f"INSERT INTO best_scores VALUES ({LEVEL}, 9001, 1233, {EPOCH})")
    assert_counts_exact(database)
    users = ordering(database, LEVEL)
    assert_places_match_a_plain_sort(repository, users)
    window = repository.window_from(LEVEL, len(users) - 3)
    assert window.entries[-1] == RankedEntry(len(users), 9001, 1233)
