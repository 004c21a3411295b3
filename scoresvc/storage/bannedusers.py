"""Who is banned, as every score post and login asks: kept in memory while no ban changes it."""

from collections.abc import Callable, Iterable

from scoresvc.storage.levelversions import LevelVersions


class BannedUsersCache:
    """The banned users' ids as last read, read again once a ban or unban gives them a new version.

    For databases whose writers all share the level versions (SQLite): a look-up is one load
    from shared memory and a set membership test, so a login still touches no database.
    """

    def __init__(self, versions: LevelVersions, load: Callable[[], Iterable[int]]) -> None:
        self._versions = versions
        self._load = load
        # (version, ids) in one attribute: a thread that reads it sees a pair that belongs
        # together. -1 is no version a slot holds: the first look-up reads.
        self._read: tuple[int, frozenset[int]] = (-1, frozenset())

    def __contains__(self, user_id: int) -> bool:
        version, ids = self._read
        current = self._versions.bans()
        if version != current:
            # The version before the read: a ban committed after it gives a newer one.
            ids = frozenset(self._load())
            self._read = (current, ids)
        return user_id in ids
