"""The players' view at scale: rank, around and from on levels of 1,000 to 1,000,000 players.

SPEC.md, "Players' view", Cost: at 1,000,000 players on a level, `rank`, `around` and `from` at
any place of the ordering (the last included) cost at most twice what they cost at 1,000
players, on SQLite and on PostgreSQL; a score post still costs what it did; and the whole
service keeps at most 100 bytes per stored best score.

measure() (the suite's part, also `python -m bench --ranks` alone) fills, for each database
(a SQLite file, a SQLite memory database, PostgreSQL), one level per size and score
distribution, in a child process (`python -m bench.ranks --database URL`, which prints one JSON
object) that then measures what the database takes (per stored best score), the repository's
rank(), window_around() and window_from() at the first, middle and last place, in rounds that
take every level in turn (each figure the median of its rounds, each ratio the median of its
per-round ratios), and score POSTs through the app on the smallest and the largest level,
beside the same upsert on a table without the ranking structure. The parent then measures the
same calls over HTTP through a scoresvc server on the file and on PostgreSQL.

The fill goes through the database after the app's migrations, never around them: rows are
INSERTed into best_scores, so that whatever the migrations keep beside the table (triggers and
the tables they maintain) is kept as it would be by the service.
"""

import argparse
import gc
import json
import math
import random
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import psycopg
from sqlalchemy import Column, MetaData, Table, bindparam, select

from bench import postgres
from bench.inprocess import Client
from bench.load import Wrk
from bench.scale import rss_bytes
from bench.servers import PROJECT, Server
from scoresvc import create_app
from scoresvc.logconfig import configure_logging
from scoresvc.settings import Settings
from scoresvc.storage.database import Database, open_database
from scoresvc.storage.migrate import upgrade_to_head
from scoresvc.storage.repository import TOP_SCORES_LIMIT, Repository
from scoresvc.storage.schema import best_scores
from scoresvc.storage.statements import best_score_upsert

SIZES = (1_000, 100_000, 1_000_000)  # players on a level
PLACES = ("first", "middle", "last")
OPERATIONS = ("rank", "around", "from")
DISTRIBUTIONS = ("uniform", "dense")
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
MAX_SCORE = 2**31 - 1
DENSE_PLAYERS_PER_SCORE = 10  # dense: scores 0 .. players/10 - 1, about ten players on each
REACHED_AT_BASE = 1_767_225_600_000_000  # 2026-01-01 UTC, µs since the epoch
REACHED_AT_SPAN = 365 * 86_400 * 1_000_000  # reached within a year, in random order
CHUNK = 10_000  # rows per executemany() of a SQLite fill
FILL_CACHE_SIZE = -400_000  # SQLite's page cache during a fill: 400 MB
PG_FILL_ROWS = 20_000  # rows per transaction of a PostgreSQL fill
ROUNDS = 5
SAMPLE_SECONDS = 0.05  # one timing of one call: as many calls as fit in this (at least one)
MAX_CALLS = 2000
POST_USERS = 1000  # users whose rising scores the POSTs rotate through, on each level
POST_SAMPLE_SECONDS = 0.2
POST_HEADROOM = 1_000_000  # a posting user's best is at most MAX_SCORE - this
HTTP_ROUNDS = 2
HTTP_SECONDS = 1
HTTP_CONNECTIONS = 1  # µs per request, none queued behind another


