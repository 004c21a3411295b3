"""Score journals left by scoresvc 1.0: scores it answered, killed before its file had them."""

import struct
import zlib
from pathlib import Path
from typing import NamedTuple

# scoresvc 1.0 copied each score into `scores.db-score-journal` before answering it, and wrote
# it to the file a few ms later. A journal left by a killed 1.0 still holds those scores: the
# first start of this version writes them into the file and removes the journal.
JOURNAL_SUFFIX = "-score-journal"
# level, user, score, reached_at (µs), then a CRC-32 of those 20 bytes: a record torn by a kill
# in the middle of being copied fails it and is skipped (its request was never answered).
_RECORD = struct.Struct("<IIIQI")
_FIELDS = struct.Struct("<IIIQ")


class ScoreRecord(NamedTuple):
    """One answered score write."""

    level_id: int
    user_id: int
    score: int
    reached_at: int


def journal_path(database_path: str | Path) -> Path:
    """Where 1.0 kept the journal of the database file at database_path."""
    return Path(f"{database_path}{JOURNAL_SUFFIX}")


def leftover_records(database_path: str | Path) -> list[ScoreRecord]:
    """Every whole record of the journal beside the database file, oldest first; [] if none."""
    try:
        data = journal_path(database_path).read_bytes()
    except FileNotFoundError:
        return []
    whole = len(data) - len(data) % _RECORD.size
    found = []
    for level_id, user_id, score, reached_at, crc in _RECORD.iter_unpack(data[:whole]):
        fields = _FIELDS.pack(level_id, user_id, score, reached_at)
        if reached_at and crc == zlib.crc32(fields):
            found.append(ScoreRecord(level_id, user_id, score, reached_at))
    return sorted(found, key=lambda record: record.reached_at)


def remove_journal(database_path: str | Path) -> None:
    """Delete the journal, once the database file has its records."""
    journal_path(database_path).unlink(missing_ok=True)
