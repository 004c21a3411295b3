"""SQLite: in this process's memory, or a file any number of processes on one machine share."""

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Engine, Executable, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import QueuePool

from scoresvc.errors import DatabaseUnavailable
from scoresvc.storage.deferredwrites import DeferredWrites
from scoresvc.storage.levelversions import VERSIONS_SUFFIX, LevelVersions
from scoresvc.storage.statements import CompiledStatement

logger = logging.getLogger("scoresvc")

SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
# How long a write waits for another process's write to a file to finish.
BUSY_TIMEOUT_SECONDS = 5.0
# How long opening a file waits for other processes starting on it (see _connect_when_unlocked).
OPEN_TIMEOUT_SECONDS = 30.0


def is_memory_url(url: str | URL) -> bool:
    """True for the SQLite URLs that mean 'a database in memory'."""
    url = make_url(url)
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


class ReachedAtClock:
    """`next_reached_at()` for SQLite: microseconds since the epoch, strictly increasing.

    Equal scores rank by when they were reached; a clock that stands still or steps back
    must not reorder them, so each reading is at least one more than the last. Processes on
    one file read the machine's one clock: two of them may give the same microsecond to two
    writes made at the same moment, which then rank by user id.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()  # the deferred writer and request threads both write
        self._last_us = 0

    def __call__(self) -> int:
        with self._lock:
            self._last_us = max(int(self._clock() * 1_000_000), self._last_us + 1)
            return self._last_us


def create_sqlite_engine(
    url: str | URL, *, synchronous: str, reached_at: Callable[[], int]
) -> Engine:
    """An engine for url; a memory URL becomes a fresh shared-cache database of this process."""
    url = make_url(url)
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
        # SQLiteDatabase holds one connection for the life of the engine; the pool only makes it.
        poolclass=QueuePool,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_SECONDS},
    )

    @event.listens_for(engine, "connect")
    def _configure_sqlite(dbapi_connection, _record) -> None:
        # The driver's own transaction handling off (SQLAlchemy's recipe for pysqlite): it would
        # wrap each write in BEGIN and COMMIT, three calls into SQLite, each releasing the GIL.
        # A statement on its own is its own transaction; SQLAlchemy's begin with BEGIN (below).
        dbapi_connection.isolation_level = None
        # The repository's statements name next_reached_at(); PostgreSQL has it as a function
        # of its own (see the migrations), here it is this process's clock.
        dbapi_connection.create_function("next_reached_at", 0, reached_at)
        cursor = dbapi_connection.cursor()
        if not memory:
            # WAL: readers never block the writer, and processes share the file safely. With
            # it, synchronous=NORMAL keeps every committed transaction through a crash of the
            # process (the WAL is written before commit returns) but not through power loss;
            # FULL adds an fsync per commit. Switching needs the file to itself: only once.
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # IMMEDIATE: the write lock from the start. A transaction that reads and then writes
        # (a migration) would otherwise fail at once, not wait, when another process on the
        # file wrote in between.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class SQLiteDatabase:
    """A SQLite database, used through one connection by one unit of work at a time.

    SQLite allows one writer at a time anyway, and a shared-cache memory database answers
    concurrent access with SQLITE_LOCKED ("database table is locked"), which no busy timeout
    retries. Serializing in the process removes that failure mode entirely; each unit of work
    is a few microseconds of SQLite. Other processes on a file wait for each other through
    the busy timeout. The held connection also keeps a memory database alive.

    A memory database is this process's alone, so its writes are deferred (DeferredWrites):
    answered at once and run a few ms later, before any other unit of work. A file's writes are
    committed before they return, for the other processes on it to read.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        synchronous: str = "NORMAL",
        clock: Callable[[], float] = time.time,
    ) -> None:
        url = make_url(url)
        self.engine = create_sqlite_engine(
            url, synchronous=synchronous, reached_at=ReachedAtClock(clock)
        )
        in_process_memory = is_memory_url(url)
        self.file_path = None if in_process_memory else url.database
        try:
            self._connection = _connect_when_unlocked(self.engine)
        except (OperationalError, InterfaceError) as error:
            self.engine.dispose()
            raise DatabaseUnavailable(f"cannot open the database: {error.orig}") from error
        driver = self.engine.dialect.loaded_dbapi
        self._unit_of_work = _SerialUnitOfWork(
            self._connection.connection.dbapi_connection,
            driver_errors=(driver.OperationalError, driver.InterfaceError),
            defer=in_process_memory,
        )
        self.level_versions = LevelVersions(
            None if self.file_path is None else f"{self.file_path}{VERSIONS_SUFFIX}"
        )

    def compile(self, statement: Executable) -> CompiledStatement:
        """statement compiled once for SQLite, to run inside cursor()."""
        return CompiledStatement(statement, self.engine.dialect)

    def cursor(self) -> "_SerialUnitOfWork":
        """A unit of work on the driver's cursor, for compiled statements.

        with database.cursor() as cursor: the lock is held, what was deferred has run, each
        statement is its own transaction (one call into SQLite for a write), and a driver error
        becomes DatabaseUnavailable. Statements that must stand or fall together need
        transaction().
        """
        return self._unit_of_work

    def write(
        self,
        statement: CompiledStatement,
        *,
        on_rows_changed: Callable[[int], None] | None = None,
        **values: Any,
    ) -> int | None:
        """Run a write: deferred in memory (None), else committed before this returns (the rows
        it changed).

        on_rows_changed(rows) is called once the write is made, if it changed any rows. A
        deferred batch runs the writes of one statement together, and reports the rows they
        changed in all once, to the callback given with the last of them.
        """
        return self._unit_of_work.write(statement, values, on_rows_changed)

    def finish_writes(self) -> None:
        """Make the deferred writes now, rather than a few milliseconds later."""
        with self._unit_of_work:
            pass  # entering runs them

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Yield the connection inside a transaction: committed on success, else rolled back."""
        with self._unit_of_work:
            connection = self._connection
            try:
                # Begun now (BEGIN IMMEDIATE: see the engine's begin event), not at the first
                # statement run through SQLAlchemy: a caller may use the driver's own cursor,
                # whose statements would otherwise each commit on their own.
                connection.begin()
                yield connection
                connection.commit()
            except (OperationalError, InterfaceError) as error:
                self._roll_back_quietly()
                raise DatabaseUnavailable(str(error.orig)) from error
            except BaseException:
                self._roll_back_quietly()
                raise

    @contextmanager
    def reader(self) -> Iterator[Any]:
        """A driver cursor on a second connection, for one long read that holds up no writer.

        One SELECT on it reads one snapshot of a file (WAL) for as long as it runs. A memory
        database is shared-cache, where a reader would lock the tables it reads against every
        writer ("database table is locked"): there it reads uncommitted, and so sees writes
        made while it runs.
        """
        with self._unit_of_work:
            pass  # what is deferred has run: the reader sees every write answered before it
        try:
            connection = self.engine.raw_connection()
        except (OperationalError, InterfaceError) as error:
            raise DatabaseUnavailable(str(error.orig)) from error
        except PoolTimeout as error:
            raise DatabaseUnavailable("every connection is in use: try again shortly") from error
        driver = connection.driver_connection
        dbapi = self.engine.dialect.loaded_dbapi
        driver_errors = (dbapi.OperationalError, dbapi.InterfaceError)
        try:
            if self.file_path is None:
                driver.execute("PRAGMA read_uncommitted = true")
            cursor = driver.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
        except driver_errors as error:
            raise DatabaseUnavailable(str(error)) from error
        finally:
            connection.close()  # back to the pool

    def _roll_back_quietly(self) -> None:
        # If the rollback fails too, the error that got us here is the one worth reporting.
        with suppress(OperationalError, InterfaceError):
            self._connection.rollback()

    def close(self) -> None:
        """Run what is deferred, then release the connection (a memory database is gone)."""
        try:
            self._unit_of_work.close()
        finally:
            self._connection.close()
            self.engine.dispose()
            self.level_versions.close()


def _connect_when_unlocked(engine: Engine) -> Connection:
    """engine.connect(), waiting while another process has the file locked at its start.

    Servers started together on a new file each switch it to WAL and migrate it; one that
    finds another in the middle of that waits longer than a request would.
    """
    deadline = time.monotonic() + OPEN_TIMEOUT_SECONDS
    while True:
        try:
            return engine.connect()
        except OperationalError as error:
            if "locked" not in str(error.orig) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class _SerialUnitOfWork:
    """One driver connection used by one unit of work at a time, deferred writes run first."""

    # A class rather than @contextmanager: this runs on every request, and a generator-based
    # context manager costs several times as much to enter and leave.
    __slots__ = ("_cursor", "_deferred", "_driver_errors", "_lock")

    def __init__(
        self, driver_connection, *, driver_errors: tuple[type[Exception], ...], defer: bool
    ) -> None:
        self._lock = threading.Lock()
        self._cursor = driver_connection.cursor()
        self._driver_errors = driver_errors
        self._deferred = DeferredWrites(self._run_pending) if defer else None

    def __enter__(self):
        self._lock.acquire()
        if self._deferred:
            try:
                self._run_deferred_locked()
            except BaseException:
                self._lock.release()
                raise
        return self._cursor

    def __exit__(self, error_type, error, traceback) -> bool:
        self._lock.release()
        if isinstance(error, self._driver_errors):
            raise DatabaseUnavailable(str(error)) from error
        return False

    def write(
        self,
        statement: CompiledStatement,
        values: dict,
        on_rows_changed: Callable[[int], None] | None,
    ) -> int | None:
        """Defer the write (None), or run it now as its own transaction (the rows changed)."""
        if self._deferred is not None:
            self._deferred.add(statement, values, on_rows_changed)
            return None
        with self as cursor:
            rows = statement.execute(cursor, **values).rowcount
        if rows > 0 and on_rows_changed is not None:
            on_rows_changed(rows)
        return rows

    def _run_pending(self) -> None:
        with self:
            pass

    def _run_deferred_locked(self) -> None:
        # Under the lock. One transaction for the batch; a statement run many times runs as one
        # executemany(), the loop in the driver.
        writes = self._deferred.take()
        if not writes:
            return
        cursor = self._cursor
        changes = []  # (on_rows_changed, rows), told once the batch is committed
        try:
            cursor.execute("BEGIN IMMEDIATE")
            for statement, group in groupby(writes, key=itemgetter(0)):
                batch = list(group)
                # The driver sums the rows each of the statement's runs changed.
                rows = statement.executemany(cursor, [values for _, values, _ in batch]).rowcount
                on_rows_changed = batch[-1][2]
                if rows > 0 and on_rows_changed is not None:
                    changes.append((on_rows_changed, rows))
            cursor.execute("COMMIT")
        except Exception as error:
            # Whatever the driver raised, the batch is rolled back whole and the connection
            # left with no transaction open, ready for the next unit of work.
            with suppress(Exception):
                cursor.execute("ROLLBACK")
            if isinstance(error, self._driver_errors):
                # The database is failing: the writes were answered, so they wait for it, and
                # until then every unit of work fails as this one.
                self._deferred.put_back(writes)
                logger.error("%d deferred writes wait for the database: %s", len(writes), error)
            else:
                # A write the database refuses (a constraint): trying again cannot help.
                logger.error("%d deferred writes lost: %s", len(writes), error)
            raise DatabaseUnavailable(str(error)) from error
        for on_rows_changed, rows in changes:
            on_rows_changed(rows)

    def close(self) -> None:
        """Stop the deferred writer and run what it left (raises if the database cannot)."""
        try:
            if self._deferred is not None:
                self._deferred.close()
                with self:
                    pass  # entering runs what is left
        finally:
            self._deferred = None
            self._cursor.close()
