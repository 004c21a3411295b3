"""Scale: the cost of a high score list and of a score as a level grows, and memory per row.

`python -m bench.scale --players N` fills one level of a fresh process's memory database with N
best scores (in bulk, through the repository's table), then prints one JSON object on stdout.
"""

import argparse
import gc
import json
import random
import sys

from bench.inprocess import TOP_QUERY, cost_us, logged_in_client
from bench.servers import rss_bytes
from scoresvc.startup import migrate
from scoresvc.storage.database import open_database
from scoresvc.storage.repository import Repository
from scoresvc.storage.schema import best_scores

LEVEL = 1
CHUNK = 10_000
KEYED_USERS = 1000  # users who post scores during the measurement (among the level's players)


def fill(engine, players: int) -> None:
    """Give players users a best score on LEVEL: executemany in chunks, one transaction."""
    scores = random.Random(42)
    with engine.begin() as connection:
        for start in range(0, players, CHUNK):
            connection.execute(
                best_scores.insert(),
                [
                    {
                        "level_id": LEVEL,
                        "user_id": user,
                        "score": scores.randrange(1_000_000),
                        "reached_at": user,
                    }
                    for user in range(start, min(start + CHUNK, players))
                ],
            )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--players", type=int, required=True)
    parser.add_argument("--iterations", type=int, default=5000)
    options = parser.parse_args()
    iterations = options.iterations

    database = open_database("sqlite://")
    migrate(database)  # create_app() serves a database made ready, as startup makes it
    engine = database.engine
    client, keys = logged_in_client(KEYED_USERS, database=database)
    client.get(f"/{LEVEL}/highscorelist")
    gc.collect()
    before = rss_bytes()
    fill(engine, options.players)
    gc.collect()
    after = rss_bytes()

    # The same query without any cache in front of it: what a list costs when a write changed it.
    uncached = Repository(database, top_scores_cache_levels=0)
    raw = engine.raw_connection()
    driver_cursor = raw.cursor()
    users = min(KEYED_USERS, options.players)

    def post_score(i: int) -> None:
        # Rising scores: each one improves a best and enters the top 15 (a real write).
        client.post(f"/{LEVEL}/score", f"sessionkey={keys[i % users]}", str(2_000_000 + i).encode())

    figures = {
        "players": options.players,
        "rss_growth_bytes": after - before,
        "bytes_per_row": (after - before) / options.players,
        "highscorelist_us": cost_us(lambda i: client.get(f"/{LEVEL}/highscorelist"), iterations),
        "top_scores_query_us": cost_us(lambda i: uncached.top_scores(LEVEL), iterations),
        "raw_query_us": cost_us(
            lambda i: driver_cursor.execute(TOP_QUERY, (LEVEL,)).fetchall(), iterations
        ),
        # Deferred score writes are counted: the health check runs what is still queued.
        "score_us": cost_us(post_score, iterations, finish=lambda: client.get("/healthz")),
    }
    assert client.status == "200 OK", client.status
    json.dump(figures, sys.stdout)


if __name__ == "__main__":
    main()
