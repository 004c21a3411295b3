"""What the repository needs of a database, and opening one by its URL."""

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, Executable
from sqlalchemy.engine import URL, make_url

from scoresvc.storage.levelversions import LevelVersions
from scoresvc.storage.postgresql import PostgreSQLDatabase
from scoresvc.storage.sqlite import SYNCHRONOUS_LEVELS, SQLiteDatabase, is_memory_url
from scoresvc.storage.statements import CompiledStatement

__all__ = ["SYNCHRONOUS_LEVELS", "Database", "is_memory_url", "open_database"]


class Database(Protocol):
    """A database the repository runs compiled statements on, whatever its kind."""

    engine: Engine
    # Shared by every process on this database, where they are all on one machine; None where
    # they may not be (PostgreSQL replicas): then nothing read may be kept between requests.
    level_versions: LevelVersions | None
    # The SQLite file the database is, or None (in memory, PostgreSQL).
    file_path: str | None

    def compile(self, statement: Executable) -> CompiledStatement:
        """statement compiled once for this database's dialect, to run inside cursor()."""

    def cursor(self) -> AbstractContextManager[Any]:
        """A unit of work: the driver's cursor, each statement its own transaction.

        A driver error (the database gone, a full disk) leaves it as DatabaseUnavailable.
        """

    def write(
        self,
        statement: CompiledStatement,
        *,
        on_rows_changed: Callable[[int], None] | None = None,
        **values: Any,
    ) -> int | None:
        """Run a write; once this returns, every read made anywhere afterwards sees it.

        The number of rows it changed, or None where the write is deferred (a memory database
        of one process): on_rows_changed(rows) is called once it is made, if it changed any.
        """

    def finish_writes(self) -> None:
        """Make every write accepted so far (a deferred one), if any is waiting."""

    def transaction(self) -> AbstractContextManager[Connection]:
        """A SQLAlchemy connection in one transaction that holds the database's write lock."""

    def reader(self) -> AbstractContextManager[Any]:
        """A driver cursor on a connection of its own, for one long read (an export).

        It holds up no writer, and it sees every write made before it began; PostgreSQL and a
        SQLite file give it one snapshot of the database for its whole life.
        """

    def close(self) -> None:
        """Finish what is under way and release every connection."""


def open_database(
    url: str | URL, *, synchronous: str = "NORMAL", clock: Callable[[], float] = time.time
) -> Database:
    """The database at url: SQLite (in memory or a file) or PostgreSQL."""
    url = make_url(url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return SQLiteDatabase(url, synchronous=synchronous, clock=clock)
    if backend == "postgresql":
        return PostgreSQLDatabase(url)
    raise ValueError(
        f"unsupported database {backend!r}: use sqlite:// (memory), sqlite:////path/scores.db "
        "or postgresql+psycopg://user:password@host:port/dbname"
    )
