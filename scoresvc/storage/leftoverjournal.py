"""Score journals left by scoresvc 1.0: scores it answered, killed before its file had them."""

import errno
import os
import stat
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
# Never read through a symbolic link; O_NONBLOCK, so that a FIFO in its place cannot hold the
# start up waiting for a writer (it is refused, as anything but a regular file is).
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class JournalRefused(ValueError):
    """A leftover journal the service will not read: scores it cannot tell 1.0 wrote."""


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
    """The journal's whole records, oldest first ([] if none); JournalRefused if not ours alone."""
    data = _journal_bytes(journal_path(database_path))
    whole = len(data) - len(data) % _RECORD.size
    found = []
    for level_id, user_id, score, reached_at, crc in _RECORD.iter_unpack(data[:whole]):
        fields = _FIELDS.pack(level_id, user_id, score, reached_at)
        if reached_at and crc == zlib.crc32(fields):
            found.append(ScoreRecord(level_id, user_id, score, reached_at))
    return sorted(found, key=lambda record: record.reached_at)


def _journal_bytes(path: Path) -> bytes:
    # Its scores are written as the players' own: only a journal that 1.0, run as the user we
    # run as, could have left is read, not one that anyone else could have planted or written.
    try:
        descriptor = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return b""
    except OSError as error:
        # O_NOFOLLOW answers ELOOP for a link, as it does for a loop of links among directories.
        if error.errno == errno.ELOOP and os.path.islink(path):
            raise _refused(path, "is a symbolic link", "put the file itself there") from error
        raise
    with open(descriptor, "rb") as journal:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise _refused(path, "is not a regular file", None)
        user = os.geteuid()
        if status.st_uid != user:
            why = f"belongs to user {status.st_uid}, not to the user scoresvc runs as ({user})"
            raise _refused(path, why, f"chown it to user {user}")
        if status.st_mode & stat.S_IWOTH:
            raise _refused(path, "may be written by every user", "chmod o-w it")
        return journal.read()


def _refused(path: Path, why: str, remedy: str | None) -> JournalRefused:
    # Removing it loses the scores a 1.0 left in it, if it did: the remedy keeps them.
    keep = f"if scoresvc 1.0 left it, {remedy}; if not, " if remedy else ""
    return JournalRefused(f"the 1.0 score journal {path} {why}: {keep}remove it")


def remove_journal(database_path: str | Path) -> None:
    """Delete the journal, once the database file has its records."""
    journal_path(database_path).unlink(missing_ok=True)
