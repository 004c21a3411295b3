"""Filling a database for the bench: levels of up to a million players, made in bulk by the
database itself, and what the filled database then takes on disk.

Rows are INSERTed into best_scores after the app's migrations, never around them, so that
whatever the migrations keep beside the table (triggers and the tables they maintain) is kept as
the service keeps it. The rows come from INSERT ... SELECT over a series the database makes
(generate_series on PostgreSQL, a recursive CTE on SQLite): no row crosses from Python. Scores
and times are hashes of the user's number, so both databases hold the same levels.
"""

import sqlite3
from pathlib import Path
from typing import NamedTuple

import psycopg
from sqlalchemy import bindparam, select

from bench import postgres
from scoresvc.leaderboards import MAX_SCORE
from scoresvc.storage.database import Database
from scoresvc.storage.moderation import Moderation
from scoresvc.storage.repository import TOP_SCORES_LIMIT, Repository
from scoresvc.storage.schema import best_scores

# What a board of the bench holds, and how it is made:
#   uniform: scores over the whole range, the level's current season, highest first;
#   dense:   about DENSE_PLAYERS_PER_SCORE players on each score;
#   asc:     uniform scores on a level ordered lowest first (its rules' order);
#   past:    uniform scores on season 1 of a level that has since started season 2;
#   tied:    every player on one score, ordered by when they reached it.
BOARDS = ("uniform", "dense", "asc", "past", "tied")
BASE_LEVEL = {"uniform": 1000, "dense": 2000, "asc": 3000, "past": 4000, "tied": 5000}
TIED_MAX_PLAYERS = 100_000  # the SPEC's rule for ties is stated at 100,000 on one score
TIED_SCORE = 1_000_000
DENSE_PLAYERS_PER_SCORE = 10
REACHED_AT_BASE = 1_767_225_600_000_000  # 2026-01-01 UTC, µs since the epoch
REACHED_AT_SPAN = 365 * 86_400 * 1_000_000  # reached within a year, in no order of the user's
FILL_CACHE_SIZE = -400_000  # SQLite's page cache during a fill: 400 MB
PG_FILL_ROWS = 20_000  # rows per transaction of a PostgreSQL fill


class Level(NamedTuple):
    """One level of the fill: users 1..players, on the kind of board its name says."""

    level_id: int
    players: int
    board: str

    @property
    def season(self) -> int | None:
        """The season the calls read: 1 for a past season, else the current one."""
        return 1 if self.board == "past" else None


class Place(NamedTuple):
    """A place in a level's ordering: its rank, the user there, and the page that holds it."""

    rank: int
    user_id: int
    page_from: int  # the `from` of the call: 1, the middle, the last 15


def levels(sizes: tuple[int, ...], boards: tuple[str, ...] = BOARDS) -> list[Level]:
    """A level per board and size (ties up to TIED_MAX_PLAYERS)."""
    return [
        Level(BASE_LEVEL[board] + index + 1, players, board)
        for board in boards
        for index, players in enumerate(sizes)
        if board != "tied" or players <= TIED_MAX_PLAYERS
    ]


def make(database: Database, level: Level) -> None:
    """Give the level its rules, its players' scores, and (a past season) its next season."""
    moderation = Moderation(database, Repository(database).levels)
    if level.board == "asc":
        moderation.change_rules(level.level_id, {"order": "asc"})
    fill(database, board_of(database, level.level_id), level.players, _score_sql(level))
    if level.board == "past":
        moderation.start_season(level.level_id)


def board_of(database: Database, level_id: int, season: int | None = None) -> int:
    """The board that holds the level's season (the current one by default)."""
    return Repository(database).board(level_id, season).board


def _score_sql(level: Level) -> str:
    """A stored score for user x: a hash of x, over the board's range."""
    x = "CAST(x AS BIGINT)"
    if level.board == "tied":
        return str(TIED_SCORE)
    if level.board == "dense":
        span = max(1, level.players // DENSE_PLAYERS_PER_SCORE)
        return f"(({x} * 2654435761) % 4294967296) % {span}"
    # An odd multiplier modulo 2**31: every user a score of their own, spread over the range.
    return f"({x} * 1103515245 + {level.level_id * 12345}) % {MAX_SCORE + 1}"


def fill(database: Database, board: int, players: int, score_sql: str = "") -> None:
    """Give users 1..players a best score on the board: score_sql of the user's number x (by
    default a hash over the whole range), reached at a hash of x within a year."""
    score_sql = score_sql or f"(CAST(x AS BIGINT) * 1103515245) % {MAX_SCORE + 1}"
    select_rows = (
        f"SELECT {board}, x, {score_sql}, "
        f"{REACHED_AT_BASE} + (CAST(x AS BIGINT) * 6364136223) % {REACHED_AT_SPAN}"
    )
    insert = "INSERT INTO best_scores (level_id, user_id, score, reached_at) "
    if database.engine.dialect.name == "postgresql":
        # Transactions of PG_FILL_ROWS rows, not one of a million: every version of a count
        # row a transaction writes stays until it commits, and later look-ups step over them.
        for start in range(1, players + 1, PG_FILL_ROWS):
            end = min(start + PG_FILL_ROWS - 1, players)
            with database.unit_of_work() as uow:
                statement = f"{insert}{select_rows} FROM generate_series({start}, {end}) AS n(x)"
                # psycopg reads % as a placeholder's start, %% as the operator.
                uow.connection.exec_driver_sql(statement.replace("%", "%%"))
        return
    with database.unit_of_work() as uow:
        cursor = uow.connection.connection.cursor()  # the driver's, in the unit of work
        # A cache that holds what the load changes (the default's 2 MB would write changed
        # pages out and read them back all along: twice the time), then the service's again.
        (cache_size,) = cursor.execute("PRAGMA cache_size").fetchone()
        cursor.execute(f"PRAGMA cache_size = {FILL_CACHE_SIZE}")
        try:
            cursor.execute(
                "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n "
                f"WHERE x < {players}) {insert}{select_rows} FROM n"
            )
        finally:
            cursor.execute(f"PRAGMA cache_size = {cache_size}")


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
    """The first, middle and last places, read from the table in the board's own ordering."""
    statement = database.compile(
        select(best_scores.c.user_id)
        .where(best_scores.c.level_id == bindparam("level_id"))
        .order_by(best_scores.c.score.desc(), best_scores.c.reached_at, best_scores.c.user_id)
        .limit(1)
        .offset(bindparam("skipped"))
    )
    board = board_of(database, level.level_id, level.season)
    players = level.players
    ranks = {"first": (1, 1), "middle": ((players + 1) // 2,) * 2}
    ranks["last"] = (players, max(1, players - TOP_SCORES_LIMIT + 1))
    places = {}
    with database.read() as cursor:
        for place, (rank, page_from) in ranks.items():
            (user,) = statement.execute(cursor, level_id=board, skipped=rank - 1).fetchone()
            places[place] = Place(rank, user, page_from)
    return places


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
