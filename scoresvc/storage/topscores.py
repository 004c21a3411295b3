"""A level's top scores as read at one moment, kept in a LevelCache while the level is unchanged."""

from collections.abc import Sequence
from typing import Any


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
