"""PostgreSQL through psycopg 3: any number of workers and replicas on one database."""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from select import select as wait_for_readable
from types import TracebackType
from typing import Any, Literal, cast

import psycopg
from sqlalchemy import (
    ClauseElement,
    Connection,
    Engine,
    create_engine,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import PoolProxiedConnection

from scoresvc.errors import DatabaseUnavailable, UserBanned
from scoresvc.storage.levelcache import NoLevelCache
from scoresvc.storage.schema import best_scores
from scoresvc.storage.statements import CompiledStatement, Cursor, is_banned, score_upsert
from scoresvc.storage.unitofwork import Listener, Listeners, UnitOfWork

DRIVER = "postgresql+psycopg"
CONNECT_TIMEOUT_SECONDS = 5
# A thread's connection idle this long is checked before use (one poll of its socket, no round
# trip): a server restarted meanwhile has closed it, and the request would fail for that alone.
# A connection in constant use needs no check: a restart fails its next request anyway.
IDLE_CHECK_SECONDS = 0.01
# Migrations of every replica take this advisory lock first (UnitOfWork.lock_schema), so that
# replicas starting together migrate one after another. Any fixed number: 'scoresvc' in ASCII.
_SCHEMA_LOCK = 0x73636F7265737663
# What lifts the query timeout (see _ThreadConnections) for one transaction.
_UNBOUNDED = "SET LOCAL statement_timeout = 0"


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
    pool's lock nor makes a round trip to check a connection out. A unit of one statement
    commits on its own (autocommit), so a write returns once every replica can read it.
    Replicas on other machines write too and share no memory with this process: nothing read
    is kept between requests as known to hold, and a score post learns of a ban from its own
    statement. A level's rules and seasons are kept all the same, for a top 15 to be read in
    one statement that also returns the level's stored version, against which the kept rules
    are confirmed (see Levels.assumed_board).
    """

    file_path: str | None = None

    def __init__(
        self,
        url: str | URL,
        *,
        query_timeout: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
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
        self._thread_connections = _ThreadConnections(self.engine, query_timeout=query_timeout)
        self._listeners = Listeners()
        self._clock = clock
        try:
            with self._thread_connections as cursor:
                self._clock_offset_us = _clock_offset_us(cursor, clock)
        except DatabaseUnavailable as error:
            self.engine.dispose()
            raise DatabaseUnavailable(f"cannot open the database: {error}") from error
        is_banned_user = self.compile(select(literal(1)).where(is_banned()))
        self.banned_users = BannedUsersAsked(self, is_banned_user)

    def compile(self, statement: ClauseElement) -> CompiledStatement:
        """statement compiled once for PostgreSQL, to run in a unit of work or a read."""
        return CompiledStatement(statement, self.engine.dialect)

    def unit_of_work(self, *, one_statement: bool = False) -> AbstractContextManager[UnitOfWork]:
        """A unit of work: see UnitOfWork. One statement runs in autocommit on this thread's
        connection (one round trip); a transaction has a pooled connection of its own."""
        if one_statement:
            return _OneStatement(self)
        return _Transaction(self)

    def read(self) -> "_ThreadConnections":
        """with database.read() as cursor: this thread's cursor, each statement on its own."""
        return self._thread_connections

    def subscribe(self, listener: Listener) -> None:
        """Tell listener of the changes of every unit of work committed from now on."""
        self._listeners.subscribe(listener)

    def level_cache(self, max_levels: int) -> NoLevelCache:
        """Nothing is kept: another replica may change any level at any time."""
        return NoLevelCache()

    def rules_cache(self, max_levels: int) -> NoLevelCache:
        """Nothing is kept as known to hold: another replica may change any level's rules at
        any time (Levels keeps them for reads that confirm them by the level's version)."""
        return NoLevelCache()

    def now_us(self) -> int:
        """The database server's clock now, in µs since the epoch (as measured at open)."""
        return int(self._clock() * 1_000_000) + self._clock_offset_us

    def score_write(self, keep: str, order: str) -> "ScoreWriteTellingBans":
        """A score post as a ScoreWrite that says, in the same round trip, whether the user is
        banned and whether it made a new best; reached when the database says."""
        upsert = score_upsert(self.engine.dialect, keep, order)
        written = upsert.returning(best_scores.c.user_id).cte("written")
        statement = select(is_banned(), select(func.count()).select_from(written).scalar_subquery())
        return ScoreWriteTellingBans(self.compile(statement))

    # Every write is made before its unit of work ends: none waits.
    writes_journaled = False

    def writes_waiting(self) -> bool:
        """None waits."""
        return False

    def finish_writes(self) -> None:
        """Nothing to do: every write is made before its unit of work ends."""

    @contextmanager
    def snapshot(self) -> Iterator[Any]:
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
        driver = _psycopg(pooled)
        driver_errors = self._thread_connections.driver_errors
        broken = False
        try:
            driver.autocommit = False
            driver.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            driver.read_only = True
            driver.execute(_UNBOUNDED)  # an export runs to the end, however long
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
        self._thread_connections.close()
        self.engine.dispose()


class BannedUsersAsked:
    """Who is banned, asked of the database each time: replicas share no memory to keep it in."""

    def __init__(self, database: PostgreSQLDatabase, statement: CompiledStatement) -> None:
        self._database = database
        self._statement = statement

    def __contains__(self, user_id: int) -> bool:
        with self._database.read() as cursor:
            return self._statement.execute(cursor, user_id=user_id).fetchone() is not None


class ScoreWriteTellingBans:
    """A score post on PostgreSQL: one round trip writes it and tells whether the user is
    banned (then nothing was written) and whether it made a new best."""

    __slots__ = ("_statement",)

    def __init__(self, statement: CompiledStatement) -> None:
        self._statement = statement

    def run(self, uow: UnitOfWork, *, user_id: int, **values: Any) -> int:
        """Write the post in uow: the new bests it made (0 or 1); UserBanned."""
        written: int
        banned, written = uow.execute(self._statement, user_id=user_id, **values).fetchone()
        if banned:
            raise UserBanned(user_id)
        uow.counted_new_bests(written)
        return written


class _OneStatement(UnitOfWork):
    """A unit of work of one statement, in autocommit on this thread's connection."""

    __slots__ = ("_cursor", "_database")

    def __init__(self, database: PostgreSQLDatabase) -> None:
        super().__init__()
        self._database = database
        self._cursor: Cursor | None = None

    def __enter__(self) -> "_OneStatement":
        return self

    def execute(self, statement: CompiledStatement, **values: Any) -> Cursor:
        if self._cursor is not None:
            raise RuntimeError("a unit of one statement ran a second: use a transaction")
        self._cursor = self._database._thread_connections.__enter__()
        return statement.execute(self._cursor, **values)

    def __exit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        if self._cursor is not None:
            self._cursor = None
            # A driver error: the connection is dropped, and DatabaseUnavailable raised.
            self._database._thread_connections.__exit__(error_type, error, traceback)
        if error is None and self.changes:
            self._database._listeners.tell(self.changes)
        return False


class _Transaction(UnitOfWork):
    """A unit of work in one transaction, on a pooled connection of its own."""

    __slots__ = ("_connection", "_cursor", "_database", "_transaction")

    def __init__(self, database: PostgreSQLDatabase) -> None:
        super().__init__()
        self._database = database

    def __enter__(self) -> "_Transaction":
        try:
            self._connection = self._database.engine.connect()
        except (OperationalError, InterfaceError) as error:
            raise DatabaseUnavailable(str(error.orig).strip()) from error
        self._transaction = self._connection.begin()
        self._cursor = self._connection.connection.cursor()  # the driver's, in the transaction
        # The admin API's changes and the migrations run to the end, whatever the connection
        # was bounded to by an earlier user of it (see _ThreadConnections).
        self._cursor.execute(_UNBOUNDED)
        return self

    def execute(self, statement: CompiledStatement, **values: Any) -> Cursor:
        return statement.execute(self._cursor, **values)

    def executemany(self, statement: CompiledStatement, batch: list[dict[str, Any]]) -> Cursor:
        return statement.executemany(self._cursor, batch)

    def lock_scores(self) -> None:
        # Score posts wait while this runs, and one that began before it has finished.
        self._connection.execute(text("LOCK TABLE best_scores IN SHARE ROW EXCLUSIVE MODE"))

    def lock_schema(self) -> None:
        self._connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})

    @property
    def connection(self) -> Connection:
        return self._connection

    def __exit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        driver_errors = self._database._thread_connections.driver_errors
        committed = False
        try:
            if error is None:
                self._transaction.commit()
                committed = True
            else:
                with suppress(Exception):
                    self._transaction.rollback()
        except (OperationalError, InterfaceError) as commit_error:
            error = commit_error
        finally:
            with suppress(Exception):
                self._cursor.close()
            with suppress(Exception):
                self._connection.close()
        if isinstance(error, (OperationalError, InterfaceError)):
            raise DatabaseUnavailable(str(error.orig).strip()) from error
        if isinstance(error, driver_errors):
            raise DatabaseUnavailable(str(error).strip()) from error
        if committed and self.changes:
            self._database._listeners.tell(self.changes)
        return False


