"""The players' view at scale: rank, around, from and users on levels of 1,000 to 1,000,000
players, on every kind of board (bench/fill.py: highest first, dense, lowest first, a past
season, players tied on one score).

SPEC.md's Cost rules (Players' view; Leaderboards): at 1,000,000 players, rank, around, from and
users at any place of the ordering (the last included) cost at most twice what they cost at
1,000, in both orders and on past seasons, and so does a rank among 100,000 players tied on one
score; a score post costs what it did; a post to a level with rules at most 1.1 times one to a
default level; starting a season the same at 1,000 and 1,000,000 players; at most 100 bytes per
stored best score.

measure() (the suite's part, `python -m bench --ranks` alone) fills, for each database (a SQLite
file, a SQLite memory database, PostgreSQL), one level per size and board, in a child process
(`python -m bench.ranks --database URL`, which prints one JSON object) that then measures what
the database takes, the repository's own calls at the first, middle and last place in rounds
that take every level in turn (each figure the median of its rounds, each ratio the median of
its per-round ratios), score POSTs (bench/posts.py) and the leaderboards' posts and season
starts (bench/leaderboards.py). The parent then measures rank, around and from over HTTP through
a scoresvc server on the file and on PostgreSQL.
"""

import argparse
import gc
import math
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bench import fill, leaderboards, postgres, posts
from bench.fill import BOARDS, Level, Place
from bench.load import Wrk
from bench.servers import Server, print_json, rss_bytes, run_json_child, tree_rss_bytes
from bench.timing import time_call
from scoresvc.startup import migrate
from scoresvc.storage.database import open_database
from scoresvc.storage.repository import TOP_SCORES_LIMIT, Repository

SIZES = (1_000, 100_000, 1_000_000)  # players on a level
PLACES = ("first", "middle", "last")
OPERATIONS = ("rank", "around", "from", "users")
HTTP_OPERATIONS = ("rank", "around", "from")
DATABASES = ("file", "memory", "postgresql")
DESCRIPTIONS = {
    "file": "SQLite file (WAL)",
    "memory": "SQLite in memory (in process only)",
    "postgresql": "PostgreSQL",
}
LABELS = {"file": "SQLite file", "memory": "SQLite memory", "postgresql": "PostgreSQL"}
COST_BOUND = 2.0  # the rule: cost at 1M players / cost at 1k
POST_BOUND = 1.2  # a post costs what it did: now / without the ranking structure
BYTES_BOUND = 100  # per stored best score, for the whole service
FRIENDS = 10  # users asked for in one `users` call
ROUNDS = 5
HTTP_ROUNDS = 2
HTTP_SECONDS = 1
HTTP_CONNECTIONS = 1  # µs per request, none queued behind another


