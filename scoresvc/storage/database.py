"""What the repository needs of a database, and opening one by its URL."""

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from sqlalchemy import ClauseElement, Engine
from sqlalchemy.engine import URL, make_url

from scoresvc.settingvalues import QUERY_TIMEOUT_SECONDS, SYNCHRONOUS_LEVELS, is_memory_url
from scoresvc.storage.levelcache import Versioned
from scoresvc.storage.postgresql import PostgreSQLDatabase
from scoresvc.storage.sqlite import SQLiteDatabase
from scoresvc.storage.statements import CompiledStatement
from scoresvc.storage.unitofwork import Listener, UnitOfWork

# The synchronous levels, the query timeout's default and what a memory URL is are settings'
# (settingvalues), so that reading settings loads no storage; named here too.
__all__ = [
    "QUERY_TIMEOUT_SECONDS",
    "SYNCHRONOUS_LEVELS",
    "Database",
    "UnitOfWork",
    "is_memory_url",
    "open_database",
]


class BannedUsers(Protocol):
    """Who is banned: `user_id in database.banned_users`."""

    def __contains__(self, user_id: int) -> bool: ...


class ScoreWrite(Protocol):
    """A score post's statement, run the way the database learns of a ban best."""

    def run(self, uow: UnitOfWork, *, user_id: int, **values: Any) -> int | None:
        """Write the post in uow: the new bests it made, None if deferred; UserBanned."""


class KeptPerLevel(Protocol):
    """Where values read per level are kept between reads, if anywhere (see levelcache)."""

    def version(self, key: int) -> int: ...

    def get(self, key: int) -> Any: ...

    def fill(self, key: int, value: Versioned) -> None: ...


class Database(Protocol):
    """A database the repository and moderation run compiled statements on, whatever its kind.

    What differs between kinds lives behind this interface, in sqlite.py and postgresql.py:
    how a unit of work begins and commits, whether its writes may be deferred, where changes
    are published, whether lists and bans are kept in memory, how a score post learns of a ban.
    """

    engine: Engine

    # Read-only properties, so that each kind may hold a BannedUsers of its own class.
    @property
    def banned_users(self) -> BannedUsers: ...

    @property
    def file_path(self) -> str | None:
        """The SQLite file the database is, or None (in memory, PostgreSQL)."""

    def compile(self, statement: ClauseElement) -> CompiledStatement:
        """statement compiled once for this database's dialect."""

    def unit_of_work(self, *, one_statement: bool = False) -> AbstractContextManager[UnitOfWork]:
        """The only way to write: see UnitOfWork."""

    def read(self) -> AbstractContextManager[Any]:
        """The driver's cursor for reads, each statement on its own; a driver error (the
        database gone) leaves it as DatabaseUnavailable."""

    def snapshot(self) -> AbstractContextManager[Any]:
        """A driver cursor on a connection of its own, for one long read (an export).

        It holds up no writer, and it sees every write made before it began; PostgreSQL and a
        SQLite file give it one snapshot of the database for its whole life.
        """

    def subscribe(self, listener: Listener) -> None:
        """Tell listener of the changes of every unit of work once they are committed."""

    def level_cache(self, max_levels: int) -> KeptPerLevel:
        """Where values read per level or board are kept while no write changes the level (a
        cache that never hits where none can be)."""

    def rules_cache(self, max_levels: int) -> KeptPerLevel:
        """Where values read per level are kept while its rules and seasons hold."""

    def now_us(self) -> int:
        """The clock seasons are judged by, in µs since the epoch: the database server's where
        replicas on several machines share it, else this machine's."""

    def score_write(self, keep: str, order: str) -> ScoreWrite:
        """A score post on a board whose rules keep and order as given (statements.score_upsert,
        which writes nothing for a banned user), as a ScoreWrite."""

    @property
    def writes_journaled(self) -> bool:
        """Whether writes of one statement wait in a write journal that every process on the
        database applies (a SQLite file's): then a process of its own may apply them."""

    def writes_waiting(self) -> bool:
        """Whether any write accepted is waiting to be made (without taking a lock)."""

    def finish_writes(self) -> None:
        """Make every write accepted so far (a deferred one), if any is waiting."""

    def close(self) -> None:
        """Finish what is under way and release every connection."""


def open_database(
    url: str | URL,
    *,
    synchronous: str = "NORMAL",
    clock: Callable[[], float] = time.time,
    query_timeout: float = QUERY_TIMEOUT_SECONDS,
    background_apply: bool = True,
) -> Database:
    """The database at url: SQLite (in memory or a file) or PostgreSQL.

    query_timeout: the longest, in seconds, that a player's read or score write may hold the
    database (0: no bound); past it the request fails as DatabaseUnavailable.
    background_apply=False: a write journal is applied by another process (the supervisor's
    applier), here only before a read or unit of work.
    """
    url = make_url(url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return SQLiteDatabase(
            url,
            synchronous=synchronous,
            clock=clock,
            query_timeout=query_timeout,
            background_apply=background_apply,
        )
    if backend == "postgresql":
        return PostgreSQLDatabase(url, query_timeout=query_timeout, clock=clock)
    raise ValueError(
        f"unsupported database {backend!r}: use sqlite:// (memory), sqlite:////path/scores.db "
        "or postgresql+psycopg://user:password@host:port/dbname"
    )
