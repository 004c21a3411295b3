"""Deferred writes: answered at once, made a few milliseconds later in batches."""

import logging
import threading
from collections.abc import Callable
from typing import Any

from scoresvc.batchthread import BatchThread
from scoresvc.errors import DatabaseUnavailable
from scoresvc.storage.statements import CompiledStatement

logger = logging.getLogger("scoresvc")

# After a batch, the writer thread lets writes gather this long: under load, one batch (and one
# hand-over of the GIL per statement in it) serves a few dozen requests.
GATHER_SECONDS = 0.005
# After the database failed to take a batch, the writer thread tries again this much later.
RETRY_SECONDS = 1.0

# (statement, values, whether the rows it changes are new bests: see UnitOfWork.write)
Write = tuple[CompiledStatement, dict[str, Any], bool]


class DeferredWrites:
    """Statements accepted now and run later, in the order accepted, by a thread of their own.

    The owner runs what is deferred before any other unit of work, so every read made after a
    write was accepted sees it. What a request gains is that it makes no call into SQLite,
    which would hand the GIL to another thread and then wait to get it back: on a busy server
    that costs more than the rest of the request. Only for a database that ends with its
    process and that no other process can reach: a crash loses nothing anyone else could read.
    """

    def __init__(self, run_pending: Callable[[], None]) -> None:
        self._lock = threading.Lock()
        self._writes: list[Write] = []
        self._run_pending = run_pending  # runs what is queued, as any unit of work does
        self._writer = BatchThread(
            self._write_pending, name="scoresvc-deferred-writes", gather_seconds=GATHER_SECONDS
        )

    def __bool__(self) -> bool:
        """Whether any write is pending (no lock: a write accepted meanwhile is not 'before')."""
        return bool(self._writes)

    def __len__(self) -> int:
        return len(self._writes)

    def add(
        self, statement: CompiledStatement, values: dict[str, Any], new_bests: bool = False
    ) -> None:
        """Queue statement with values, after every write queued so far."""
        with self._lock:
            self._writes.append((statement, values, new_bests))
        self._writer.wake()

    def take(self) -> list[Write]:
        """All queued (statement, values, new_bests), oldest first, leaving none."""
        with self._lock:
            writes, self._writes = self._writes, []
        return writes

    def put_back(self, writes: list[Write]) -> None:
        """Queue writes taken by take() again, ahead of any queued since."""
        with self._lock:
            self._writes[:0] = writes

    def _write_pending(self) -> None:
        try:
            self._run_pending()
        except DatabaseUnavailable:
            # Logged where it failed. The writes wait for the database to come back; a unit
            # of work tries them sooner, and the pause keeps the log from filling.
            self._writer.wake()
            self._writer.pause(RETRY_SECONDS)
        except Exception:
            logger.exception("deferred writes failed")

    def close(self) -> None:
        """Stop the writer thread; what is still queued is left for the owner to run."""
        self._writer.close()