def friends(level: Level, place: Place) -> list[int]:
    """The place's user and FRIENDS - 1 others spread over the level's user ids."""
    others = [1 + n * (level.players - 1) // (FRIENDS - 2) for n in range(FRIENDS - 1)]
    return list(dict.fromkeys([place.user_id, *others]))[:FRIENDS]


def calls(repository: Repository, level: Level, place: Place) -> dict[str, Callable[[], object]]:
    """Each operation at the place, as the repository answers it."""
    level_id, season = level.level_id, level.season
    users = friends(level, place)
    return {
        "rank": lambda: repository.rank(level_id, place.user_id, season),
        "around": lambda: repository.window_around(level_id, place.user_id, season),
        "from": lambda: repository.window_from(level_id, place.page_from, season),
        "users": lambda: repository.entries_of_users(level_id, users, season),
    }


def check_answers(repository: Repository, level: Level, places: dict[str, Place]) -> list[str]:
    """What the repository answers at each place that the table's own ordering contradicts
    (or the error it raises)."""
    problems = []
    for name, place in places.items():
        where = f"level of {level.players:,} ({level.board}), the {name} place"
        try:
            problems += _wrong_answers(repository, level, place, name)
        except Exception as error:  # the tree measured may be half-way through a change
            problems.append(f"{where}: {type(error).__name__}: {str(error)[:120]}")
    return problems


def _wrong_answers(repository: Repository, level: Level, place: Place, name: str) -> list[str]:
    problems = []
    season = level.season
    found = repository.rank(level.level_id, place.user_id, season)
    if found is None or found.rank != place.rank or found.players != level.players:
        problems.append(f"rank of the {name} user is {found}, not {place.rank}")
    around = repository.window_around(level.level_id, place.user_id, season)
    if around is None or place.user_id not in [entry.user_id for entry in around.entries]:
        problems.append(f"around the {name} user leaves the user out")
    page = repository.window_from(level.level_id, place.page_from, season).entries
    expected = min(TOP_SCORES_LIMIT, level.players - place.page_from + 1)
    if len(page) != expected or (page and page[0].rank != place.page_from):
        problems.append(f"from={place.page_from} gives {len(page)} entries")
    elif name != "middle" and page[0 if name == "first" else -1].user_id != place.user_id:
        problems.append(f"from={place.page_from} misses the {name} user")
    users = repository.entries_of_users(level.level_id, friends(level, place), season).entries
    mine = [entry.rank for entry in users if entry.user_id == place.user_id]
    if mine != [place.rank]:
        problems.append(f"users= gives the {name} user the ranks {mine}, not {place.rank}")
    return problems


def measure_calls(
    repository: Repository, all_places: dict[Level, dict[str, Place]], rounds: int
) -> list[dict]:
    """Every (level, place, operation), each round taking them all in turn; µs per call.

    The sizes of one board, place and operation are timed one after another, so that what the
    machine's other work does to a round's figures it does to the ratio's both terms.
    """
    samples: dict[tuple, list[float]] = {}
    failed: dict[tuple, str] = {}
    for level, places in all_places.items():  # a first pass, for caches to warm
        for place_name, place in places.items():
            for operation, call in calls(repository, level, place).items():
                try:
                    call()
                except Exception as error:  # not timed, and said in the results
                    failed[(level, place_name, operation)] = f"{type(error).__name__}: {error}"
    boards = list(dict.fromkeys(level.board for level in all_places))
    for _ in range(rounds):
        for board in boards:
            same = [level for level in all_places if level.board == board]
            for place_name in PLACES:
                for operation in OPERATIONS:
                    for level in same:
                        key = (level, place_name, operation)
                        if key in failed:
                            continue
                        call = calls(repository, level, all_places[level][place_name])[operation]
                        samples.setdefault(key, []).append(time_call(call))
    return [
        {
            "board": level.board,
            "players": level.players,
            "place": place_name,
            "rank": all_places[level][place_name].rank,
            "operation": operation,
            "us": statistics.median(values),
            "samples": values,
        }
        for (level, place_name, operation), values in samples.items()
    ] + [
        {
            "board": level.board,
            "players": level.players,
            "place": place_name,
            "rank": all_places[level][place_name].rank,
            "operation": operation,
            "error": error[:200],
        }
        for (level, place_name, operation), error in failed.items()
    ]


def cost_ratios(cells: list[dict]) -> list[dict]:
    """Per (board, place, operation): the median over rounds of the largest level's µs / the
    smallest's (each board's own sizes: ties stop at 100,000)."""
    sizes: dict[str, set[int]] = {}
    for cell in cells:
        sizes.setdefault(cell["board"], set()).add(cell["players"])
    by_key = {(c["board"], c["players"], c["place"], c["operation"]): c for c in cells}
    ratios = []
    for (board, players, place, operation), cell in by_key.items():
        small, large = min(sizes[board]), max(sizes[board])
        if players != large or small == large or "error" in cell:
            continue
        if "error" in by_key[(board, small, place, operation)]:
            continue
        base = by_key[(board, small, place, operation)]
        pairs = zip(cell["samples"], base["samples"], strict=True)
        ratios.append(
            {
                "board": board,
                "small": small,
                "large": large,
                "place": place,
                "operation": operation,
                "ratio": statistics.median(value / base_value for value, base_value in pairs),
            }
        )
    return ratios


def run_inprocess(
    url: str, sizes: tuple[int, ...], rounds: int, boards: tuple[str, ...] = BOARDS
) -> dict:
    """The child's work on one database: fill, storage, checks, the calls, the posts."""
    database = open_database(url)
    all_levels = fill.levels(sizes, boards)
    rows = sum(level.players for level in all_levels)
    try:
        migrate(database)
        gc.collect()
        rss_before = rss_bytes()
        fill_seconds = {}
        # The ties first: filled after the million-player levels, on a SQLite file, 100,000
        # players on one score took over ten minutes (3 s on their own); not yet understood.
        for level in sorted(all_levels, key=lambda level: level.board != "tied"):
            started = time.monotonic()
            fill.make(database, level)
            fill_seconds[f"{level.board}-{level.players}"] = time.monotonic() - started
            print(
                f"filled {level}: {fill_seconds[f'{level.board}-{level.players}']:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        gc.collect()
        rss_growth = rss_bytes() - rss_before
        vacuum_seconds = None
        if database.engine.dialect.name == "postgresql":
            started = time.monotonic()
            fill.vacuum_analyze(url)
            vacuum_seconds = time.monotonic() - started
            storage = fill.postgresql_storage(url, rows)
        elif database.file_path is not None:
            with database.read() as cursor:
                # The bulk load's WAL would stay at its size until the last connection closes.
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            storage = fill.sqlite_storage(Path(database.file_path), rows)
        else:
            storage = {"bytes": rss_growth, "rows": rows, "bytes_per_row": rss_growth / rows}
        repository = Repository(database)
        all_places = {level: fill.find_places(database, level) for level in all_levels}
        problems = []
        for level, places in all_places.items():
            problems += check_answers(repository, level, places)
        started = time.monotonic()
        cells = measure_calls(repository, all_places, rounds)
        calls_seconds = time.monotonic() - started
        started = time.monotonic()
        uniform = [level for level in all_levels if level.board == "uniform"]
        post_figures = None
        if len(uniform) > 1:
            small, large = uniform[0], uniform[-1]
            post_figures = posts.measure_posts(database, small, large, all_places, rounds)
            post_figures["upserts"] = posts.measure_upserts(
                database, small, large, all_places, rounds
            )
        posts_seconds = time.monotonic() - started
        past = {level.players: level.level_id for level in all_levels if level.board == "past"}
        board_figures = leaderboards.measure(database, past, rounds)
    finally:
        database.close()
    return {
        "rows": rows,
        "fill_seconds": fill_seconds,
        "vacuum_analyze_seconds": vacuum_seconds,
        "storage": storage,
        "problems": problems,
        "rounds": rounds,
        "cells": cells,
        "ratios": cost_ratios(cells),
        "posts": post_figures,
        "leaderboards": board_figures,
        "seconds": {"calls": calls_seconds, "posts": posts_seconds},
    }


# Over HTTP --------------------------------------------------------------------------------------


# Over HTTP --------------------------------------------------------------------------------------


def http_paths(level: Level, place: Place) -> dict[str, str]:
    """Each operation's path at the place."""
    return {
        "rank": f"/{level.level_id}/rank/{place.user_id}",
        "around": f"/{level.level_id}/highscorelist?around={place.user_id}",
        "from": f"/{level.level_id}/highscorelist?from={place.page_from}",
    }


def routes_missing(server: Server, level: Level, places: dict[str, Place]) -> str:
    """Why the server cannot be measured (it lacks the routes, or answers wrong), or ''."""
    connection = server.connection()
    try:
        answers = {}
        for name, path in (
            ("rank", http_paths(level, places["middle"])["rank"]),
            ("from", http_paths(level, places["middle"])["from"]),
            ("top", f"/{level.level_id}/highscorelist"),
        ):
            connection.request("GET", path)
            response = connection.getresponse()
            answers[name] = (response.status, response.read().decode().strip())
    finally:
        connection.close()
    if answers["rank"] != (200, str(places["middle"].rank)):
        return f"GET /<level>/rank/<user> answers {answers['rank'][0]}, not the rank"
    if answers["from"][0] != 200 or answers["from"][1] == answers["top"][1]:
        return "GET /<level>/highscorelist?from=<rank> answers the top of the list"
    return ""


def measure_http(
    wrk: Wrk,
    server: Server,
    all_places: dict[Level, dict[str, Place]],
    rounds: int,
    seconds: int,
) -> dict:
    """µs per request of each (size, place, operation) under wrk on one keep-alive connection
    (no request waits behind another), the sizes side by side in each round."""
    rss_start = tree_rss_bytes(server.process.pid)
    samples: dict[tuple, list[float]] = {}
    p50s: dict[tuple, list[float]] = {}
    errors: dict[tuple, int] = {}
    for _ in range(rounds):
        for place_name in PLACES:
            for operation in HTTP_OPERATIONS:
                for level, places in all_places.items():
                    url = server.url + http_paths(level, places[place_name])[operation]
                    run = wrk.get(url, HTTP_CONNECTIONS, seconds)
                    if run.requests == 0:  # a request longer than the run: a longer one
                        run = wrk.get(url, HTTP_CONNECTIONS, seconds * 5)
                    key = (level.players, place_name, operation)
                    per_request = run.seconds / run.requests * 1e6 if run.requests else math.inf
                    samples.setdefault(key, []).append(per_request)
                    p50s.setdefault(key, []).append(run.p50_ms)
                    errors[key] = errors.get(key, 0) + run.status_errors + run.socket_errors
    cells = [
        {
            "board": "uniform",
            "players": players,
            "place": place_name,
            "operation": operation,
            "us": statistics.median(values),
            "samples": values,
            "p50_ms": statistics.median(p50s[(players, place_name, operation)]),
            "errors": errors[(players, place_name, operation)],
        }
        for (players, place_name, operation), values in samples.items()
    ]
    return {
        "connections": HTTP_CONNECTIONS,
        "rounds": rounds,
        "seconds": seconds,
        "cells": cells,
        "ratios": cost_ratios(cells),
        "server_rss_bytes": {"start": rss_start, "end": tree_rss_bytes(server.process.pid)},
    }


# The suite's part -------------------------------------------------------------------------------


def measure(
    scratch: Path,
    wrk: Wrk,
    *,
    sizes: tuple[int, ...] = SIZES,
    boards: tuple[str, ...] = BOARDS,
    databases: tuple[str, ...] = DATABASES,
    rounds: int = ROUNDS,
    http_rounds: int = HTTP_ROUNDS,
    http_seconds: int = HTTP_SECONDS,
    progress: Callable[[str], None] = print,
) -> dict:
    """Every database's figures (or why it is missing), as results.json's "ranks"."""
    started = time.monotonic()
    figures: dict = {
        "sizes": list(sizes),
        "boards": list(boards),
        "levels": [level._asdict() for level in fill.levels(sizes, boards)],
        "dense_players_per_score": fill.DENSE_PLAYERS_PER_SCORE,
        "tied_max_players": fill.TIED_MAX_PLAYERS,
        "databases": {},
    }
    pg_server, pg_missing = None, ""
    if "postgresql" in databases:
        progress("PostgreSQL: starting a throwaway server for the ranks")
        pg_server, pg_missing = postgres.start_server()
    try:
        for name in databases:
            if name == "postgresql" and pg_server is None:
                figures["databases"][name] = {"missing": pg_missing}
                progress(f"  not measured: {name}: {pg_missing}")
                continue
            url = {
                "file": f"sqlite:///{scratch}/ranks.db",
                "memory": "sqlite://",
                "postgresql": pg_server.create_database() if pg_server else "",
            }[name]
            rows = sum(level.players for level in fill.levels(sizes, boards))
            progress(f"ranks: {DESCRIPTIONS[name]}: {rows:,} rows, then {rounds} rounds")
            command = ["bench.ranks", "--database", url, "--rounds", str(rounds)]
            command += ["--sizes", ",".join(map(str, sizes)), "--boards", ",".join(boards)]
            entry = {"description": DESCRIPTIONS[name]}
            entry |= run_json_child(command, scratch / f"ranks-{name}.log")
            _progress_of(entry, progress)
            if name != "memory":  # a server cannot reach this process's memory
                entry["http"] = _http(
                    name, url, scratch, wrk, sizes, http_rounds, http_seconds, progress
                )
            figures["databases"][name] = entry
    finally:
        if pg_server is not None:
            pg_server.close()
    figures["seconds"] = time.monotonic() - started
    return figures


def _progress_of(entry: dict, progress: Callable[[str], None]) -> None:
    seconds = entry["seconds"]
    progress(
        f"  filled in {sum(entry['fill_seconds'].values()):.1f} s; calls {seconds['calls']:.0f} s,"
        f" posts {seconds['posts']:.0f} s; "
        f"{entry['storage']['bytes_per_row']:.0f} bytes per stored best score"
    )
    for problem in entry["problems"]:
        progress(f"  problem: {problem}")


def _http(
    name: str,
    url: str,
    scratch: Path,
    wrk: Wrk,
    sizes: tuple[int, ...],
    rounds: int,
    seconds: int,
    progress: Callable[[str], None],
) -> dict:
    """rank, around and from over HTTP on the smallest and the largest uniform level."""
    env = {"SCORESVC_SECRET": uuid.uuid4().hex, "SCORESVC_POST_LIMIT": "0"}
    server = Server.scoresvc(f"ranks-{name}", scratch / f"ranks-{name}-server.log", env, url)
    try:
        server.start()
    except RuntimeError as error:
        return {"missing": str(error).splitlines()[-1] if str(error) else "did not start"}
    try:
        database = open_database(url)
        try:
            # The in-process posts may have moved players: the places as they are now.
            all_places = {
                level: fill.find_places(database, level)
                for level in fill.levels(sizes, ("uniform",))
                if level.players in (min(sizes), max(sizes))
            }
        finally:
            database.close()
        missing = routes_missing(server, next(iter(all_places)), next(iter(all_places.values())))
        if missing:
            progress(f"  not measured over HTTP: {missing}")
            return {"missing": missing}
        progress(f"  over HTTP: {rounds} rounds of {seconds} s per size, place and call")
        return measure_http(wrk, server, all_places, rounds, seconds)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ranks",
        description="Fill one database and time rank, around, from, users and score POSTs in "
        "process; print JSON. (`python -m bench --ranks` runs the whole part.)",
    )
    parser.add_argument("--database", required=True, help="a scoresvc database URL")
    parser.add_argument("--sizes", default=",".join(str(size) for size in SIZES))
    parser.add_argument("--boards", default=",".join(BOARDS))
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    options = parser.parse_args()
    sizes = tuple(sorted(int(size) for size in options.sizes.split(",")))
    boards = tuple(options.boards.split(","))
    print_json(run_inprocess(options.database, sizes, options.rounds, boards))


if __name__ == "__main__":
    main()
