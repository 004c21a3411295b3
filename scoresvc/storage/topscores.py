"""Each level's top scores as last read, kept in step with the writes that change them."""

from collections import OrderedDict
from collections.abc import Callable, Sequence
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
    """The top scores of the levels read most recently, each kept in step with every write.

    Look-ups take no lock. A fill and a posted score must be ordered with the writes to the
    database (the repository makes both under the lock its writes are ordered by); then a fill
    cannot put back a list that a write has changed, and once a write has returned, no reader
    gets the list from before it. Only this process's writes are seen: several processes
    writing one database file would each keep serving their own lists, and would need another
    scheme.
    """

    def __init__(
        self, *, list_length: int, max_levels: int, entry: Callable[[int, int], Any]
    ) -> None:
        self._list_length = list_length
        self._max_levels = max_levels
        self._entry = entry  # makes an entry from (user_id, score)
        self._levels: OrderedDict[int, TopScores] = OrderedDict()

    def get(self, level_id: int) -> TopScores | None:
        """The level's cached top scores, or None."""
        return self._levels.get(level_id)

    def fill(self, level_id: int, top: TopScores) -> None:
        """Keep top as the level's list, as a read just found it."""
        if self._max_levels <= 0:
            return
        if level_id not in self._levels and len(self._levels) >= self._max_levels:
            self._levels.popitem(last=False)  # the level cached longest ago
        self._levels[level_id] = top

    def score_posted(self, level_id: int, user_id: int, score: int) -> None:
        """Bring the level's list up to date with a posted score, the latest ever reached.

        The new list follows from the old one alone. Best scores only rise, so a user leaves
        the list only by being pushed below it. A listed user's entry changes if the score
        beats it. An unlisted user's best is at most the last entry's (reached later if equal),
        so a score above that entry is a new best that enters the list, and the last entry
        leaves a full one; a list that is not full holds every player of the level. A new best
        ranks after every equal score, all of them reached earlier.
        """
        top = self._levels.get(level_id)
        if top is None:
            return
        entries = list(top.entries)
        listed = next((i for i, entry in enumerate(entries) if entry.user_id == user_id), None)
        if listed is not None:
            if score <= entries[listed].score:
                return
            del entries[listed]
        elif len(entries) >= self._list_length:
            if score <= entries[-1].score:
                return
            entries.pop()
        place = next((i for i, entry in enumerate(entries) if entry.score < score), len(entries))
        entries.insert(place, self._entry(user_id, score))
        self._levels[level_id] = TopScores(entries)
