"""The score journal: score writes accepted for a database file, kept until the file has them."""

import fcntl
import mmap
import os
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

# level, user, score, reached_at (µs), then a CRC-32 of those 20 bytes: a record torn by a kill
# in the middle of being copied fails it and is skipped (its request was never answered).
_RECORD = struct.Struct("<IIIQI")
_FIELDS = struct.Struct("<IIIQ")
RECORD_BYTES = _RECORD.size
# The journal of `scores.db` is `scores.db-score-journal`, beside it.
JOURNAL_SUFFIX = "-score-journal"
# 64 Ki records, 1.5 MiB: at 10,000 writes a second, six seconds of writes between rewinds.
DEFAULT_SLOTS = 65_536


class JournalInUse(RuntimeError):
    """Another process holds the journal: two processes would each serve their own lists."""


class ScoreRecord(NamedTuple):
    """One accepted score write."""

    level_id: int
    user_id: int
    score: int
    reached_at: int


class ScoreJournal:
    """Accepted score writes in a memory-mapped file, until the database file has them.

    Appending a record is a copy into memory the kernel's page cache shares: no system call,
    so no hand-over of the GIL, and it outlives the process however it ends. It does not
    outlive a power cut, which synchronous=NORMAL does not promise either. On start, the
    records are written to the database (replaying an upsert with the time it carries changes
    nothing if it was already there) and the journal is cleared.

    The file is locked while open: one process per database file, as the list cache needs.
    Not thread-safe: the caller orders appends (the repository holds the deferral lock).
    """

    def __init__(self, path: str | Path, *, slots: int = DEFAULT_SLOTS) -> None:
        self.path = Path(path)
        self.slots = slots
        self._next = 0
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise JournalInUse(f"{self.path} is in use by another process") from None
        size = slots * RECORD_BYTES
        if os.fstat(descriptor).st_size != size:
            os.ftruncate(descriptor, size)  # new, or written with another size: zeros past
        self._descriptor = descriptor
        self._map = mmap.mmap(descriptor, size)

    @property
    def free_slots(self) -> int:
        """Records that can be appended before rewind() is needed."""
        return self.slots - self._next

    def append(self, record: ScoreRecord) -> None:
        """Keep record; the caller has checked free_slots."""
        fields = _FIELDS.pack(*record)
        _RECORD.pack_into(self._map, self._next * RECORD_BYTES, *record, zlib.crc32(fields))
        self._next += 1

    def rewind(self) -> None:
        """Append from the start again: every record so far is in the database file."""
        self._next = 0

    def records(self) -> list[ScoreRecord]:
        """Every whole record in the journal, oldest first."""
        found = []
        for level_id, user_id, score, reached_at, crc in _RECORD.iter_unpack(self._map):
            fields = _FIELDS.pack(level_id, user_id, score, reached_at)
            if reached_at and crc == zlib.crc32(fields):
                found.append(ScoreRecord(level_id, user_id, score, reached_at))
        return sorted(found, key=lambda record: record.reached_at)

    def clear(self) -> None:
        """Forget every record (all are in the database file) and start from the beginning."""
        self._map[:] = bytes(len(self._map))
        self._map.flush()
        self._next = 0

    def close(self) -> None:
        """Unmap and unlock the file."""
        self._map.close()
        os.close(self._descriptor)  # releases the lock
