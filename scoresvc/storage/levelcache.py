"""Values read per level (lists, rules), served again for as long as the level is unchanged."""

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Protocol, TypeVar

_Key = TypeVar("_Key", bound=Hashable)
_Value = TypeVar("_Value")


class Versioned(Protocol):
    """A value read from the database, with its level's version taken before the read."""

    version: int


class LevelCache:
    """Values keyed by level (or board: a level's boards share its version), each valid while
    its version holds.

    A value is kept with the level's version as read before the value itself; a unit of work
    anywhere (this process, another worker, another server on the same file) that changes the
    level gives it a new version once the database has the change, and the next look-up misses
    and reads again. Look-ups take no lock: a version is one load from shared memory.
    """

    def __init__(self, version_of: Callable[[int], int], *, max_levels: int) -> None:
        self._version_of = version_of  # a LevelVersions' current (scores) or rules
        self._max_levels = max_levels
        self._values: OrderedDict[int, Any] = OrderedDict()

    def version(self, key: int) -> int:
        """The version now: read it before reading the value it will be kept with."""
        return self._version_of(key)

    def get(self, key: int) -> Any:
        """The kept value if no change has reached its level since it was read, else None."""
        value = self._values.get(key)
        if value is None or value.version != self._version_of(key):
            return None
        return value

    def fill(self, key: int, value: Versioned) -> None:
        """Keep value, read after its version was taken."""
        keep_bounded(self._values, key, value, self._max_levels)


class NoLevelCache:
    """A cache that never hits: where writers share no memory (PostgreSQL replicas on several
    machines), nothing tells a kept value from a stale one, so every value is read anew."""

    def version(self, key: int) -> int:
        """No version: nothing is ever kept."""
        return 0

    def get(self, key: int) -> None:
        """Never a kept value."""
        return None

    def fill(self, key: int, value: Versioned) -> None:
        """Keep nothing."""


def keep_bounded(
    kept: "OrderedDict[_Key, _Value]", key: _Key, value: _Value, max_entries: int
) -> None:
    """Keep value under key, making room by dropping the entry kept first; 0: keep nothing."""
    if max_entries <= 0:
        return
    if key not in kept and len(kept) >= max_entries:
        kept.popitem(last=False)
    kept[key] = value
