"""Deferred writes: accepted at once, applied a few milliseconds later in batches.

Two kinds of SQLite database keep writes this way, behind one interface (PendingWrites):
- a memory database of one process keeps them in a list (DeferredWrites, here): nobody else
  can read it, and a crash of the process takes the database with it, so nothing is lost that
  anyone could have read;
- a file, or the workers' database in memory, keeps them in a journal mapped into every
  process on it (writejournal.WriteJournal), where they outlive a process killed.

Either way the database applies them before any other read or unit of work (sqlite.py), so
every read made after a write was accepted sees it. What a request gains is that it makes no
call into SQLite, which would hand the GIL to another thread and then wait to get it back, nor
waits its turn for the file's write lock behind other processes.
"""

import logging
import threading
from itertools import groupby
from typing import Any, Protocol

from scoresvc.storage.statements import BatchedStatement, CompiledStatement, Cursor

logger = logging.getLogger("scoresvc")

# (statement, values, whether the rows it changes are new bests: see UnitOfWork.write)
Write = tuple[CompiledStatement, dict[str, Any], bool]


class PendingWrites(Protocol):
    """Writes accepted and not yet applied, as the database keeps them."""

    # Whether they survive the process: those not applied when it ends are applied by the next.
    outlives_process: bool
    # Whether the last try to apply them failed: new writes are then made at once, and fail
    # as the database does. A journal's is every process's on the file.
    failing: bool

    def __bool__(self) -> bool:
        """Whether any write is waiting (without a lock: one accepted meanwhile is not before)."""

    def ready(self, cursor: Cursor) -> bool:
        """Whether the database on cursor can take writes this way (its schema may be older)."""

    def add(self, statement: CompiledStatement, values: dict[str, Any], new_bests: bool) -> bool:
        """Accept statement with values, after every write accepted so far: whether it was
        (if not, the caller runs it itself)."""

    def apply(self, cursor: Cursor, driver_errors: tuple[type[Exception], ...]) -> int:
        """Apply what waits in one transaction on cursor, under the database's lock: the new
        bests it made. A driver error leaves the writes waiting, and is raised."""

    def waiting(self) -> str:
        """What waits, as a log line names it: "3 deferred writes"."""

    def close(self) -> None:
        """Release what the writes are kept in (once applied)."""


class DeferredWrites:
    """Writes accepted into a list of this process's, applied in the order accepted."""

    outlives_process = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writes: list[Write] = []
        self.failing = False

    def __bool__(self) -> bool:
        return bool(self._writes)

    def __len__(self) -> int:
        return len(self._writes)

    def ready(self, cursor: Cursor) -> bool:
        return True

    def add(self, statement: CompiledStatement, values: dict[str, Any], new_bests: bool) -> bool:
        with self._lock:
            self._writes.append((statement, values, new_bests))
        return True

    def apply(self, cursor: Cursor, driver_errors: tuple[type[Exception], ...]) -> int:
        with self._lock:
            writes, self._writes = self._writes, []
        if not writes:
            return 0
        new_bests = 0
        try:
            cursor.execute("BEGIN IMMEDIATE")
            # A statement run many times in a row runs as one statement where it has a batch
            # form, else as one executemany() (the loop is the driver's); either way the
            # cursor's rowcount sums the rows changed.
            for (statement, counts_bests), group in groupby(writes, key=_statement_and_counting):
                batch = [values for _, values, _ in group]
                if isinstance(statement, BatchedStatement):
                    rows = statement.execute_batch(cursor, list(map(statement.batch_row, batch)))
                else:
                    rows = statement.executemany(cursor, batch)
                if counts_bests and rows.rowcount > 0:
                    new_bests += rows.rowcount
            cursor.execute("COMMIT")
        except Exception as error:
            # Whatever the driver raised, the batch is rolled back whole and the connection
            # left with no transaction open, ready for the next unit of work.
            try:
                cursor.execute("ROLLBACK")
            except Exception:
                logger.debug("rollback after a failed batch failed too", exc_info=True)
            if isinstance(error, driver_errors):
                # The database is failing: the writes were answered, so they wait for it (the
                # caller says so).
                with self._lock:
                    self._writes[:0] = writes
            else:
                # A write the database refuses (a constraint): trying again cannot help.
                logger.error("%d deferred writes lost: %s", len(writes), error)
            raise
        return new_bests

    def waiting(self) -> str:
        return f"{len(self._writes)} deferred writes"

    def close(self) -> None:
        """Nothing to release: the list goes with the object."""


def _statement_and_counting(write: Write) -> tuple[CompiledStatement, bool]:
    return write[0], write[2]
