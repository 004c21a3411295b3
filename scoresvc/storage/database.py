"""Opening the database: engine set-up, SQLite pragmas, and the connection units of work use."""

import logging
import threading
import uuid
from collections.abc import Hashable, Iterator
from contextlib import contextmanager, suppress
from itertools import groupby
from operator import itemgetter

from sqlalchemy import Connection, Engine, Executable, create_engine, event
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.pool import QueuePool

from scoresvc.errors import DatabaseUnavailable
from scoresvc.storage.deferredwrites import DeferredWrites

logger = logging.getLogger("scoresvc")

SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
BUSY_TIMEOUT_SECONDS = 5.0


def is_memory_url(url: str | URL) -> bool:
    """True for the SQLite URLs that mean 'a database in memory'."""
    url = make_url(url)
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def ends_with_process(engine: Engine) -> bool:
    """True if the engine's database is in this process's memory (nothing else can read it)."""
    return is_memory_url(engine.url) or engine.url.query.get("mode") == "memory"


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
        # The driver's own transaction handling off (SQLAlchemy's recipe for pysqlite): it would
        # wrap each write in BEGIN and COMMIT, three calls into SQLite, each releasing the GIL.
        # A statement on its own is its own transaction; SQLAlchemy's begin with BEGIN (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not memory:
            # WAL: readers never block the writer. With it, synchronous=NORMAL keeps every
            # committed transaction through a crash of the process (the WAL is written before
            # commit returns) but not through power loss; FULL adds an fsync per commit.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine


