"""Deferred writes: answered at once, made a few milliseconds later in batches."""

import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any

from scoresvc.batchthread import BatchThread
from scoresvc.errors import DatabaseUnavailable

logger = logging.getLogger("scoresvc")

# After a batch, the writer thread lets writes gather this long: under load, one batch (and one
# hand-over of the GIL per statement in it) serves a few dozen requests.
GATHER_SECONDS = 0.005
# After the database failed to take a batch, the writer thread tries again this much later.
RETRY_SECONDS = 1.0


class DeferredWrites:
    """Statements accepted now and run later, in the order accepted, by a thread of their own.

    Database runs what is deferred before any other unit of work, so every read made after a
    write was accepted sees it. What a request gains is that it makes no call into SQLite,
    which would hand the GIL to another thread and then wait to get it back: on a busy server
    that costs more than the rest of the request. Deferring is safe for a database that ends
    with its process (in memory), or when the write is also kept where a crash cannot lose it
    (the repository's score journal); the caller decides.

    `lock` orders the queue: hold it to add (and for whatever must be ordered with the writes,
    such as the timestamps they carry), to take, and to ask what is pending.
    """

    def __init__(self, run_pending: Callable[[], None]) -> None:
        self.lock = threading.Lock()
        self._statements: list[tuple[Any, dict, Hashable]] = []  # (statement, values, tag)
        self._tags: set[Hashable] = set()
        self._run_pending = run_pending  # takes the database's lock and runs what is queued
        self._writer = BatchThread(
            self._write_pending, name="scoresvc-deferred-writes", gather_seconds=GATHER_SECONDS
        )

    def __bool__(self) -> bool:
        """Whether any write is pending (no lock: a write accepted meanwhile is not 'before')."""
        return bool(self._statements)

    def add(self, statement: Any, values: dict, tag: Hashable) -> None:
        """Queue statement with values, marked with tag (under lock)."""
        self._statements.append((statement, values, tag))
        self._tags.add(tag)
        self._writer.wake()

    def pending(self, tag: Hashable) -> bool:
        """Whether a write marked with tag is still queued (under lock)."""
        return tag in self._tags

    def take(self) -> list[tuple[Any, dict, Hashable]]:
        """All queued (statement, values, tag), oldest first, leaving none (under lock)."""
        statements, self._statements = self._statements, []
        self._tags = set()
        return statements

    def put_back(self, statements: list[tuple[Any, dict, Hashable]]) -> None:
        """Queue statements taken by take() again, ahead of any queued since (under lock)."""
        self._statements[:0] = statements
        self._tags.update(tag for _, _, tag in statements)

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
        """Stop the writer thread; what is still queued is left for the caller to run."""
        self._writer.close()
