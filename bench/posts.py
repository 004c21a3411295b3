"""Score POSTs on large levels: through the app in process, and the upsert alone beside the same
upsert on a table without the ranking structure (what a post wrote before it)."""

import random
import statistics
import uuid
from collections.abc import Callable

from sqlalchemy import Column, MetaData, Table, bindparam, select

from bench.fill import Level, Place
from bench.inprocess import Client
from bench.timing import RisingScores, alternate, summary, timed_sample
from scoresvc import create_app
from scoresvc.leaderboards import MAX_SCORE
from scoresvc.logconfig import configure_logging
from scoresvc.settings import Settings
from scoresvc.storage.database import Database
from scoresvc.storage.schema import best_scores
from scoresvc.storage.statements import best_score_upsert

POST_USERS = 1000  # users whose rising scores the POSTs rotate through, on each level
POST_HEADROOM = 1_000_000  # a posting user's best is at most MAX_SCORE - this


def posters(database: Database, level: Level, places: dict[str, Place]) -> list[tuple[int, int]]:
    """POST_USERS players spread over the level, with their best scores now.

    Those whose places the calls use are left out, and so are those too near the highest score
    a post may give for their scores to rise through a whole measurement.
    """
    taken = {place.user_id for place in places.values()}
    candidates = [user for user in range(1, level.players + 1) if user not in taken]
    chosen = random.Random(level.level_id).sample(candidates, min(POST_USERS, len(candidates)))
    best = database.compile(
        select(best_scores.c.score).where(
            best_scores.c.level_id == bindparam("level_id"),
            best_scores.c.user_id == bindparam("user_id"),
        )
    )
    with database.read() as cursor:
        scores = [
            (user, best.execute(cursor, level_id=level.level_id, user_id=user).fetchone()[0])
            for user in chosen
        ]
    return [(user, score) for user, score in scores if score <= MAX_SCORE - POST_HEADROOM]


def measure_posts(
    database: Database, small: Level, large: Level, places: dict[Level, dict], rounds: int
) -> dict:
    """Score POSTs through the app on the small and the large level, alternating; µs each.

    Each POST raises one of POST_USERS players' best a little (a real write that moves the
    score up the ordering), rotating through them.
    """
    configure_logging(None)
    # Settings as the server reads them; a post limit, where there is one, turned off.
    environ = {
        "SCORESVC_SECRET": uuid.uuid4().hex,
        "SCORESVC_SESSION_TTL": "86400",
        "SCORESVC_POST_LIMIT": "0",
    }
    app = create_app(Settings.from_env(environ), database=database)
    client = Client(app)
    failures = 0

    def poster(level: Level) -> Callable[[], None]:
        users = posters(database, level, places[level])
        keys = {user: client.get(f"/{user}/login").decode() for user, _ in users}
        rising = RisingScores(users)

        def post() -> None:
            nonlocal failures
            user, score = rising()
            client.post(f"/{level.level_id}/score", f"sessionkey={keys[user]}", str(score).encode())
            if client.status != "200 OK":
                failures += 1

        return post

    posts = {str(level.players): poster(level) for level in (small, large)}
    # Deferred writes (a memory database) are counted: the health check runs what is queued.
    samples = alternate(
        {
            name: lambda post=post: timed_sample(post, lambda: client.get("/healthz"))
            for name, post in posts.items()
        },
        rounds,
    )
    return summary(samples, str(large.players), str(small.players)) | {"failures": failures}


def measure_upserts(
    database: Database, small: Level, large: Level, places: dict[Level, dict], rounds: int
) -> dict:
    """The database's part of a POST, now and as it was: the service's own upsert
    (statements.best_score_upsert) on best_scores, and on a copy of the two levels in a table
    as migration 0002 left best_scores (its index, no more).

    Each upsert commits on its own, as a POST's does on a file or PostgreSQL. The copy is
    dropped afterwards (the storage figures were taken before it was made).
    """
    dialect = database.engine.dialect.name
    plain = _plain_scores_table()
    with database.unit_of_work() as uow:
        uow.connection.exec_driver_sql(
            "CREATE TABLE bench_plain_scores (level_id INTEGER NOT NULL, "
            "user_id INTEGER NOT NULL, score INTEGER NOT NULL, reached_at BIGINT NOT NULL, "
            "PRIMARY KEY (level_id, user_id))" + (" WITHOUT ROWID" if dialect == "sqlite" else "")
        )
        uow.connection.exec_driver_sql(
            "CREATE INDEX bench_plain_scores_ranking ON bench_plain_scores "
            "(level_id, score DESC, reached_at, user_id)"
        )
        uow.connection.exec_driver_sql(
            "INSERT INTO bench_plain_scores SELECT level_id, user_id, score, reached_at "
            f"FROM best_scores WHERE level_id IN ({small.level_id}, {large.level_id})"
        )
    try:
        samplers = {}
        for level in (small, large):
            users = posters(database, level, places[level])
            for name, table in (("now", best_scores), ("before", plain)):
                statement = database.compile(
                    best_score_upsert(database.engine.dialect, table=table)
                )
                rising = RisingScores(users)

                def upsert(statement=statement, rising=rising, level_id=level.level_id) -> None:
                    user, score = rising()
                    with database.unit_of_work(one_statement=True) as uow:
                        uow.execute(statement, level_id=level_id, user_id=user, score=score)

                samplers[f"{name}-{level.players}"] = lambda call=upsert: timed_sample(
                    call, lambda: None
                )
        samples = alternate(samplers, rounds)
    finally:
        with database.unit_of_work() as uow:
            uow.connection.exec_driver_sql("DROP TABLE bench_plain_scores")
    figures = {
        "us": {name: statistics.median(values) for name, values in samples.items()},
        "samples": samples,
    }
    for level in (small, large):
        pairs = zip(
            samples[f"now-{level.players}"], samples[f"before-{level.players}"], strict=True
        )
        figures[f"ratio-{level.players}"] = statistics.median(now / before for now, before in pairs)
    return figures


def _plain_scores_table() -> Table:
    return Table(
        "bench_plain_scores",
        MetaData(),
        *(
            Column(column.name, column.type, primary_key=column.primary_key)
            for column in best_scores.columns
        ),
    )
