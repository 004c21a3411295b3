"""SQLite: in this process's memory, or a file any number of processes on one machine share."""

import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from types import TracebackType
from typing import Any, Literal, cast

from sqlalchemy import (
    BigInteger,
    ClauseElement,
    Connection,
    Engine,
    bindparam,
    create_engine,
    event,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from scoresvc.batchthread import BatchThread
from scoresvc.errors import DatabaseUnavailable, UserBanned
from scoresvc.settingvalues import SYNCHRONOUS_LEVELS, is_memory_url
from scoresvc.storage.bannedusers import BannedUsersCache
from scoresvc.storage.deferredwrites import DeferredWrites, PendingWrites
from scoresvc.storage.levelcache import LevelCache
from scoresvc.storage.levelversions import VERSIONS_SUFFIX, LevelVersions
from scoresvc.storage.statements import (
    BatchedStatement,
    CompiledStatement,
    Cursor,
    banned_user_ids,
    score_upsert,
)
from scoresvc.storage.unitofwork import Changes, Listener, Listeners, UnitOfWork
from scoresvc.storage.writejournal import JOURNAL_SUFFIX, WriteJournal

logger = logging.getLogger("scoresvc")

# How long a write waits for another process's write to a file to finish.
BUSY_TIMEOUT_SECONDS = 5.0
# How long opening a file waits for other processes starting on it (see _connect_when_unlocked).
OPEN_TIMEOUT_SECONDS = 30.0
# The files SQLite keeps beside a database file: its rollback journal, WAL and shared memory.
# SQLite creates each with the database file's own mode, so an owner-only file keeps them so.
FILES_BESIDE = ("-journal", "-wal", "-shm")
# After a batch of pending writes, the applier thread lets writes gather this long: under load,
# one batch (and one hand-over of the GIL per statement in it) serves a few dozen requests.
GATHER_SECONDS = 0.005
# After the database failed to take a batch, the applier thread tries again this much later.
RETRY_SECONDS = 1.0
# SQLite calls the deadline's check once per this many steps of its virtual machine: a few
# microseconds of work each, so a check costs nothing a request would notice.
_PROGRESS_STEPS = 10_000


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
    def _configure_sqlite(
        dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry
    ) -> None:
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
    """A SQLite database, used through one connection by one unit of work or read at a time.

    SQLite allows one writer at a time anyway, and a shared-cache memory database answers
    concurrent access with SQLITE_LOCKED ("database table is locked"), which no busy timeout
    retries. Serializing in the process removes that failure mode entirely; each unit of work
    is a few microseconds of SQLite. Other processes on a file wait for each other through
    the busy timeout. The held connection also keeps a memory database alive.

    Every process on one database is on one machine, so they share level versions (a file
    beside the database file; this process's memory for a memory database): a unit of work
    publishes its changes there, and each process keeps lists and the banned users in memory
    for as long as their versions hold.

    Writes of one statement (score posts, stored keys) are accepted at once and applied a few
    ms later in batches, before any other read or unit of work (see deferredwrites): in a list
    for a memory database, which is this process's alone; in the write journal beside a file,
    which survives any process killed and which every process on the file applies. With
    synchronous FULL a file's writes are committed before they return. background_apply=False
    leaves a journal's records to another process (the supervisor's applier) but for those a
    read or unit of work here must see.

    A read or a unit of one statement (what players' requests run) is interrupted once it has
    held the database query_timeout seconds (DatabaseUnavailable: 503); transactions (the
    admin API, migrations) and deferred writes, which were already answered, run to the end.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        synchronous: str = "NORMAL",
        clock: Callable[[], float] = time.time,
        query_timeout: float = 0.0,
        background_apply: bool = True,
    ) -> None:
        url = make_url(url)
        self._clock = clock
        self._reached_at = ReachedAtClock(clock)
        self.engine = create_sqlite_engine(
            url, synchronous=synchronous, reached_at=self._reached_at
        )
        in_process_memory = is_memory_url(url)
        self.file_path = None if in_process_memory else url.database
        try:
            if self.file_path is not None:
                claim_database_file(self.file_path)
            self._connection = _connect_when_unlocked(self.engine)
        except (OperationalError, InterfaceError) as error:
            self.engine.dispose()
            raise DatabaseUnavailable(f"cannot open the database: {error.orig}") from error
        except OSError as error:
            self.engine.dispose()
            raise DatabaseUnavailable(f"cannot open the database: {error}") from error
        except BaseException:
            self.engine.dispose()
            raise
        driver = self.engine.dialect.loaded_dbapi
        self._listeners = Listeners()
        pending = None
        try:
            pending = _pending_writes(self.file_path, synchronous)
            self.versions = LevelVersions(
                None if self.file_path is None else f"{self.file_path}{VERSIONS_SUFFIX}"
            )
        except BaseException:  # a file refused (a link, another's): nothing left open
            if pending is not None:
                pending.close()
            self._connection.close()
            self.engine.dispose()
            raise
        self.writes_journaled = isinstance(pending, WriteJournal) and pending.accepting
        self._access = _SerialAccess(
            # pysqlite's connection (the pool's attribute is None only once it is invalidated)
            cast(sqlite3.Connection, self._connection.connection.dbapi_connection),
            driver_errors=(driver.OperationalError, driver.InterfaceError),
            pending=pending,
            # A journal left to another process is applied here only before reads; a list,
            # this process's alone, always here.
            applies_in_background=background_apply or not self.writes_journaled,
            on_applied=self._listeners.tell,
            query_timeout=query_timeout,
        )
        self._banned_user_ids = self.compile(banned_user_ids())
        self.banned_users = BannedUsersCache(self.versions, self._read_banned_users)

    def compile(self, statement: ClauseElement) -> CompiledStatement:
        """statement compiled once for SQLite, to run in a unit of work or a read."""
        return CompiledStatement(statement, self.engine.dialect)

    def unit_of_work(self, *, one_statement: bool = False) -> AbstractContextManager[UnitOfWork]:
        """A unit of work: see UnitOfWork. One statement runs without BEGIN and COMMIT (one
        call into SQLite for a write), and in memory its write() is deferred."""
        if one_statement:
            return _OneStatement(self)
        return _Transaction(self)

    def read(self) -> "_SerialAccess":
        """with database.read() as cursor: the driver's cursor, for reads only.

        The lock is held and what was deferred has been written; each statement is its own
        transaction; a driver error becomes DatabaseUnavailable.
        """
        return self._access

    def subscribe(self, listener: Listener) -> None:
        """Tell listener of the changes of every unit of work committed from now on."""
        self._listeners.subscribe(listener)

    def level_cache(self, max_levels: int) -> LevelCache:
        """Values kept in memory per level (or board), each while no write changes the level."""
        return LevelCache(self.versions.current, max_levels=max_levels)

    def rules_cache(self, max_levels: int) -> LevelCache:
        """Values kept in memory per level, each while the level's rules and seasons hold."""
        return LevelCache(self.versions.rules, max_levels=max_levels)

    def now_us(self) -> int:
        """This machine's clock now, in µs since the epoch: every process on the file reads it."""
        return int(self._clock() * 1_000_000)

    def score_write(self, keep: str, order: str) -> "ScoreWriteAfterBanCheck":
        """A score post as a ScoreWrite, reached when it is accepted (by this process's clock),
        with a form that applies a batch of posts in one statement."""
        dialect = self.engine.dialect
        reached_at = bindparam("reached_at", type_=BigInteger)
        statement = BatchedStatement(
            score_upsert(dialect, keep, order, reached_at=reached_at),
            score_upsert(dialect, keep, order, batch=True),
            dialect,
        )
        return ScoreWriteAfterBanCheck(statement, self.banned_users, self._reached_at)

    def finish_writes(self) -> None:
        """Make the deferred writes now, rather than a few milliseconds later."""
        with self._access:
            pass  # entering runs them

    def writes_waiting(self) -> bool:
        """Whether any deferred write is waiting (a look at shared memory: no lock taken)."""
        pending = self._access.pending
        return pending is not None and bool(pending)

    @contextmanager
    def snapshot(self) -> Iterator[Any]:
        """A driver cursor on a second connection, for one long read that holds up no writer.

        One SELECT on it reads one snapshot of a file (WAL) for as long as it runs. A memory
        database is shared-cache, where a reader would lock the tables it reads against every
        writer ("database table is locked"): there it reads uncommitted, and so sees writes
        made while it runs.
        """
        with self._access:
            pass  # what is deferred has run: the reader sees every write answered before it
        try:
            connection = self.engine.raw_connection()
        except (OperationalError, InterfaceError) as error:
            raise DatabaseUnavailable(str(error.orig)) from error
        except PoolTimeout as error:
            raise DatabaseUnavailable("every connection is in use: try again shortly") from error
        # pysqlite's connection (the pool's attribute is None only once it is invalidated)
        driver = cast(sqlite3.Connection, connection.driver_connection)
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

    def close(self) -> None:
        """Make what is deferred, then release the connection (a memory database is gone)."""
        try:
            self._access.close()
        finally:
            self._connection.close()
            self.engine.dispose()
            self.versions.close()

    def _publish(self, changes: Changes) -> None:
        # After the commit: a reader of a new version sees what the unit of work wrote.
        for level_id in changes.levels:
            self.versions.changed(level_id)
        for level_id in changes.rules:
            self.versions.rules_changed(level_id)
        if changes.bans:
            self.versions.bans_changed()
        self._listeners.tell(changes)

    def _read_banned_users(self) -> list[int]:
        with self._access as cursor:
            return [user_id for (user_id,) in self._banned_user_ids.execute(cursor).fetchall()]


class ScoreWriteAfterBanCheck:
    """A score post on SQLite: the banned users are in memory, so a ban is told before writing.

    The write itself usually waits to be applied (see deferredwrites): then whether it made a
    new best is not known when it returns. It is reached when it is accepted, not applied.
    """

    __slots__ = ("_banned", "_reached_at", "_statement")

    def __init__(
        self, statement: BatchedStatement, banned: BannedUsersCache, reached_at: ReachedAtClock
    ) -> None:
        self._statement = statement
        self._banned = banned
        self._reached_at = reached_at

    def run(self, uow: UnitOfWork, *, user_id: int, **values: Any) -> int | None:
        """Write the post in uow: the new bests it made, or None if deferred; UserBanned."""
        if user_id in self._banned:
            raise UserBanned(user_id)
        return uow.write(
            self._statement,
            new_bests=True,
            user_id=user_id,
            reached_at=self._reached_at(),
            **values,
        )


class _OneStatement(UnitOfWork):
    """A unit of work of one statement, its own transaction; in memory, its write deferred."""

    __slots__ = ("_access", "_cursor", "_database")

    def __init__(self, database: SQLiteDatabase) -> None:
        super().__init__()
        self._database = database
        self._access = database._access
        self._cursor: Cursor | None = None

    def __enter__(self) -> "_OneStatement":
        return self  # the lock is taken by the statement, if one runs here at all

    def execute(self, statement: CompiledStatement, **values: Any) -> Cursor:
        if self._cursor is not None:
            raise RuntimeError("a unit of one statement ran a second: use a transaction")
        self._cursor = self._access.__enter__()  # the lock, once what was deferred is written
        return statement.execute(self._cursor, **values)

    def write(
        self, statement: CompiledStatement, *, new_bests: bool = False, **values: Any
    ) -> int | None:
        if self._access.accept(statement, values, new_bests):
            return None
        return super().write(statement, new_bests=new_bests, **values)

    def __exit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        if self._cursor is not None:
            self._cursor = None
            self._access.__exit__(error_type, error, traceback)  # a driver error: unavailable
        if error is None and self.changes:
            self._database._publish(self.changes)
        return False


class _Transaction(UnitOfWork):
    """A unit of work in one transaction (BEGIN IMMEDIATE: the write lock from its start)."""

    __slots__ = ("_access", "_cursor", "_database")

    def __init__(self, database: SQLiteDatabase) -> None:
        super().__init__()
        self._database = database
        self._access = database._access

    def __enter__(self) -> "_Transaction":
        self._cursor = self._access.enter_unbounded()
        try:
            # Begun now, through SQLAlchemy (see the engine's begin event), not at the first
            # statement: statements on the driver's cursor would otherwise each commit alone.
            self._database._connection.begin()
        except BaseException as error:
            self._access.__exit__(type(error), error, None)
            raise _unavailable(error) from error
        return self

    def execute(self, statement: CompiledStatement, **values: Any) -> Cursor:
        return statement.execute(self._cursor, **values)

    def executemany(self, statement: CompiledStatement, batch: list[dict[str, Any]]) -> Cursor:
        return statement.executemany(self._cursor, batch)

    @property
    def connection(self) -> Connection:
        return self._database._connection

    def __exit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        connection = self._database._connection
        committed = False
        try:
            if error is None:
                connection.commit()
                committed = True
            else:
                _roll_back_quietly(connection)
        except (OperationalError, InterfaceError) as commit_error:
            _roll_back_quietly(connection)
            error = commit_error
        finally:
            # A driver error raised in the block becomes DatabaseUnavailable here.
            self._access.__exit__(type(error) if error else None, error, traceback)
        if isinstance(error, (OperationalError, InterfaceError)):
            raise DatabaseUnavailable(str(error.orig)) from error
        if committed and self.changes:
            self._database._publish(self.changes)
        return False


def _pending_writes(file_path: str | None, synchronous: str) -> PendingWrites | None:
    """Where a database's writes of one statement wait to be applied, if they wait at all.

    In this process's memory: a list. A file: its write journal, unless every commit is to be
    synced (FULL), which a write accepted into the journal would not be: then a journal left
    from before is only applied.
    """
    if file_path is None:
        return DeferredWrites()
    path = f"{file_path}{JOURNAL_SUFFIX}"
    if synchronous.upper() in ("FULL", "EXTRA"):
        return WriteJournal(path, accepting=False) if os.path.lexists(path) else None
    return WriteJournal(path)


def _unavailable(error: BaseException) -> BaseException:
    if isinstance(error, (OperationalError, InterfaceError)):
        return DatabaseUnavailable(str(error.orig))
    return error


def _roll_back_quietly(connection: Connection) -> None:
    # If the rollback fails too, the error that got us here is the one worth reporting.
    with suppress(OperationalError, InterfaceError):
        connection.rollback()


def claim_database_file(path: str) -> None:
    """Create the database file readable and writable by its owner only, whatever the umask,
    and refuse it, or a file SQLite keeps beside it, where a symbolic link stands instead.

    A link planted there would have the service write its scores and signing secret wherever
    it points. SQLite makes the journal, WAL and shared memory with the database file's mode.
    """
    for name in (path, *(f"{path}{suffix}" for suffix in FILES_BESIDE)):
        if os.path.islink(name):
            raise OSError(f"{name} is a symbolic link; the database's files must be plain files")
    # O_NOFOLLOW: a link made between the check and here is refused too (ELOOP).
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.close(descriptor)


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


class _SerialAccess:
    """One driver connection used by one unit of work or read at a time, pending writes first."""

    # A class rather than @contextmanager: this runs on every request, and a generator-based
    # context manager costs several times as much to enter and leave.
    __slots__ = (
        "_applier",
        "_applies_in_background",
        "_cursor",
        "_deadline",
        "_driver_errors",
        "_holder",
        "_lock",
        "_nested",
        "_on_applied",
        "_pending_ready",
        "_query_timeout",
        "pending",
    )

    def __init__(
        self,
        driver_connection: sqlite3.Connection,
        *,
        driver_errors: tuple[type[Exception], ...],
        pending: PendingWrites | None,
        applies_in_background: bool,
        on_applied: Callable[[Changes], None],
        query_timeout: float,
    ) -> None:
        self._lock = threading.Lock()
        # The thread holding the lock in a transaction, and how many reads it runs inside it:
        # a read inside the thread's own unit of work (a cache refilled in the middle of it)
        # runs on the unit of work's cursor rather than wait for a lock it holds itself.
        self._holder: int | None = None
        self._nested = 0
        self._cursor = driver_connection.cursor()
        self._driver_errors = driver_errors
        # The monotonic time past which SQLite interrupts what runs (0: no bound). Only the
        # holder of the lock sets it, so the check reads it without one.
        self._query_timeout = query_timeout
        self._deadline = 0.0
        if query_timeout > 0:
            driver_connection.set_progress_handler(self._past_deadline, _PROGRESS_STEPS)
        # Writes accepted to be applied later (see deferredwrites), by a thread of this
        # process's if no read or unit of work applies them first (or, where they wait in a
        # write journal, by another process: see serving/applier.py); None: each write is made
        # before it returns.
        self.pending = pending
        self._pending_ready = False  # known once the first write is accepted
        self._applies_in_background = applies_in_background
        self._on_applied = on_applied
        self._applier = BatchThread(
            self._apply_in_background, name="scoresvc-pending-writes", gather_seconds=GATHER_SECONDS
        )

    def accept(self, statement: CompiledStatement, values: dict[str, Any], new_bests: bool) -> bool:
        """Accept a write to apply later: whether it was (if not, run it now)."""
        pending = self.pending
        if pending is None or pending.failing:
            # While the database fails to take what waits, a write is run at once, and fails
            # as it would: its request is refused rather than answered for a database that
            # may not come back.
            return False
        if not self._pending_ready:
            with self as cursor:
                self._pending_ready = pending.ready(cursor)
            if not self._pending_ready:
                return False
        if not pending.add(statement, values, new_bests):
            return False
        if self._applies_in_background:
            self._applier.wake()
        return True

    def __enter__(self) -> sqlite3.Cursor:
        """The cursor, under the lock, for statements bounded by the query timeout."""
        if self._holder == threading.get_ident():
            self._nested += 1  # inside this thread's own transaction: its cursor, as it is
            return self._cursor
        cursor = self._enter()
        if self._query_timeout > 0:
            self._deadline = time.monotonic() + self._query_timeout
        return cursor

    def enter_unbounded(self) -> sqlite3.Cursor:
        """The cursor, under the lock, for a transaction, which runs to the end."""
        cursor = self._enter()
        self._holder = threading.get_ident()
        return cursor

    def _enter(self) -> sqlite3.Cursor:
        self._lock.acquire()
        pending = self.pending
        if pending:
            try:
                self._apply_locked(pending)
            except BaseException:
                self._lock.release()
                raise
        return self._cursor

    def __exit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        if self._nested:
            self._nested -= 1  # the transaction goes on, and holds the lock
        else:
            self._deadline = 0.0
            self._holder = None
            self._lock.release()
        if isinstance(error, self._driver_errors):
            if str(error) == "interrupted":
                raise DatabaseUnavailable(
                    f"a query ran past {self._query_timeout:g} s and was interrupted"
                ) from error
            raise DatabaseUnavailable(str(error)) from error
        return False

    def _past_deadline(self) -> bool:
        # SQLite's progress handler: a true answer interrupts the statement ("interrupted").
        deadline = self._deadline
        return deadline != 0.0 and time.monotonic() > deadline

    def _apply_in_background(self) -> None:
        try:
            with self:
                pass  # entering applies what is pending
        except DatabaseUnavailable:
            # Logged where it failed. The writes wait for the database to come back; a unit
            # of work tries them sooner, and the pause keeps the log from filling.
            self._applier.wake()
            self._applier.pause(RETRY_SECONDS)
        except Exception:
            logger.exception("applying pending writes failed")

    def _apply_locked(self, pending: PendingWrites) -> None:
        # Under the lock: the pending writes' batch, a transaction of its own.
        try:
            new_bests = pending.apply(self._cursor, self._driver_errors)
        except Exception as error:
            if isinstance(error, self._driver_errors) and not pending.failing:
                # Said once a streak: failing stays set (a journal's, for every process on the
                # file) until a batch goes through, and each retry in between fails the same.
                logger.error("%s wait for the database: %s", pending.waiting(), error)
            pending.failing = True
            raise DatabaseUnavailable(f"pending writes could not be applied: {error}") from error
        pending.failing = False
        # The levels were published when the writes were accepted (any read applies them
        # first); what only the writes themselves tell is published now.
        if new_bests:
            changes = Changes()
            changes.new_bests = new_bests
            self._on_applied(changes)

    def close(self) -> None:
        """Stop the applier thread and apply what it left. If the database cannot take it,
        what a journal holds waits there for the next process to open the file; what a list
        holds is lost, and DatabaseUnavailable raised."""
        pending = self.pending
        try:
            self._applier.close()
            if pending is not None:
                try:
                    with self:
                        pass  # entering applies what is left
                except DatabaseUnavailable:
                    if not pending.outlives_process:
                        raise
                    logger.warning("writes left in the write journal for the next start")
        finally:
            self.pending = None
            self._cursor.close()
            if pending is not None:
                pending.close()
