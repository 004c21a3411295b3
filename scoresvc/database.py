"""Opening the database: engine set-up, SQLite pragmas, and the connection units of work use."""

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from sqlalchemy import Connection, Engine, Executable, create_engine, event
from sqlalchemy.engine import URL, Dialect, make_url
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
        # The driver's own connection under the held one, for compiled statements (cursor()).
        driver = engine.dialect.loaded_dbapi
        self._driver_errors = (driver.OperationalError, driver.InterfaceError)
        self._driver_connection = self._connection.connection.dbapi_connection
        self._driver_cursor = self._driver_connection.cursor()
        self._cursor_unit_of_work = _CursorUnitOfWork(self)

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
        self._database._lock.acquire()
        return self._database._driver_cursor

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
        merged = {**self._defaults, **values}
        if self._names is None:
            return cursor.execute(self.sql, merged)
        return cursor.execute(self.sql, [merged[name] for name in self._names])