def _clock_offset_us(cursor: Cursor, clock: Callable[[], float]) -> int:
    """How far the server's clock is ahead of clock, in µs: read between two readings of it.

    Seasons end by the database's clock, so that replicas whose clocks disagree agree on which
    season a request falls in (to within the round trip this is measured in).
    """
    before = clock()
    server_us: int
    (server_us,) = cursor.execute(
        "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
    ).fetchone()
    after = clock()
    return server_us - int((before + after) / 2 * 1_000_000)


def _psycopg(pooled: PoolProxiedConnection) -> psycopg.Connection[Any]:
    # The pool's driver_connection is None only once the connection is invalidated.
    return cast(psycopg.Connection[Any], pooled.driver_connection)


def _closed_by_server(connection: psycopg.Connection[Any]) -> bool:
    """Whether the server has said something, or hung up, on a connection with no query running.

    Between queries a server sends nothing but its goodbye (a restart's "terminating
    connection") before it closes the socket: anything to read means the connection is over.
    """
    try:
        readable, _, _ = wait_for_readable([connection.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class _ThreadConnections:
    """The context manager read() returns: the calling thread's own connection and cursor.

    These connections run what players' requests ask, so each statement on them is bounded
    by the query timeout: past it, PostgreSQL cancels it (DatabaseUnavailable, a 503).
    """

    def __init__(self, engine: Engine, *, query_timeout: float) -> None:
        self._engine = engine
        self._statement_timeout = f"{round(query_timeout * 1000)}ms"
        self._local = threading.local()
        self._lock = threading.Lock()  # guards _held, touched when a connection is made or lost
        self._held: set[PoolProxiedConnection] = (
            set()
        )  # every thread's pooled connection, for close()
        driver = engine.dialect.loaded_dbapi
        self.driver_errors = (driver.OperationalError, driver.InterfaceError)

    def __enter__(self) -> psycopg.Cursor[Any]:
        local = self._local
        cursor: psycopg.Cursor[Any] | None = getattr(local, "cursor", None)
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

    def __exit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        if isinstance(error, self.driver_errors):
            self._discard()  # the server went away, or the connection broke: a new one next time
            raise DatabaseUnavailable(str(error).strip()) from error
        return False

    def _connect(self) -> psycopg.Cursor[Any]:
        try:
            pooled = self._engine.raw_connection()
        except DBAPIError as error:
            raise DatabaseUnavailable(str(error.orig).strip()) from error
        except self.driver_errors as error:  # as the pool's connect raises them
            raise DatabaseUnavailable(str(error).strip()) from error
        driver = _psycopg(pooled)
        driver.autocommit = True
        with self._lock:
            self._held.add(pooled)
        self._local.pooled = pooled
        self._local.cursor = cursor = driver.cursor()
        # For the connection's life (0 leaves statements unbounded). The pool may later give
        # it to a transaction or a snapshot: those lift the bound for themselves (SET LOCAL).
        cursor.execute(
            "SELECT set_config('statement_timeout', %s, false)", (self._statement_timeout,)
        )
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
