"""Leaderboards' cost, in process: a post to a level with rules against one to a default level,
and starting a season on a small level against a large one.

`python -m bench.leaderboards [--players 1000,1000000] [--rounds 7]` prints a JSON object and a
short table. Each figure is the median of alternating rounds, so that both sides of a ratio see
the same machine. The targets (the SPEC's Cost rule): a post with rules at most 1.1 times a
default post; starting a season costs the same at every size.
"""

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable

from scoresvc.startup import migrate
from scoresvc.storage.database import Database, open_database
from scoresvc.storage.levels import Levels
from scoresvc.storage.moderation import Moderation
from scoresvc.storage.repository import Repository

POSTS_PER_ROUND = 3000
SEASON_STARTS_PER_ROUND = 50
DEFAULT_LEVEL, RULES_LEVEL = 1, 2
# A level with the rules a post pays for away from the defaults: lowest first, bounds. Both
# levels get a new best with every post (rising scores on one, falling on the other), so that
# both do the same work in the database.
RULES = {"order": "asc", "min_score": 1, "max_score": 10**9}
FIRST_SCORE = 10**8


def alternate(samplers: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each sampler's figures, the samplers taking turns round after round."""
    samples: dict[str, list[float]] = {name: [] for name in samplers}
    for _ in range(rounds):
        for name, sample in samplers.items():
            samples[name].append(sample())
    return samples


def posts(database: Database, rounds: int) -> dict:
    """µs per post to a default level and to a level with rules, and their ratio."""
    migrate(database)
    repository = Repository(database)
    Moderation(database, repository.levels).change_rules(RULES_LEVEL, RULES)
    counter = iter(range(1, 10**8))

    def sampler(level_id: int, direction: int) -> Callable[[], float]:
        def sample() -> float:
            started = time.perf_counter()
            for _ in range(POSTS_PER_ROUND):
                n = next(counter)
                repository.record_score(level_id, n % 1000, FIRST_SCORE + direction * n)
            repository.finish_writes()  # a deferred write's cost is the post's too
            return (time.perf_counter() - started) / POSTS_PER_ROUND * 1e6

        return sample

    samplers = {"default": sampler(DEFAULT_LEVEL, 1), "rules": sampler(RULES_LEVEL, -1)}
    samples = alternate(samplers, rounds)
    ratios = [r / d for r, d in zip(samples["rules"], samples["default"], strict=True)]
    return {
        "us": {name: statistics.median(values) for name, values in samples.items()},
        "ratio": statistics.median(ratios),
    }


def fill(database: Database, level_id: int, players: int) -> None:
    """players scores on the level's current board, in one transaction."""
    with database.unit_of_work() as uow:
        uow.connection.exec_driver_sql(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < "
            f"{players}) INSERT INTO best_scores (level_id, user_id, score, reached_at) "
            f"SELECT {level_id}, x, (x * 7919) % 1000003, x FROM n"
        )


def season_starts(database: Database, sizes: list[int], rounds: int) -> dict:
    """µs per season started on levels of each size (each start moves on to an empty board,
    so the size is that of the level's first season: what a start could have to copy)."""
    moderation = Moderation(database, Levels(database))
    levels = {size: 100 + n for n, size in enumerate(sizes)}
    for size, level_id in levels.items():
        fill(database, level_id, size)

    def sampler(level_id: int) -> Callable[[], float]:
        def sample() -> float:
            started = time.perf_counter()
            for _ in range(SEASON_STARTS_PER_ROUND):
                moderation.start_season(level_id)
            return (time.perf_counter() - started) / SEASON_STARTS_PER_ROUND * 1e6

        return sample

    samples = alternate({str(size): sampler(level) for size, level in levels.items()}, rounds)
    small, large = str(sizes[0]), str(sizes[-1])
    ratios = [big / few for big, few in zip(samples[large], samples[small], strict=True)]
    return {
        "us": {name: statistics.median(values) for name, values in samples.items()},
        "ratio": statistics.median(ratios),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.leaderboards", description=__doc__)
    parser.add_argument("--players", default="1000,1000000", help="level sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args(argv)
    sizes = [int(size) for size in options.players.split(",")]
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for kind, url in (("memory", "sqlite://"), ("file", f"sqlite:///{scratch}/scores.db")):
            database = open_database(url)
            try:
                results[kind] = {
                    "posts": posts(database, options.rounds),
                    "season_starts": season_starts(database, sizes, options.rounds),
                }
            finally:
                database.close()
    print(json.dumps(results, indent=2))
    print(
        "\n| database | post, default (µs) | post with rules (µs) | ratio (≤ 1.1) |"
        " season start ratio, largest / smallest (≈ 1) |"
    )
    print("|---|---|---|---|---|")
    for kind, figures in results.items():
        post = figures["posts"]
        print(
            f"| {kind} | {post['us']['default']:.1f} | {post['us']['rules']:.1f} | "
            f"{post['ratio']:.2f} | {figures['season_starts']['ratio']:.2f} |"
        )


if __name__ == "__main__":
    main()
