"""A level's top scores as read at one moment, kept in a LevelCache while the level is unchanged,
and given back by LastReads where a new read finds them as they were."""

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from scoresvc.storage.levelcache import keep_bounded


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


class LastReads:
    """The top scores last read of each board, given back for a read that returns the same rows,
    under the same rules and version: their entries and renderings are then not built again.

    The rows are read every time, so nothing is served that the database did not just say. It
    pays where every list is read anew (PostgreSQL: replicas share no memory, so no list is
    kept as current): building 15 entries and their text took 11.4 of the 53 µs a list cost
    in process. On SQLite a list is read only after a write changed its level: no read matches.
    """

    def __init__(self, max_boards: int) -> None:
        self._max_boards = max_boards
        self._kept: OrderedDict[int, tuple[object, Sequence[Any], TopScores]] = OrderedDict()

    def get(self, board: int, rules: object, rows: Sequence[Any], version: int) -> TopScores | None:
        """The board's last read if it had these rows, rules and version, else None."""
        kept = self._kept.get(board)
        if kept is None:
            return None
        kept_rules, kept_rows, top = kept
        if top.version != version or kept_rows != rows or kept_rules != rules:
            return None
        return top

    def keep(self, board: int, rules: object, rows: Sequence[Any], top: TopScores) -> None:
        """Remember top as the board's last read, made from rows under rules."""
        keep_bounded(self._kept, board, (rules, rows, top), self._max_boards)
