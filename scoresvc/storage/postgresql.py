"""PostgreSQL through psycopg 3: any number of workers and replicas on one database."""

import select
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from sqlalchemy import Connection, Executable, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from scoresvc.errors import DatabaseUnavailable
from scoresvc.storage.statements import CompiledStatement

DRIVER = "postgresql+psycopg"
CONNECT_TIMEOUT_SECONDS = 5
# A thread's connection idle this long is checked before use (one poll of its socket, no round
# trip): a server restarted meanwhile has closed it, and the request would fail for that alone.
# A connection in constant use needs no check: a restart fails its next request anyway.
IDLE_CHECK_SECONDS = 0.01
# Transactions (migrations) of every replica take this advisory lock first, so that replicas
# starting together migrate one after another. Any fixed number: 'scoresvc' in ASCII.
_SCHEMA_LOCK = 0x73636F7265737663


def engine_url(url: str | URL) -> URL:
    """url with psycopg 3 as its driver: plain postgresql:// means it too."""
    url = make_url(url)
    if url.drivername == "postgresql":
        return url.set(drivername=DRIVER)
    if url.drivername != DRIVER:
        raise ValueError(f"PostgreSQL is reached through psycopg 3: use {DRIVER}://")
    return url


class PostgreSQLDatabase:
    """A PostgreSQL database, each thread on a connection of its own from this process's pool.

    A waitress thread keeps its connection while it lives, so a request neither waits for a
    pool's lock nor makes a round trip to check a connection out. Each statement commits on
    its own (autocommit), so a write returns once every replica can read it. Nothing read is
    kept between requests (level_versions is None): replicas on other machines write too.
    """

    level_versions = None
    file_path = None

    def __init__(self, url: str | URL) -> None:
        self.engine = create_engine(
            engine_url(url),
            pool_size=8,
            max_overflow=64,  # a connection per waitress thread, whatever --threads is
            connect_args={
                "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                "application_name": "scoresvc",
                # psycopg prepares a statement run often; PostgreSQL would still plan it anew
                # for each execution while it guesses a custom plan might beat its generic
                # one. The repository's statements are fixed and their generic plans good:
                # planning the ranking statements costs more than running them.
                "options": "-c plan_cache_mode=force_generic_plan",
            },
        )
        self._unit_of_work = _ThreadUnitOfWork(self.engine)
        try:
            with self._unit_of_work as cursor:
                cursor.execute("SELECT 1")
        except DatabaseUnavailable as error:
            self.engine.dispose()
            raise DatabaseUnavailable(f"cannot open the database: {error}") from error

    def compile(self, statement: Executable) -> CompiledStatement:
        """statement compiled once for PostgreSQL, to run inside cursor()."""
        return CompiledStatement(statement, self.engine.dialect)

    def cursor(self) -> "_ThreadUnitOfWork":
        """A unit of work on this thread's connection: each statement commits on its own."""
        return self._unit_of_work

    def write(
        self,
        statement: CompiledStatement,
        *,
        on_rows_changed: Callable[[int], None] | None = None,
        **values: Any,
    ) -> int:
        """Run a write; it is committed, for every replica to read, when this returns.

        The rows it changed; on_rows_changed hears of them too, if there are any.
        """
        with self._unit_of_work as cursor:
            rows = statement.execute(cursor, **values).rowcount
        if rows > 0 and on_rows_changed is not None:
            on_rows_changed(rows)
        return rows

    def finish_writes(self) -> None:
        """Nothing to do: every write is made before write() returns."""

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in one transaction, holding the schema lock every replica takes."""
        try:
            with self.engine.begin() as connection:
                lock = text("SELECT pg_advisory_xact_lock(:key)")
                connection.execute(lock, {"key": _SCHEMA_LOCK})
                yield connection
        except (OperationalError, InterfaceError) as error:
            raise DatabaseUnavailable(str(error.orig)) from error

    @contextmanager
    def reader(self) -> Iterator[Any]:
        """A server-side cursor in a read-only snapshot of its own, for one long read.

        It reads REPEATABLE READ, so one export sees the database of one moment, and writers
        go on meanwhile; the server sends the rows as the cursor fetches them.
        """
        try:
            pooled = self.engine.raw_connection()
        except DBAPIError as error:
            raise DatabaseUnavailable(str(error.orig).strip()) from error
        except PoolTimeout as error:
            raise DatabaseUnavailable("every connection is in use: try again shortly") from error
        driver = pooled.driver_connection
        driver_errors = self._unit_of_work.driver_errors
        broken = False
        try:
            driver.autocommit = False
            driver.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            driver.read_only = True
            with driver.cursor(name="scoresvc_reader") as cursor:
                yield cursor
        except driver_errors as error:
            broken = True
            raise DatabaseUnavailable(str(error).strip()) from error
        finally:
            # Ended early (a client that went away) or not: the snapshot ends, and the
            # connection goes back to the pool as its other users expect it.
            try:
                if not broken:
                    driver.rollback()
                    driver.isolation_level = driver.read_only = None
            except driver_errors:
                broken = True
            if broken:
                pooled.invalidate()
            pooled.close()

    def close(self) -> None:
        """Return every thread's connection and close the pool."""
        self._unit_of_work.close()
        self.engine.dispose()


def _closed_by_server(connection) -> bool:
    """Whether the server has said something, or hung up, on a connection with no query running.

    Between queries a server sends nothing but its goodbye (a restart's "terminating
    connection") before it closes the socket: anything to read means the connection is over.
    """
    try:
        readable, _, _ = select.select([connection.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class _ThreadUnitOfWork:
    """The context manager cursor() returns: the calling thread's own connection and cursor."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self._local = threading.local()
        self._lock = threading.Lock()  # guards _held, touched when a connection is made or lost
        self._held: set = set()  # every thread's pooled connection, for close()
        driver = engine.dialect.loaded_dbapi
        self.driver_errors = (driver.OperationalError, driver.InterfaceError)

    def __enter__(self):
        local = self._local
        cursor = getattr(local, "cursor", None)
        now = time.monotonic()
        if (
            cursor is not None
            and now - local.used_at > IDLE_CHECK_SECONDS
            and _closed_by_server(local.pooled.driver_connection)
        ):
            self._discard()
            cursor = None
        if cursor is None:
            cursor = self._connect()
        local.used_at = now
        return cursor

    def __exit__(self, error_type, error, traceback) -> bool:
        if isinstance(error, self.driver_errors):
            self._discard()  # the server went away, or the connection broke: a new one next time
            raise DatabaseUnavailable(str(error).strip()) from error
        return False

    def _connect(self):
        try:
            pooled = self._engine.raw_connection()
        except DBAPIError as error:
            raise DatabaseUnavailable(str(error.orig).strip()) from error
        except self.driver_errors as error:  # as the pool's connect raises them
            raise DatabaseUnavailable(str(error).strip()) from error
        pooled.driver_connection.autocommit = True
        with self._lock:
            self._held.add(pooled)
        self._local.pooled = pooled
        self._local.cursor = cursor = pooled.driver_connection.cursor()
        return cursor

    def _discard(self) -> None:
        local = self._local
        pooled = getattr(local, "pooled", None)
        local.pooled = local.cursor = None
        if pooled is None:
            return
        with self._lock:
            self._held.discard(pooled)
        with suppress(Exception):
            pooled.invalidate()  # closed, and not given back to the pool

    def close(self) -> None:
        """Give every thread's connection back to the pool."""
        with self._lock:
            held, self._held = self._held, set()
        for pooled in held:
            with suppress(Exception):
                pooled.close()
