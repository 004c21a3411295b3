"""Each level's top scores as last read, served again for as long as the level is unchanged."""

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from scoresvc.storage.levelversions import LevelVersions


class TopScores:
    """One level's top scores as read at one moment, with the level's version before the read."""

    __slots__ = ("entries", "players", "rendered", "version")

    def __init__(self, entries: Sequence[Any], players: int, version: int = 0) -> None:
        self.entries = tuple(entries)
        self.players = players  # how many users have a score on the level
        self.version = version
        # Whatever a caller derives from the entries, by name (the view keeps its responses
        # here): it goes when these entries do, so it can never outlive the list it came from.
        self.rendered: dict[str, Any] = {}


class TopScoresCache:
    """The top scores of the levels read most recently, each valid while its version holds.

    A list is kept with the level's version as read before the list itself; a write anywhere
    (this process, another worker, another server on the same file) gives the level a new
    version once the database has it, and the next look-up misses and reads again. Look-ups
    take no lock: a version is one load from shared memory.
    """

    def __init__(self, versions: LevelVersions, *, max_levels: int) -> None:
        self._versions = versions
        self._max_levels = max_levels
        self._levels: OrderedDict[int, TopScores] = OrderedDict()

    def version(self, level_id: int) -> int:
        """The level's version now: read it before reading the list it will be kept with."""
        return self._versions.current(level_id)

    def get(self, level_id: int) -> TopScores | None:
        """The level's cached top scores if no write has changed the level since, else None."""
        top = self._levels.get(level_id)
        if top is None or top.version != self._versions.current(level_id):
            return None
        return top

    def fill(self, level_id: int, top: TopScores) -> None:
        """Keep top, read after its version was taken, as the level's list."""
        if self._max_levels <= 0:
            return
        if level_id not in self._levels and len(self._levels) >= self._max_levels:
            self._levels.popitem(last=False)  # the level cached longest ago
        self._levels[level_id] = top


class UncachedTopScores:
    """A cache that never hits: where writers share no memory (PostgreSQL replicas on several
    machines), nothing tells a kept list from a stale one, so every list is read anew."""

    def version(self, level_id: int) -> int:
        """No version: nothing is ever kept."""
        return 0

    def get(self, level_id: int) -> None:
        """Never a kept list."""
        return None

    def fill(self, level_id: int, top: TopScores) -> None:
        """Keep nothing."""
