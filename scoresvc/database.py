"""Opening the database: engine set-up, SQLite pragmas, and the connection units of work use."""

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.pool import QueuePool

from scoresvc.errors import DatabaseUnavailable

SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
BUSY_TIMEOUT_SECONDS = 5.0


def is_memory_url(url: str | URL) -> bool:
    """True for the SQLite URLs that mean 'a database in memory'."""
    url = make_url(url)
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def create_database_engine(url: str | URL, *, synchronous: str = "NORMAL") -> Engine:
    """An engine for url; a SQLite memory URL becomes a fresh shared-cache database."""
    url = make_url(url)
    if url.get_backend_name() != "sqlite":
        raise ValueError(f"unsupported database {url.get_backend_name()!r}: only SQLite for now")
    if synchronous.upper() not in SYNCHRONOUS_LEVELS:
        raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)}")
    memory = is_memory_url(url)
    if memory:
        # A named shared-cache database: every connection of this engine sees the same data
        # (plain :memory: gives each connection its own empty one), and a fresh name per
        # engine keeps two apps in one process (tests) apart.
        url = make_url(
            f"sqlite:///file:scoresvc-{uuid.uuid4().hex}?mode=memory&cache=shared&uri=true"
        )
    engine = create_engine(
        url,
        # Database holds one connection for the life of the engine; the pool only makes it.
        poolclass=QueuePool,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_SECONDS},
    )

    @event.listens_for(engine, "connect")
    def _configure_sqlite(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        if not memory:
            # WAL: readers never block the writer. With it, synchronous=NORMAL keeps every
            # committed transaction through a crash of the process (the WAL is written before
            # commit returns) but not through power loss; FULL adds an fsync per commit.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.close()

    return engine


class Database:
    """Runs units of work on one connection, one at a time.

    SQLite allows one writer at a time anyway, and a shared-cache memory database answers
    concurrent access with SQLITE_LOCKED ("database table is locked"), which no busy timeout
    retries. Serializing in the process removes that failure mode entirely and costs nothing
    measurable: each unit of work is a few microseconds of SQLite under the GIL. The held
    connection also keeps a memory database alive for the life of the process.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        try:
            self._connection = engine.connect()
        except (OperationalError, InterfaceError) as error:
            raise DatabaseUnavailable(f"cannot open the database: {error.orig}") from error

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Yield the connection inside a transaction: committed on success, else rolled back."""
        with self._lock:
            connection = self._connection
            try:
                yield connection
                connection.commit()
            except (OperationalError, InterfaceError) as error:
                self._roll_back_quietly()
                raise DatabaseUnavailable(str(error.orig)) from error
            except BaseException:
                self._roll_back_quietly()
                raise

    def _roll_back_quietly(self) -> None:
        # If the rollback fails too, the error that got us here is the one worth reporting.
        with suppress(OperationalError, InterfaceError):
            self._connection.rollback()

    def close(self) -> None:
        """Release the connection and the engine (a memory database is gone after this)."""
        with self._lock:
            self._connection.close()
            self.engine.dispose()