class Database:
    """Runs units of work on one connection, one at a time, each after the writes deferred so far.

    SQLite allows one writer at a time anyway, and a shared-cache memory database answers
    concurrent access with SQLITE_LOCKED ("database table is locked"), which no busy timeout
    retries. Serializing in the process removes that failure mode entirely; each unit of work
    is a few microseconds of SQLite. The held connection also keeps a memory database alive
    for the life of the process. Writes that need not wait for the lock are deferred (defer()):
    a thread of their own runs them in batches, and so does the next unit of work.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        try:
            self._connection = engine.connect()
        except (OperationalError, InterfaceError) as error:
            raise DatabaseUnavailable(f"cannot open the database: {error.orig}") from error
        # The driver's own connection under the held one, for compiled statements (cursor()).
        driver = engine.dialect.loaded_dbapi
        self._driver_errors = (driver.OperationalError, driver.InterfaceError)
        self._driver_connection = self._connection.connection.dbapi_connection
        self._driver_cursor = self._driver_connection.cursor()
        self._cursor_unit_of_work = _CursorUnitOfWork(self)
        self._deferred = DeferredWrites(self.run_deferred)
        self.ends_with_process = ends_with_process(engine)

    @property
    def deferral_lock(self) -> threading.Lock:
        """Held to defer a write, and for whatever must be ordered with deferred writes."""
        return self._deferred.lock

    def defer(self, statement: "CompiledStatement", tag: Hashable, **values) -> None:
        """Run statement with values a few ms from now, before any later unit of work.

        Under deferral_lock; tag marks the write for is_pending() (the repository's: a level).
        A failure is logged: the caller has been told the write happened. Only for writes a
        crash may lose: to a database that ends with the process, or kept elsewhere too.
        """
        self._deferred.add(statement, values, tag)

    def is_pending(self, tag: Hashable) -> bool:
        """Whether a deferred write marked tag has not run yet (under deferral_lock)."""
        return self._deferred.pending(tag)

    def has_pending(self) -> bool:
        """Whether any deferred write has not run yet (under deferral_lock)."""
        return bool(self._deferred)

    def run_deferred(self) -> None:
        """Run every deferred write now (its thread does so every few ms)."""
        with self.cursor():
            pass  # entering a unit of work runs them

    def _run_deferred_locked(self) -> None:
        # Under the lock. One transaction for the batch; a statement run many times runs as one
        # executemany(), the loop in the driver.
        with self._deferred.lock:
            statements = self._deferred.take()
        if not statements:
            return
        cursor = self._driver_cursor
        try:
            cursor.execute("BEGIN")
            for statement, batch in groupby(statements, key=itemgetter(0)):
                statement.executemany(cursor, [values for _, values, _ in batch])
            cursor.execute("COMMIT")
        except Exception as error:
            # Whatever the driver raised, the batch is rolled back whole and the connection
            # left with no transaction open, ready for the next unit of work.
            with suppress(Exception):
                cursor.execute("ROLLBACK")
            if isinstance(error, self._driver_errors):
                # The database is failing (a full disk, an I/O error): the writes were answered,
                # so they wait for it, and until then every unit of work fails as this one.
                with self._deferred.lock:
                    self._deferred.put_back(statements)
                logger.error("%d deferred writes wait for the database: %s", len(statements), error)
            else:
                # A write the database refuses (a constraint): trying again cannot help.
                logger.error("%d deferred writes lost: %s", len(statements), error)
            raise DatabaseUnavailable(str(error)) from error

    def compile(self, statement: Executable) -> "CompiledStatement":
        """statement compiled once for this database's dialect, to run inside cursor()."""
        return CompiledStatement(statement, self.engine.dialect)

    def cursor(self) -> "_CursorUnitOfWork":
        """A unit of work on the driver's cursor, for compiled statements.

        with database.cursor() as cursor: the lock is held, each statement is its own
        transaction (one call into SQLite for a write), and a driver error becomes
        DatabaseUnavailable. Statements that must stand or fall together need transaction().
        """
        return self._cursor_unit_of_work

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Yield the connection inside a transaction: committed on success, else rolled back."""
        with self._lock:
            if self._deferred:
                self._run_deferred_locked()
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
        self._deferred.close()
        try:
            self.run_deferred()
        finally:
            self._close_connection()

    def _close_connection(self) -> None:
        with self._lock:
            self._driver_cursor.close()
            self._connection.close()
            self.engine.dispose()


class _CursorUnitOfWork:
    """The context manager Database.cursor() returns; one per database, entered under its lock."""

    # A class rather than @contextmanager: this runs on every request, and a generator-based
    # context manager costs several times as much to enter and leave.
    __slots__ = ("_database",)

    def __init__(self, database: Database) -> None:
        self._database = database

    def __enter__(self):
        database = self._database
        database._lock.acquire()
        if database._deferred:
            try:
                database._run_deferred_locked()
            except BaseException:
                database._lock.release()
                raise
        return database._driver_cursor

    def __exit__(self, error_type, error, traceback) -> bool:
        self._database._lock.release()
        if isinstance(error, self._database._driver_errors):
            raise DatabaseUnavailable(str(error)) from error
        return False


class CompiledStatement:
    """A SQLAlchemy Core statement compiled once for a dialect, run on a driver cursor.

    Connection.execute() looks its compiled form up in a cache and builds an execution context
    and a Result around every call, several times the work of the driver's own execute(). The
    SQL text and its parameter order still come from SQLAlchemy's compiler for the engine's
    dialect, so no SQL written for one database leaks into the repository.
    """

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        # Values go to the driver as given: refuse a statement whose types would convert them.
        binds = [dialect.type_descriptor(bind.type) for bind in compiled.binds.values()]
        columns = [
            dialect.type_descriptor(c.type) for c in getattr(statement, "selected_columns", ())
        ]
        if any(kind.bind_processor(dialect) for kind in binds) or any(
            kind.result_processor(dialect, None) for kind in columns
        ):
            raise ValueError(f"this statement needs SQLAlchemy's type processing: {statement}")
        self.sql = str(compiled)
        self._defaults = compiled.params  # values fixed in the statement, such as a LIMIT
        self._names = tuple(compiled.positiontup or ()) if compiled.positional else None

    def execute(self, cursor, **values):
        """Run the statement on a driver cursor with the given parameter values; the cursor."""
        return cursor.execute(self.sql, self._parameters(values))

    def executemany(self, cursor, batch: list[dict]):
        """Run the statement once per set of values in batch, in the driver; the cursor."""
        return cursor.executemany(self.sql, [self._parameters(values) for values in batch])

    def _parameters(self, values: dict):
        merged = {**self._defaults, **values}
        if self._names is None:
            return merged
        return [merged[name] for name in self._names]
