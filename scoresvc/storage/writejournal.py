"""The write journal: writes of one statement that any process on a SQLite file accepts at once.

A score post (or a stored key) on a SQLite file used to wait its turn for the file's write lock,
and paid a commit of its own: with several workers, every post queued behind every other
process's, and SQLite makes a waiting process sleep and poll. Here a worker writes the post as a
record into a file mapped into every process, `scores.db-writes` beside the database, and
answers at once; the records are applied to the database in batches, one transaction each, a
few milliseconds later or before any read that must see them, whichever comes first.

- **Durable as a commit.** A record is in the kernel's page cache once its region's count
  says so: a process killed at any moment, or every one of them, loses none (nor does SQLite's
  `synchronous=NORMAL` commit); like that commit, it is not synced to the disk. A record whose
  count was not written was never answered. With `synchronous=FULL` (a sync per commit) there
  is no journal: each write commits before it is answered.
- **Regions.** Each process appends to a region of its own, claimed with an OFD lock on one
  byte of the file, which the kernel releases when the process dies; so a region has one
  writer, and its count needs no lock across processes. A region is a ring of fixed-size
  slots: its owner never overwrites a record not yet applied.
- **Applied once.** Any process applies every region's pending records, merged in the order
  they were taken (a stamp per record), under an OFD lock that makes appliers take turns
  without polling. The positions reached are written to the database's `write_journal`
  table in the batch's own transaction, then to the file: a process killed in between leaves
  the file behind, and the next applier goes by the database. (A database restored from a
  backup is behind the file instead: records the file says were applied are not again.)
- **Read after write.** The database applies what is pending before any read or unit of work
  (see sqlite.py); what is pending is one comparison of the regions' counts in shared memory.
- **Statements by their SQL.** A record names its statement by its place in a table of SQL
  texts in the file, so that any process applies any record, including one that starts after
  a crash and has not compiled the statement itself. A score post is kept in its batch form
  (statements.BatchedStatement): a run of posts is applied as one statement, one call into
  SQLite rather than one a post.
"""

import fcntl
import heapq
import json
import logging
import marshal
import mmap
import os
import secrets
import struct
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from itertools import groupby
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import sqlite

from scoresvc.storage.ownfiles import FileRefused, allocate, open_owner_only
from scoresvc.storage.schema import write_journal
from scoresvc.storage.statements import BatchedStatement, CompiledStatement, Cursor

logger = logging.getLogger("scoresvc")

# The journal of `scores.db` is `scores.db-writes` (not `-journal`: that name is SQLite's).
JOURNAL_SUFFIX = "-writes"
MAGIC = b"scoresvc-writes1"
# How many processes may write at once (a process beyond them writes straight to the file),
# and how many records each may have accepted and not yet applied (beyond that, it applies
# them itself before accepting more).
REGIONS = 64
SLOTS = 2048
SLOT_BYTES = 256
# A statement's SQL text, with its length and whether it counts new bests, in one entry.
STATEMENTS = 64
STATEMENT_BYTES = 8192

# The file: a header page, the statements' table, then the regions.
_ID_AT = 16  # u64: this journal's id, random, written with the magic
_STATEMENT_COUNT_AT = 24  # u64
_FAILING_AT = 32  # u64: 1 while the database fails to take the records (any process's try)
_APPENDED_AT = 64  # u64 per region: records its owner has written
_APPLIED_AT = _APPENDED_AT + 8 * REGIONS  # u64 per region: records applied to the database
_STATEMENTS_AT = 4096
_REGIONS_AT = _STATEMENTS_AT + STATEMENTS * STATEMENT_BYTES
_REGION_BYTES = SLOTS * SLOT_BYTES
SIZE = _REGIONS_AT + REGIONS * _REGION_BYTES
# A slot: the record's stamp (u64), its statement (u16), the length of its values (u16),
# then the values, marshalled.
_SLOT = struct.Struct("=QHH4x")
_MAX_VALUES_BYTES = SLOT_BYTES - _SLOT.size
# A statement's SQL length, whether it counts new bests, whether it is a batch form (its one
# parameter a JSON array of rows, each a record's values).
_ENTRY = struct.Struct("=IBB2x")

# OFD locks (per open file, not per process): byte 0 for appliers and the statements' table,
# byte 1 + i for region i's owner. Locks need no bytes of the file behind them.
_APPLY_LOCK = 0
_FLOCK = struct.Struct("hhqqi4x")  # struct flock on Linux: type, whence, start, length, pid


class Record(NamedTuple):
    """A write accepted into the journal: its order, statement and positional values."""

    stamp: int
    statement: int
    values: list[Any]


class JournalRefused(FileRefused):
    """A file in the journal's place that is not a scoresvc write journal."""


