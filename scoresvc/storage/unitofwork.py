"""The unit of work: the only way to write, and what it publishes once its writes are made.

A unit of work records what it changed (levels, the banned users, new best scores) as it goes;
once its writes are committed, the database publishes that record: to the level versions that
tell a cached list or ban list from a stale one (where there are any), and to whoever listens
(the metrics count new bests). No caller refreshes a cache or counts a write itself.
"""

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from scoresvc.storage.statements import CompiledStatement, Cursor


class Changes:
    """What one unit of work (or one batch of deferred writes) changed."""

    __slots__ = ("bans", "levels", "new_bests", "rules")

    def __init__(self) -> None:
        self.levels: list[int] = []  # each level whose ordering may have changed
        self.rules: list[int] = []  # each level whose rules or seasons changed
        self.bans = False  # a user was banned or unbanned
        self.new_bests = 0  # scores that became a player's best

    def __bool__(self) -> bool:
        return bool(self.levels or self.rules or self.bans or self.new_bests)


Listener = Callable[[Changes], None]


class Listeners:
    """Who hears of each unit of work's changes once they are committed."""

    def __init__(self) -> None:
        self._listeners: tuple[Listener, ...] = ()

    def subscribe(self, listener: Listener) -> None:
        """Tell listener of every change committed from now on."""
        self._listeners = (*self._listeners, listener)

    def tell(self, changes: Changes) -> None:
        """Tell every listener of changes, which are committed."""
        for listener in self._listeners:
            listener(changes)


class UnitOfWork:
    """What every database's unit of work offers; `with database.unit_of_work() as uow:`.

    Statements run in one transaction, committed when the block ends without an error and
    rolled back otherwise; the changes recorded are published after the commit, never after
    a rollback. A unit of one statement (database.unit_of_work(one_statement=True)) runs its
    statement as its own transaction: no BEGIN and COMMIT around it, which on PostgreSQL
    would be two more round trips, and where the database allows, its write is deferred.
    """

    __slots__ = ("changes",)

    def __init__(self) -> None:
        self.changes = Changes()

    def execute(self, statement: CompiledStatement, **values: Any) -> Cursor:
        """Run statement in this unit of work; the driver's cursor, to fetch from."""
        raise NotImplementedError

    def executemany(self, statement: CompiledStatement, batch: list[dict[str, Any]]) -> Cursor:
        """Run statement once for each set of values in batch, in this unit of work."""
        raise NotImplementedError

    def write(
        self, statement: CompiledStatement, *, new_bests: bool = False, **values: Any
    ) -> int | None:
        """Run a write whose result is the rows it changed; None where it is deferred.

        A database that defers writes (SQLite in one process's memory) makes it a few
        milliseconds later, before any other unit of work or read. With new_bests, the rows
        it changes are counted as scores that became a best, once they are committed.
        """
        rows: int = self.execute(statement, **values).rowcount
        if new_bests and rows > 0:
            self.changes.new_bests += rows
        return rows

    def level_changed(self, level_id: int) -> None:
        """Record that the level's ordering may have changed: its kept list is read anew."""
        self.changes.levels.append(level_id)

    def rules_changed(self, level_id: int) -> None:
        """Record that the level's rules or seasons changed: every process reads them anew."""
        self.changes.rules.append(level_id)
        self.changes.levels.append(level_id)  # and its lists, which follow its order

    def bans_changed(self) -> None:
        """Record that a user was banned or unbanned: every process reads the bans anew."""
        self.changes.bans = True

    def counted_new_bests(self, count: int) -> None:
        """Record that count scores became a player's best."""
        self.changes.new_bests += count

    def lock_scores(self) -> None:
        """Make score writes wait until this unit of work ends (a ban moving a user's rows)."""

    def lock_schema(self) -> None:
        """Make every other server's migrations wait until this unit of work ends."""

    @property
    def connection(self) -> Connection:
        """A SQLAlchemy Connection in this unit of work's transaction (Alembic, tests)."""
        raise TypeError("a unit of one statement has no SQLAlchemy connection")
