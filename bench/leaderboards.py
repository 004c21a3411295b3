"""Leaderboards' cost, in process: a post to a level with rules against one to a default level,
and starting a season on a small level against a large one.

`python -m bench.leaderboards [--players 1000,1000000] [--rounds 7]` prints a JSON object and a
short table. Each figure is the median of alternating rounds, so that both sides of a ratio see
the same machine. The targets (the SPEC's Cost rule): a post with rules at most 1.1 times a
default post; starting a season costs the same at every size.
"""

import argparse
import json
import tempfile
import time
from collections.abc import Callable

from bench import fill
from bench.timing import alternate, summary
from scoresvc.startup import migrate
from scoresvc.storage.database import Database, open_database
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
POST_BOUND = 1.1  # a post with rules / a default post
SEASON_BOUND = 2.0  # a season start on the largest level / on the smallest


def posts(database: Database, rounds: int) -> dict:
    """µs per post to a default level and to a level with rules, and their ratio."""
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
    return summary(alternate(samplers, rounds), "rules", "default")


def season_starts(database: Database, levels: dict[int, int], rounds: int) -> dict:
    """µs per season started on levels of each size ({players: level id}, each filled on its
    current season). Each start moves on to an empty board, so the size is that of the
    season the level began with: what a start could have to copy."""
    moderation = Moderation(database, Repository(database).levels)

    def sampler(level_id: int) -> Callable[[], float]:
        def sample() -> float:
            started = time.perf_counter()
            for _ in range(SEASON_STARTS_PER_ROUND):
                moderation.start_season(level_id)
            return (time.perf_counter() - started) / SEASON_STARTS_PER_ROUND * 1e6

        return sample

    sizes = sorted(levels)
    samples = alternate({str(size): sampler(levels[size]) for size in sizes}, rounds)
    return summary(samples, str(sizes[-1]), str(sizes[0]))


def measure(database: Database, levels: dict[int, int], rounds: int) -> dict:
    """posts(), and season_starts() where there are levels of two sizes or more."""
    figures = {"posts": posts(database, rounds)}
    if len(levels) > 1:
        figures["season_starts"] = season_starts(database, levels, rounds)
    return figures


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
                migrate(database)
                levels = {size: 100 + n for n, size in enumerate(sizes)}
                for size, level_id in levels.items():
                    fill.fill(database, level_id, size)
                results[kind] = measure(database, levels, options.rounds)
            finally:
                database.close()
    print(json.dumps(results, indent=2))
    for kind, figures in results.items():
        print(
            f"{kind}: post with rules / default {figures['posts']['ratio']:.2f} "
            f"(≤ {POST_BOUND:g}); season start, largest / smallest "
            f"{figures['season_starts']['ratio']:.2f} (≤ {SEASON_BOUND:g})"
        )


if __name__ == "__main__":
    main()