class WriteJournal:
    """The write journal of one SQLite file, mapped: see the module's docstring."""

    outlives_process = True

    def __init__(self, path: str, *, accepting: bool = True, slots: int = SLOTS) -> None:
        self.path = path
        self._accepting = accepting  # False: only what is left in it is applied
        self._slots = slots  # fewer in tests, to wrap around the ring sooner
        descriptor = open_owner_only(path, what="write journal")
        try:
            with _locked(descriptor, _APPLY_LOCK):
                header = os.pread(descriptor, _STATEMENT_COUNT_AT, 0)
                if not header.strip(b"\0"):
                    # New, or its making was cut short before its magic: it holds no record.
                    os.ftruncate(descriptor, SIZE)
                    os.pwrite(descriptor, MAGIC + secrets.randbits(63).to_bytes(8, "little"), 0)
                elif header[: len(MAGIC)] != MAGIC or os.fstat(descriptor).st_size != SIZE:
                    raise JournalRefused(
                        f"{path} is not a scoresvc write journal: remove it while no scoresvc "
                        "uses the database"
                    )
                # Every page written through the map has its blocks first (see allocate):
                # the header and the statements here, a region when a process claims it.
                allocate(descriptor, 0, _REGIONS_AT, path)
            self._map = mmap.mmap(descriptor, SIZE)
        except BaseException:
            os.close(descriptor)
            raise
        self._descriptor = descriptor
        self.journal_id = int.from_bytes(self._map[_ID_AT : _ID_AT + 8], "little")
        self._counts = memoryview(self._map).cast("Q")
        self._lock = threading.Lock()  # this process's appends to its region
        self._region: int | None = None
        self._claim_tried = False  # a region is claimed once, at the first write
        self._last_stamp = 0
        self._statement_numbers: dict[tuple[str, bool], int] = {}
        self._statements: dict[int, tuple[str, bool, bool]] = {}  # read from the table, as used
        self._closed = False
        # A forked child shares the parent's open file, and with it the parent's OFD locks:
        # it opens its own, and claims a region of its own when it first writes.
        _journals.add(self)

    @property
    def accepting(self) -> bool:
        """Whether writes are accepted into it (else what is left in it is only applied)."""
        return self._accepting

    @property
    def failing(self) -> bool:
        """Whether the last try to apply the records, by any process, failed."""
        return self._counts[_FAILING_AT // 8] != 0

    @failing.setter
    def failing(self, failing: bool) -> None:
        if self.failing != failing:  # a store on every batch would be a store for nothing
            self._counts[_FAILING_AT // 8] = int(failing)

    # Accepting

    def ready(self, cursor: Cursor) -> bool:
        """Whether the database has the table of positions (migration 0007): until it does,
        its writes are made directly."""
        found = cursor.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (write_journal.name,)
        ).fetchone()
        return found is not None

    def __bool__(self) -> bool:
        """Whether any region, of any process, has records not yet applied."""
        counts = self._map
        return counts[_APPENDED_AT:_APPLIED_AT] != counts[_APPLIED_AT : _APPLIED_AT + 8 * REGIONS]

    def add(self, statement: CompiledStatement, values: dict[str, Any], new_bests: bool) -> bool:
        """Accept statement with values into this process's region: whether it was.

        It was not where the record is too large, every region or statement entry is taken,
        or the region is full of records not yet applied: then the caller writes it itself.
        Once this returns True, the write survives this process being killed.
        """
        if not self._accepting:
            return False
        # A statement with a batch form is kept as that form, with its values as a row of it.
        row: list[Any] | dict[str, Any]
        if isinstance(statement, BatchedStatement):
            sql, row, batched = statement.batch.sql, statement.batch_row(values), True
        else:
            sql, row, batched = statement.sql, statement.parameters(values), False
        number = self._statement_numbers.get((sql, new_bests))
        if number is None:
            number = self._register(sql, new_bests, batched)
            if number is None:
                return False
        encoded = marshal.dumps(row)
        if len(encoded) > _MAX_VALUES_BYTES:
            return False
        with self._lock:
            region = self._region
            if region is None:
                if self._claim_tried:
                    return False  # every region was taken: this process writes directly
                self._claim_tried = True
                region = self._region = self._claim_region()
                if region is None:
                    return False
            counts = self._counts
            appended = counts[_APPENDED_AT // 8 + region]
            if appended - counts[_APPLIED_AT // 8 + region] >= self._slots:
                return False
            stamp = max(time.monotonic_ns(), self._last_stamp + 1)
            self._last_stamp = stamp
            offset = _REGIONS_AT + region * _REGION_BYTES + (appended % self._slots) * SLOT_BYTES
            _SLOT.pack_into(self._map, offset, stamp, number, len(encoded))
            start = offset + _SLOT.size
            self._map[start : start + len(encoded)] = encoded
            # The record is whole before the count says it is there: an aligned 8-byte store.
            counts[_APPENDED_AT // 8 + region] = appended + 1
        return True

    def _claim_region(self) -> int | None:
        for region in range(REGIONS):
            if _try_lock(self._descriptor, 1 + region):
                break
        else:
            logger.warning("every write journal region of %s is taken: writing directly", self.path)
            return None
        try:
            allocate(
                self._descriptor, _REGIONS_AT + region * _REGION_BYTES, _REGION_BYTES, self.path
            )
        except OSError as error:  # the disk is full: the region's pages cannot be written
            logger.warning(
                "no room for a write journal region of %s (%s): writing directly", self.path, error
            )
            return None
        return region

    def _register(self, sql: str, new_bests: bool, batched: bool) -> int | None:
        """The statement's number in the file's table, entered if new; None if it is full."""
        encoded = sql.encode()
        if _ENTRY.size + len(encoded) > STATEMENT_BYTES:
            return None
        # The thread lock too: OFD locks keep other processes out, not this one's threads.
        with self._lock, _locked(self._descriptor, _APPLY_LOCK):
            count = self._counts[_STATEMENT_COUNT_AT // 8]
            for number in range(count):
                if self._statement(number) == (sql, new_bests, batched):
                    break
            else:
                if count == STATEMENTS:
                    return None
                number = count
                offset = _STATEMENTS_AT + number * STATEMENT_BYTES
                _ENTRY.pack_into(self._map, offset, len(encoded), new_bests, batched)
                self._map[offset + _ENTRY.size : offset + _ENTRY.size + len(encoded)] = encoded
                self._counts[_STATEMENT_COUNT_AT // 8] = count + 1
        self._statement_numbers[sql, new_bests] = number
        return number

    def _statement(self, number: int) -> tuple[str, bool, bool]:
        """The statement's SQL, whether it counts new bests, whether it is a batch form."""
        known = self._statements.get(number)
        if known is None:
            offset = _STATEMENTS_AT + number * STATEMENT_BYTES
            length, new_bests, batched = _ENTRY.unpack_from(self._map, offset)
            start = offset + _ENTRY.size
            known = self._statements[number] = (
                bytes(self._map[start : start + length]).decode(),
                bool(new_bests),
                bool(batched),
            )
        return known

    # Applying

    def apply(self, cursor: Cursor, driver_errors: tuple[type[Exception], ...]) -> int:
        """Apply every region's pending records in one transaction on cursor: new bests made.

        Called with the database to this thread (sqlite.py's lock). A driver error (the
        database failing) leaves the records for later, and is raised. A record the database
        refuses (a constraint) cannot be applied by trying again: it is logged and passed
        over, and the others applied.
        """
        with _locked(self._descriptor, _APPLY_LOCK):
            if not self:
                return 0  # applied by another process while this one waited for the lock
            try:
                cursor.execute("BEGIN IMMEDIATE")
                positions = self._positions(cursor)
                records = self._pending(positions)
                try:
                    new_bests = self._run(cursor, records)
                except driver_errors:
                    raise
                except Exception:
                    # A record refused (a constraint): the batch is undone, and each record run
                    # again on its own, passing over those refused.
                    cursor.execute("ROLLBACK")
                    cursor.execute("BEGIN IMMEDIATE")
                    new_bests = self._run_one_by_one(cursor, records, driver_errors)
                reached = {region: end for region, (_, end) in positions.items()}
                self._save_positions(cursor, reached)
                cursor.execute("COMMIT")
            except BaseException:
                with suppress(Exception):
                    cursor.execute("ROLLBACK")
                raise
            self._note_applied(reached)
            return new_bests

    def _positions(self, cursor: Cursor) -> dict[int, tuple[int, int]]:
        """(first pending, end) of each region with records pending, or applied and not yet
        noted in the file."""
        counts = self._counts
        applied_in_database = {
            region: applied
            for region, journal_id, applied in _SELECT_POSITIONS.execute(cursor).fetchall()
            if journal_id == self.journal_id
        }
        positions = {}
        for region in range(REGIONS):
            end = counts[_APPENDED_AT // 8 + region]
            # The file's count lags the database's where an applier was killed between the
            # two; the database's lags where it was restored from a backup since.
            noted = counts[_APPLIED_AT // 8 + region]
            start = max(applied_in_database.get(region, 0), noted)
            if start > end or end - start > self._slots:
                raise _corrupt(self.path, region)
            if start < end:
                positions[region] = (start, end)
            elif noted != end:
                positions[region] = (end, end)  # applied, but a killed applier left it unsaid
        return positions

    def _pending(self, positions: dict[int, tuple[int, int]]) -> list[Record]:
        """Every pending record, in the order they were accepted across regions."""
        per_region = [
            [self._record(region, number) for number in range(start, end)]
            for region, (start, end) in positions.items()
        ]
        return list(heapq.merge(*per_region))

    def _record(self, region: int, number: int) -> Record:
        offset = _REGIONS_AT + region * _REGION_BYTES + (number % self._slots) * SLOT_BYTES
        stamp, statement, length = _SLOT.unpack_from(self._map, offset)
        start = offset + _SLOT.size
        return Record(stamp, statement, marshal.loads(self._map[start : start + length]))

    def _run(self, cursor: Cursor, records: list[Record]) -> int:
        """Run records in order, a run of one statement as one executemany(): new bests."""
        new_bests = 0
        for number, group in groupby(records, key=_statement_of):
            sql, counts_bests, batched = self._statement(number)
            values = [record.values for record in group]
            if batched:
                rows = cursor.execute(sql, [json.dumps(values)]).rowcount
            else:
                rows = cursor.executemany(sql, values).rowcount
            if counts_bests and rows > 0:
                new_bests += rows
        return new_bests

    def _run_one_by_one(
        self, cursor: Cursor, records: list[Record], driver_errors: tuple[type[Exception], ...]
    ) -> int:
        new_bests = 0
        for record in records:
            sql, counts_bests, batched = self._statement(record.statement)
            values = [json.dumps([record.values])] if batched else record.values
            try:
                rows = cursor.execute(sql, values).rowcount
            except driver_errors:
                raise
            except Exception as error:
                logger.error("a journaled write refused by the database is lost: %s", error)
                continue
            if counts_bests and rows > 0:
                new_bests += rows
        return new_bests

    def _save_positions(self, cursor: Cursor, reached: dict[int, int]) -> None:
        _SAVE_POSITION.executemany(
            cursor,
            [
                {"region": region, "journal_id": self.journal_id, "applied": end}
                for region, end in reached.items()
            ],
        )

    def _note_applied(self, reached: dict[int, int]) -> None:
        for region, end in reached.items():
            self._counts[_APPLIED_AT // 8 + region] = end

    def waiting(self) -> str:
        """What waits, as a log line names it."""
        return "journaled writes"

    def close(self) -> None:
        """Unmap the journal and give up this process's region (apply what is pending first)."""
        if self._closed:
            return
        self._closed = True
        self._counts.release()
        self._map.close()
        os.close(self._descriptor)

    def _reopen(self) -> None:
        # In a forked child: the parent's open file carries the parent's locks.
        if self._closed:
            return
        self._lock = threading.Lock()
        self._region = None
        self._claim_tried = False
        os.close(self._descriptor)
        self._descriptor = open_owner_only(self.path, what="write journal")


def _statement_of(record: Record) -> int:
    return record.statement


# Every WriteJournal alive, so that a forked child reopens each (one at-fork hook for them all,
# rather than one more hook, never removed, for every journal a process opens).
_journals: "weakref.WeakSet[WriteJournal]" = weakref.WeakSet()


def _reopen_after_fork() -> None:
    for journal in list(_journals):
        journal._reopen()


os.register_at_fork(after_in_child=_reopen_after_fork)


def _corrupt(path: str, region: int) -> ValueError:
    return ValueError(f"{path}: region {region}'s counts are inconsistent")


@contextmanager
def _locked(descriptor: int, byte: int) -> Iterator[None]:
    """An OFD write lock on one byte of the file, waited for (blocking, no polling)."""
    fcntl.fcntl(descriptor, fcntl.F_OFD_SETLKW, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, byte, 1, 0))
    try:
        yield
    finally:
        fcntl.fcntl(
            descriptor, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, byte, 1, 0)
        )


def _try_lock(descriptor: int, byte: int) -> bool:
    """Whether an OFD write lock on the byte was taken now (held until the file is closed)."""
    try:
        fcntl.fcntl(
            descriptor, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, byte, 1, 0)
        )
    except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: another holds it
        return False
    return True


_SELECT_POSITIONS = CompiledStatement(
    select(write_journal.c.region, write_journal.c.journal_id, write_journal.c.applied),
    sqlite.dialect(),
)
_UPSERT_POSITION = sqlite.insert(write_journal).values(
    region=bindparam("region"), journal_id=bindparam("journal_id"), applied=bindparam("applied")
)
_SAVE_POSITION = CompiledStatement(
    _UPSERT_POSITION.on_conflict_do_update(
        index_elements=[write_journal.c.region],
        set_={
            "journal_id": _UPSERT_POSITION.excluded.journal_id,
            "applied": _UPSERT_POSITION.excluded.applied,
        },
    ),
    sqlite.dialect(),
)