class Level(NamedTuple):
    """One level of the fill."""

    level_id: int
    players: int
    distribution: str

    @property
    def score_span(self) -> int:
        """Scores are drawn uniformly from 0 .. score_span - 1."""
        if self.distribution == "uniform":
            return MAX_SCORE + 1
        return max(1, self.players // DENSE_PLAYERS_PER_SCORE)


class Place(NamedTuple):
    """A place in a level's ordering: its rank, the user there, and the page that holds it."""

    rank: int
    user_id: int
    page_from: int  # the `from` of the call: 1, the middle, the last 15


def levels(sizes: tuple[int, ...]) -> list[Level]:
    """A level per size and distribution; users 1..players on each."""
    return [
        Level(base + index + 1, players, distribution)
        for distribution, base in zip(DISTRIBUTIONS, (1000, 2000), strict=True)
        for index, players in enumerate(sizes)
    ]


# The fill ---------------------------------------------------------------------------------------


def fill(database: Database, level: Level) -> None:
    """Give users 1..players a best score on the level, in one transaction."""
    if database.engine.dialect.name == "postgresql":
        _fill_postgresql(database, level)
    else:
        _fill_sqlite(database, level)


def _fill_sqlite(database: Database, level: Level) -> None:
    statement = "INSERT INTO best_scores (level_id, user_id, score, reached_at) VALUES (?, ?, ?, ?)"
    draw = random.Random(level.level_id)
    with database.unit_of_work() as uow:
        cursor = uow.connection.connection.cursor()  # the driver's, in the unit of work
        # A cache that holds what the load changes (the default's 2 MB would write changed
        # pages out and read them back all along: twice the time), then the service's again.
        (cache_size,) = cursor.execute("PRAGMA cache_size").fetchone()
        cursor.execute(f"PRAGMA cache_size = {FILL_CACHE_SIZE}")
        try:
            for start in range(1, level.players + 1, CHUNK):
                cursor.executemany(
                    statement,
                    [
                        (
                            level.level_id,
                            user,
                            draw.randrange(level.score_span),
                            REACHED_AT_BASE + draw.randrange(REACHED_AT_SPAN),
                        )
                        for user in range(start, min(start + CHUNK, level.players + 1))
                    ],
                )
        finally:
            cursor.execute(f"PRAGMA cache_size = {cache_size}")


def _fill_postgresql(database: Database, level: Level) -> None:
    # Transactions of PG_FILL_ROWS rows, not one of a million: with the row triggers that
    # kept the counts before 3bca2b9, every version of a count row that a transaction wrote
    # stayed until it committed and later look-ups stepped over them, so a load in one
    # transaction took time in the square of its rows (a million: over eight minutes).
    for number, start in enumerate(range(1, level.players + 1, PG_FILL_ROWS)):
        end = min(start + PG_FILL_ROWS - 1, level.players)
        with database.unit_of_work() as uow:
            # Reproducible, whichever connection of the pool runs the transaction.
            uow.connection.exec_driver_sql(
                f"SELECT setseed({(level.level_id * 1000 + number) % 1e6 / 1e6})"
            )
            uow.connection.exec_driver_sql(
                "INSERT INTO best_scores (level_id, user_id, score, reached_at) "
                f"SELECT {level.level_id}, g, floor(random() * {level.score_span})::integer, "
                f"{REACHED_AT_BASE} + floor(random() * {REACHED_AT_SPAN})::bigint "
                f"FROM generate_series({start}, {end}) AS g"
            )


def vacuum_analyze(url: str) -> None:
    """VACUUM ANALYZE each of the service's tables, as autovacuum soon would after a bulk load.

    Statistics for the planner (see bench/postgres.py's analyze()), and a visibility map, without
    which an index-only scan reads the table too.
    """
    with psycopg.connect(postgres.libpq_url(url), autocommit=True) as connection:
        tables = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
        for (table,) in tables:
            connection.execute(f'VACUUM ANALYZE "{table}"')


def find_places(database: Database, level: Level) -> dict[str, Place]:
    """The first, middle and last places, read from the table in the service's ordering."""
    statement = database.compile(
        select(best_scores.c.user_id)
        .where(best_scores.c.level_id == bindparam("level_id"))
        .order_by(best_scores.c.score.desc(), best_scores.c.reached_at, best_scores.c.user_id)
        .limit(1)
        .offset(bindparam("skipped"))
    )
    players = level.players
    ranks = {"first": (1, 1), "middle": ((players + 1) // 2,) * 2}
    ranks["last"] = (players, max(1, players - TOP_SCORES_LIMIT + 1))
    places = {}
    with database.read() as cursor:
        for place, (rank, page_from) in ranks.items():
            (user,) = statement.execute(
                cursor, level_id=level.level_id, skipped=rank - 1
            ).fetchone()
            places[place] = Place(rank, user, page_from)
    return places


# In process -------------------------------------------------------------------------------------


def calls(repository: Repository, level: Level, place: Place) -> dict[str, Callable[[], object]]:
    """Each operation at the place, as the repository answers it."""
    level_id = level.level_id
    return {
        "rank": lambda: repository.rank(level_id, place.user_id),
        "around": lambda: repository.window_around(level_id, place.user_id),
        "from": lambda: repository.window_from(level_id, place.page_from),
    }


def check_answers(repository: Repository, level: Level, places: dict[str, Place]) -> list[str]:
    """What the repository answers at each place that the table's own ordering contradicts."""
    problems = []
    where = f"level of {level.players:,} ({level.distribution})"
    for name, place in places.items():
        found = repository.rank(level.level_id, place.user_id)
        if found is None or found.rank != place.rank or found.players != level.players:
            problems.append(f"{where}: rank of the {name} user is {found}, not {place.rank}")
        around = repository.window_around(level.level_id, place.user_id)
        if around is None or place.user_id not in [entry.user_id for entry in around.entries]:
            problems.append(f"{where}: around the {name} user leaves the user out")
        page = repository.window_from(level.level_id, place.page_from).entries
        expected = min(TOP_SCORES_LIMIT, level.players - place.page_from + 1)
        if len(page) != expected or (page and page[0].rank != place.page_from):
            problems.append(f"{where}: from={place.page_from} gives {len(page)} entries")
        elif name != "middle" and page[0 if name == "first" else -1].user_id != place.user_id:
            problems.append(f"{where}: from={place.page_from} misses the {name} user")
    return problems


def time_call(call: Callable[[], object], seconds: float = SAMPLE_SECONDS) -> float:
    """µs per call: one call's time if it took seconds or more, else the mean of as many more
    as fit in seconds."""
    started = time.perf_counter()
    call()
    once = time.perf_counter() - started
    if once >= seconds:
        return once * 1e6  # a slow call: once is enough, beside the noise of a shared machine
    count = min(MAX_CALLS, int(seconds / max(once, 1e-7)))
    started = time.perf_counter()
    for _ in range(count):
        call()
    return (time.perf_counter() - started) / count * 1e6


def measure_calls(
    repository: Repository, all_places: dict[Level, dict[str, Place]], rounds: int
) -> list[dict]:
    """Every (level, place, operation), each round taking them all in turn; µs per call.

    The sizes of one distribution, place and operation are timed one after another, so that
    what the machine's other work does to a round's figures it does to the ratio's both terms.
    """
    samples: dict[tuple, list[float]] = {}
    for level, places in all_places.items():  # a first pass, for caches to warm
        for place in places.values():
            for call in calls(repository, level, place).values():
                call()
    for _ in range(rounds):
        for distribution in DISTRIBUTIONS:
            same = [level for level in all_places if level.distribution == distribution]
            for place_name in PLACES:
                for operation in OPERATIONS:
                    for level in same:
                        call = calls(repository, level, all_places[level][place_name])[operation]
                        key = (distribution, level.players, place_name, operation)
                        samples.setdefault(key, []).append(time_call(call))
    return [
        {
            "distribution": distribution,
            "players": players,
            "place": place_name,
            "rank": all_places[_level_of(all_places, distribution, players)][place_name].rank,
            "operation": operation,
            "us": statistics.median(values),
            "samples": values,
        }
        for (distribution, players, place_name, operation), values in samples.items()
    ]


def _level_of(all_places: dict[Level, dict], distribution: str, players: int) -> Level:
    return next(
        level
        for level in all_places
        if level.distribution == distribution and level.players == players
    )


def cost_ratios(cells: list[dict], small: int, large: int) -> list[dict]:
    """Per (distribution, place, operation): the median over rounds of large's µs / small's."""
    by_key = {(c["distribution"], c["players"], c["place"], c["operation"]): c for c in cells}
    ratios = []
    for (distribution, players, place, operation), cell in by_key.items():
        if players != large or (distribution, small, place, operation) not in by_key:
            continue
        base = by_key[(distribution, small, place, operation)]
        pairs = zip(cell["samples"], base["samples"], strict=True)
        ratios.append(
            {
                "distribution": distribution,
                "place": place,
                "operation": operation,
                "ratio": statistics.median(value / base_value for value, base_value in pairs),
            }
        )
    return ratios


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


class RisingScores:
    """Each call gives the next (user, score) of a rotation whose every score beats the user's."""

    def __init__(self, users: list[tuple[int, int]]) -> None:
        self.users = users
        self.count = 0

    def __call__(self) -> tuple[int, int]:
        count, users = self.count, self.users
        self.count = count + 1
        user, score = users[count % len(users)]
        return user, score + 1 + count // len(users)


def alternate(samplers: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each sampler once a round, in turn: its samples."""
    samples: dict[str, list[float]] = {name: [] for name in samplers}
    for _ in range(rounds):
        for name, sampler in samplers.items():
            samples[name].append(sampler())
    return samples


def timed_sample(call: Callable[[], object], finish: Callable[[], object]) -> float:
    """µs per call over about POST_SAMPLE_SECONDS (at least 20 calls), finish() included."""
    started = time.perf_counter()
    call()
    finish()
    once = time.perf_counter() - started
    count = max(20, min(MAX_CALLS, int(POST_SAMPLE_SECONDS / once)))
    started = time.perf_counter()
    for _ in range(count):
        call()
    finish()
    return (time.perf_counter() - started) / count * 1e6


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
    return _summary(samples, str(large.players), str(small.players)) | {"failures": failures}


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


def _summary(samples: dict[str, list[float]], large: str, small: str) -> dict:
    pairs = zip(samples[large], samples[small], strict=True)
    return {
        "us": {name: statistics.median(values) for name, values in samples.items()},
        "samples": samples,
        "ratio": statistics.median(value / base for value, base in pairs),
    }


def run_inprocess(url: str, sizes: tuple[int, ...], rounds: int) -> dict:
    """The child's work on one database: fill, storage, checks, the calls, the posts."""
    database = open_database(url)
    rows = sum(level.players for level in levels(sizes))
    try:
        upgrade_to_head(database)
        gc.collect()
        rss_before = rss_bytes()
        fill_seconds = {}
        for level in levels(sizes):
            started = time.monotonic()
            fill(database, level)
            fill_seconds[f"{level.distribution}-{level.players}"] = time.monotonic() - started
        gc.collect()
        rss_growth = rss_bytes() - rss_before
        vacuum_seconds = None
        if database.engine.dialect.name == "postgresql":
            started = time.monotonic()
            vacuum_analyze(url)
            vacuum_seconds = time.monotonic() - started
            storage = postgresql_storage(url, rows)
        elif database.file_path is not None:
            with database.read() as cursor:
                # The bulk load's WAL would stay at its size until the last connection closes.
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            storage = sqlite_storage(Path(database.file_path), rows)
        else:
            storage = {"bytes": rss_growth, "rows": rows, "bytes_per_row": rss_growth / rows}
        repository = Repository(database)
        all_places = {level: find_places(database, level) for level in levels(sizes)}
        problems = []
        for level, places in all_places.items():
            problems += check_answers(repository, level, places)
        started = time.monotonic()
        cells = measure_calls(repository, all_places, rounds)
        calls_seconds = time.monotonic() - started
        small, large = (_level_of(all_places, "uniform", size) for size in (min(sizes), max(sizes)))
        started = time.monotonic()
        posts = measure_posts(database, small, large, all_places, rounds)
        posts["upserts"] = measure_upserts(database, small, large, all_places, rounds)
        posts_seconds = time.monotonic() - started
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
        "ratios": cost_ratios(cells, min(sizes), max(sizes)),
        "posts": posts,
        "seconds": {"calls": calls_seconds, "posts": posts_seconds},
    }


# On disk ----------------------------------------------------------------------------------------


def sqlite_storage(path: Path, rows: int) -> dict:
    """Every file of a SQLite database (the file, its WAL, the level versions), per row."""
    files = {
        candidate.name: candidate.stat().st_size
        for candidate in sorted(path.parent.glob(path.name + "*"))
    }
    total = sum(files.values())
    connection = sqlite3.connect(path)
    try:
        parts = dict(
            connection.execute(
                "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
            ).fetchall()
        )
    except sqlite3.OperationalError:  # SQLite built without dbstat
        parts = {}
    finally:
        connection.close()
    return {
        "bytes": total,
        "rows": rows,
        "bytes_per_row": total / rows,
        "files": files,
        "parts": parts,
    }


def postgresql_storage(url: str, rows: int) -> dict:
    """pg_total_relation_size of every table of the service (indexes, TOAST), per row."""
    with psycopg.connect(postgres.libpq_url(url)) as connection:
        parts = dict(
            connection.execute(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY 2 DESC"
            ).fetchall()
        )
        database_bytes = connection.execute(
            "SELECT pg_database_size(current_database())"
        ).fetchone()[0]
    total = sum(parts.values())
    return {
        "bytes": total,
        "rows": rows,
        "bytes_per_row": total / rows,
        "parts": parts,
        "database_bytes": database_bytes,
    }


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


def tree_rss_bytes(pid: int) -> int:
    """The resident set size of a process and its children (a supervisor's workers)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
        pending += [int(child) for child in children]
    return total


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
            for operation in OPERATIONS:
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
            "distribution": "uniform",
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
    sizes = sorted({level.players for level in all_places})
    return {
        "connections": HTTP_CONNECTIONS,
        "rounds": rounds,
        "seconds": seconds,
        "cells": cells,
        "ratios": cost_ratios(cells, sizes[0], sizes[-1]),
        "server_rss_bytes": {"start": rss_start, "end": tree_rss_bytes(server.process.pid)},
    }


# The suite's part -------------------------------------------------------------------------------


def measure(
    scratch: Path,
    wrk: Wrk,
    *,
    sizes: tuple[int, ...] = SIZES,
    rounds: int = ROUNDS,
    http_rounds: int = HTTP_ROUNDS,
    http_seconds: int = HTTP_SECONDS,
    progress: Callable[[str], None] = print,
) -> dict:
    """Every database's figures (or why it is missing), as results.json's "ranks"."""
    started = time.monotonic()
    figures: dict = {
        "sizes": list(sizes),
        "levels": [level._asdict() for level in levels(sizes)],
        "dense_players_per_score": DENSE_PLAYERS_PER_SCORE,
        "databases": {},
    }
    progress("PostgreSQL: starting a throwaway server for the ranks")
    pg_server, pg_missing = postgres.start_server()
    try:
        for name in DATABASES:
            if name == "postgresql" and pg_server is None:
                figures["databases"][name] = {"missing": pg_missing}
                progress(f"  not measured: {name}: {pg_missing}")
                continue
            figures["databases"][name] = _measure_database(
                name, scratch, wrk, pg_server, sizes, rounds, http_rounds, http_seconds, progress
            )
    finally:
        if pg_server is not None:
            pg_server.close()
    figures["seconds"] = time.monotonic() - started
    return figures


def _measure_database(
    name: str,
    scratch: Path,
    wrk: Wrk,
    pg_server,
    sizes: tuple[int, ...],
    rounds: int,
    http_rounds: int,
    http_seconds: int,
    progress: Callable[[str], None],
) -> dict:
    url = {
        "file": f"sqlite:///{scratch}/ranks.db",
        "memory": "sqlite://",
        "postgresql": pg_server.create_database() if name == "postgresql" else "",
    }[name]
    rows = sum(level.players for level in levels(sizes))
    progress(f"ranks: {DESCRIPTIONS[name]}: filling {rows:,} rows, then {rounds} rounds in process")
    figures = {"description": DESCRIPTIONS[name], **_child(url, sizes, rounds, scratch, name)}
    fill = sum(figures["fill_seconds"].values())
    progress(
        f"  filled in {fill:.1f} s; calls {figures['seconds']['calls']:.0f} s, "
        f"posts {figures['seconds']['posts']:.0f} s"
    )
    for problem in figures["problems"]:
        progress(f"  problem: {problem}")
    progress(f"  {figures['storage']['bytes_per_row']:.0f} bytes per stored best score")
    if name != "memory":  # a server cannot reach this process's memory
        figures["http"] = _http(name, url, scratch, wrk, sizes, http_rounds, http_seconds, progress)
    return figures


def _child(url: str, sizes: tuple[int, ...], rounds: int, scratch: Path, name: str) -> dict:
    # A fresh process: its memory is its own (the memory database's size), its log a file's.
    log_path = scratch / f"ranks-{name}.log"
    command = [sys.executable, "-m", "bench.ranks", "--database", url, "--rounds", str(rounds)]
    command += ["--sizes", ",".join(str(size) for size in sizes)]
    with log_path.open("wb") as log:
        finished = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=log, cwd=PROJECT, check=False
        )
    if finished.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"bench.ranks on {name} failed:\n{tail}")
    return json.loads(finished.stdout)


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
    http_sizes = (min(sizes), max(sizes))  # the smallest and the largest, uniform scores
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
                level: find_places(database, level)
                for level in levels(sizes)
                if level.distribution == "uniform" and level.players in http_sizes
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
        description="Fill one database and time rank, around, from and score POSTs in process; "
        "print JSON. (`python -m bench --ranks` runs the whole part.)",
    )
    parser.add_argument("--database", required=True, help="a scoresvc database URL")
    parser.add_argument("--sizes", default=",".join(str(size) for size in SIZES))
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    options = parser.parse_args()
    sizes = tuple(sorted(int(size) for size in options.sizes.split(",")))
    json.dump(run_inprocess(options.database, sizes, options.rounds), sys.stdout)


if __name__ == "__main__":
    main()
