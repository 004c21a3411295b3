"""Each level's top scores as last read, kept in step with the writes that change them."""

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any


class TopScores:
    """One level's top scores as read at one moment; a write that changes them makes a new one."""

    __slots__ = ("entries", "rendered")

    def __init__(self, entries: Sequence[Any]) -> None:
        self.entries = tuple(entries)
        # Whatever a caller derives from the entries (the view keeps its response here): it
        # goes when these entries do, so it can never outlive the list it was made from.
        self.rendered: Any = None


class TopScoresCache:
    """The top scores of the levels read most recently, each kept until a write can change it.

    Look-ups take no lock. Fills and invalidations must be made under the database's lock,
    inside the unit of work that read or wrote (the repository does so): then a fill cannot put
    back a list that a write has changed, and once a write has returned, no reader gets the
    list from before it. Only this process's writes are seen: several processes writing one
    database file would each keep serving their own lists, and would need another scheme.
    """

    def __init__(self, *, list_length: int, max_levels: int) -> None:
        self._list_length = list_length
        self._max_levels = max_levels
        self._levels: OrderedDict[int, TopScores] = OrderedDict()

    def get(self, level_id: int) -> TopScores | None:
        """The level's cached top scores, or None."""
        return self._levels.get(level_id)

    def fill(self, level_id: int, top: TopScores) -> None:
        """Keep top as the level's list (under the database lock, in the read's unit of work)."""
        if self._max_levels <= 0:
            return
        if level_id not in self._levels and len(self._levels) >= self._max_levels:
            self._levels.popitem(last=False)  # the level cached longest ago
        self._levels[level_id] = top

    def best_score_improved(self, level_id: int, score: int) -> None:
        """Drop the level's list if a user's new best can change it (under the database lock)."""
        top = self._levels.get(level_id)
        if top is None:
            return
        # A full list stays as it is if the new best is not above its last entry: a tie ranks
        # after it (reached later), and the user cannot be on the list, since any listed best is
        # at least the last entry's and this score improved on the user's best.
        if len(top.entries) == self._list_length and score <= top.entries[-1].score:
            return
        self._levels.pop(level_id, None)
