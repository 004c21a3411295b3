"""Level versions: a token per level that every process on one database sees change on a write."""

import itertools
import mmap
import os
import secrets
from pathlib import Path

from scoresvc.storage.ownfiles import allocate, open_owner_only

# Levels share slots by their id modulo this: two levels in one slot only cost each other an
# extra read. 64 Ki slots of 8 bytes: 512 KiB, mapped once.
SLOTS = 65_536
# One more slot after the levels' holds the version of the banned users (see BannedUsers);
# after it, a slot per level again for its rules and seasons, which change far more seldom
# than its scores (a score post must not make every process read the level's rules again).
_BANS_SLOT = SLOTS
_RULES_SLOTS = SLOTS + 1
_SLOT_BYTES = 8
# The versions of `scores.db` are `scores.db-levels`, beside it, as SQLite keeps `-wal` there.
VERSIONS_SUFFIX = "-levels"


class LevelVersions:
    """A version token per level in shared memory: a write sets a new one, a read compares.

    A process caching a level's list keeps the token it read before reading the list from the
    database; the list is still the database's as long as the token is unchanged. A writer sets
    a token after its write is committed, so a read that sees the new token sees the write.
    Tokens are never reused (a random 32-bit prefix per process, then a count), so the slot
    needs no atomic increment and no lock across processes: an aligned 8-byte store and load,
    as memoryview makes them, are single instructions, and whichever of two racing writers
    stores last, the token differs from every one a reader may hold.

    In a file (path) every process that maps it shares the tokens; without a path they are
    private to this process, for a database only this process can reach.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        size = (2 * SLOTS + 1) * _SLOT_BYTES
        if path is None:
            self._map = mmap.mmap(-1, size)
        else:
            descriptor = open_owner_only(path, what="level versions")
            try:
                if os.fstat(descriptor).st_size < size:
                    # New (or made before the bans' slot): zeros, which no token equals.
                    os.ftruncate(descriptor, size)
                # Every page written through the map has its blocks first (see allocate).
                allocate(descriptor, 0, size, str(path))
                self._map = mmap.mmap(descriptor, size)
            finally:
                os.close(descriptor)  # the mapping keeps the file
        self._tokens = memoryview(self._map).cast("Q")
        self._prefix = secrets.randbits(32) << 32
        self._count = itertools.count(1)

    def current(self, level_id: int) -> int:
        """The level's token now: read it before reading what it guards."""
        return self._tokens[level_id % SLOTS]

    def changed(self, level_id: int) -> None:
        """Give the level a new token: call once its write is where every reader finds it."""
        self._tokens[level_id % SLOTS] = self._next_token()

    def _next_token(self) -> int:
        return self._prefix | (next(self._count) & 0xFFFF_FFFF)

    def rules(self, level_id: int) -> int:
        """The token of the level's rules and seasons now: read it before reading them."""
        return self._tokens[_RULES_SLOTS + level_id % SLOTS]

    def rules_changed(self, level_id: int) -> None:
        """Give the level's rules a new token: call once their change is committed."""
        self._tokens[_RULES_SLOTS + level_id % SLOTS] = self._next_token()

    def bans(self) -> int:
        """The banned users' token now: read it before reading the banned users."""
        return self._tokens[_BANS_SLOT]

    def bans_changed(self) -> None:
        """Give the banned users a new token: call once a ban or unban is committed."""
        self._tokens[_BANS_SLOT] = self._next_token()

    def close(self) -> None:
        """Unmap the tokens."""
        self._tokens.release()
        self._map.close()
