"""Each level's rules and seasons as every request needs them, and the changes the admin makes.

A level that was never given rules has none stored: the defaults, one season that began when
the database learned of seasons (the service setting seasons_since). Once given rules, a level
has a row in level_rules and at least one season span, and every change of rules or season is
one unit of work that publishes the level as changed: every process on the database reads the
level anew at its next request (where levels are kept in memory at all: SQLite).

Each change also gives the level a new stored version (level_rules.version, migration 0008).
Where no process can tell a kept level from a changed one (PostgreSQL: replicas share no
memory), the level's last read state is kept all the same, to be confirmed by the version that
the statement serving the request returns (assumed_board, confirm): one round trip, not two.
"""

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    String,
    bindparam,
    case,
    func,
    literal_column,
    select,
    update,
)

from scoresvc.errors import NoSuchSeason
from scoresvc.leaderboards import DEFAULT_RULES, SEASON_STRIDE, Rules, SeasonSpan, board_id
from scoresvc.storage.database import Database
from scoresvc.storage.levelcache import NoLevelCache
from scoresvc.storage.schema import level_rules, rank_counts, season_spans, service_settings
from scoresvc.storage.statements import upsert_insert
from scoresvc.storage.unitofwork import UnitOfWork

SEASONS_SINCE_SETTING = "seasons_since"
_NEVER = 2**63
SEASONS_SINCE = literal_column(f"'{SEASONS_SINCE_SETTING}'", String)
# Levels whose rules and seasons are kept in memory (the most recently read).
KEPT_LEVELS = 10_000


class Season(NamedTuple):
    """One season of a level: its number, its board, when it started and ended (µs)."""

    number: int
    board: int
    started_us: int
    ended_us: int | None  # None: not ended by the schedule (the current one, or no schedule)


class Board(NamedTuple):
    """Where a request reads: a season's board of a level, and the level's rules (with the
    order that season's board is stored in)."""

    board: int
    season: int
    rules: Rules


class LevelState:
    """A level's rules and season spans as read at one moment, with the level's version (its
    cache's, taken before the read) and its stored version (level_rules.version as read)."""

    __slots__ = ("_current", "level_id", "rules", "spans", "stored_version", "version")

    def __init__(
        self,
        level_id: int,
        rules: Rules,
        spans: tuple[SeasonSpan, ...],
        version: int = 0,
        stored_version: int = 0,
    ) -> None:
        self.level_id = level_id
        self.rules = rules
        self.spans = spans  # oldest first; never empty
        self.version = version
        self.stored_version = stored_version  # 0: no rules stored
        # (board, from, until): the current season's board as last worked out, and the
        # instants between which it holds, so that a scheduled level's time zone is consulted
        # only once a boundary has passed. One attribute: threads see a consistent triple.
        self._current: tuple[Board | None, int, int] = (None, 0, 0)

    def current_season(self, now_us: int) -> int:
        """The number of the season that holds the instant now_us."""
        return self.current_board(now_us).season

    def current_board(self, now_us: int) -> Board:
        """The board of the season that holds the instant now_us, with the level's rules."""
        until: int | None
        board, since, until = self._current
        if board is not None and since <= now_us < until:
            return board
        span = self.spans[-1]
        season = span.season_at(now_us)
        board = Board(board_id(self.level_id, season), season, self.rules)
        since = span.started(season) if season > span.first else span.counted_from_us
        until = span.ends(season)
        self._current = (board, since, _NEVER if until is None else until)
        return board

    def season(self, number: int, now_us: int) -> Season:
        """Season `number` (1 to the current one) with its board and its times."""
        span = self.span_of(number)
        current = self.current_season(now_us)
        ended: int | None
        if number < current:
            ended = self.span_of(number + 1).started(number + 1)
        else:
            ended = span.ends(number)
        return Season(number, board_id(self.level_id, number), span.started(number), ended)

    def span_of(self, number: int) -> SeasonSpan:
        """The run of seasons that season `number` belongs to."""
        for span in reversed(self.spans):
            if span.first <= number:
                return span
        return self.spans[0]


class Levels:
    """The levels' rules and seasons over one Database: read (kept per level where the
    database allows), changed in units of work."""

    def __init__(self, database: Database, *, kept_levels: int = KEPT_LEVELS) -> None:
        self.database = database
        self._kept = database.rules_cache(kept_levels)
        # Where the database keeps nothing (PostgreSQL), each level's state as last read, kept
        # all the same for reads that confirm it (assumed_board); else None: states are kept,
        # exactly, in _kept.
        self._assumed: OrderedDict[int, LevelState] | None = (
            OrderedDict() if isinstance(self._kept, NoLevelCache) else None
        )
        self._kept_levels = kept_levels
        level = bindparam("level_id", type_=Integer)
        compile_ = database.compile
        self._read = compile_(_level_state())
        insert = upsert_insert(database.engine.dialect)
        new_rules = insert(level_rules).values(
            level_id=level,
            sort_order=bindparam("order", type_=String),
            keep=bindparam("keep", type_=String),
            reset=bindparam("reset", type_=String),
            timezone=bindparam("timezone", type_=String),
            min_score=bindparam("min_score", type_=Integer),
            max_score=bindparam("max_score", type_=Integer),
            writes=bindparam("writes", type_=String),
        )
        self._write_rules = compile_(
            new_rules.on_conflict_do_update(
                index_elements=[level_rules.c.level_id],
                set_={
                    column: new_rules.excluded[column]
                    for column in (
                        "sort_order", "keep", "reset", "timezone", "min_score", "max_score",
                        "writes",
                    )
                },
            )
        )  # fmt: skip
        self._add_span = compile_(
            insert(season_spans)
            .values(
                level_id=level,
                first_season=bindparam("first_season", type_=Integer),
                started_at=bindparam("started_at", type_=BigInteger),
                counted_from=bindparam("counted_from", type_=BigInteger),
                reset=bindparam("reset", type_=String),
                timezone=bindparam("timezone", type_=String),
                sort_order=bindparam("order", type_=String),
            )
            .on_conflict_do_update(
                index_elements=[season_spans.c.level_id, season_spans.c.first_season],
                set_={
                    "counted_from": bindparam("counted_from", type_=BigInteger),
                    "reset": bindparam("reset", type_=String),
                    "timezone": bindparam("timezone", type_=String),
                    "sort_order": bindparam("order", type_=String),
                },
            )
        )
        self._players_by_season = compile_(_players_by_season())
        # The database's clock, or one more than the version was: versions only grow.
        later = level_rules.c.version + literal_column("1", BigInteger)
        now = bindparam("now", type_=BigInteger)
        self._new_version = compile_(
            update(level_rules)
            .where(level_rules.c.level_id == level)
            .values(version=case((later > now, later), else_=now))
        )

    def now_us(self) -> int:
        """The instant seasons are judged by: µs since the epoch, by the database's clock."""
        return self.database.now_us()

    def state(self, level_id: int) -> LevelState:
        """The level's rules and seasons, kept from the last read while the level is unchanged."""
        kept: LevelState | None = self._kept.get(level_id)
        if kept is not None:
            return kept
        version = self._kept.version(level_id)  # before the read: a change after it is seen
        with self.database.read() as cursor:
            rows = self._read.execute(cursor, level_id=level_id).fetchall()
        state = self._state_from(level_id, rows, version)
        self._kept.fill(level_id, state)
        assumed = self._assumed
        if assumed is not None:
            if level_id not in assumed and len(assumed) >= self._kept_levels:
                with suppress(KeyError):  # another thread may have made room meanwhile
                    assumed.popitem(last=False)  # the one read longest ago
            if self._kept_levels > 0:
                assumed[level_id] = state
        return state

    def board(self, level_id: int, season: int | None = None) -> Board:
        """The board of the level's season (the current one by default); NoSuchSeason."""
        return self._board_of(self.state(level_id), season)

    def assumed_board(self, level_id: int, season: int | None = None) -> tuple[Board, int]:
        """The board of the level's season as the level's last read state says, and the stored
        version of that state: for a read whose statement returns the level's stored version
        as well, to be confirmed with it (confirm) before its answer is used; NoSuchSeason.

        Where the database keeps states exactly (SQLite), that is the state board() uses. Else
        it may be stale: another replica may have changed the level since it was read.
        """
        assumed = None if self._assumed is None else self._assumed.get(level_id)
        if assumed is not None:
            try:
                return self._board_of(assumed, season), assumed.stored_version
            except NoSuchSeason:
                pass  # a season that may have begun since: asked of the database below
        state = self.state(level_id)
        return self._board_of(state, season), state.stored_version

    def confirm(self, level_id: int, assumed: int, read: int | None) -> bool:
        """Whether a read of assumed_board's board holds: assumed is the stored version that
        assumed_board gave, read the one the read returned with its rows (None: it returned
        none, and the version is asked of the database, a round trip more). False where the
        level changed: its state is read anew by the next assumed_board, and the read is to be
        made again."""
        if read is None:
            return self.state(level_id).stored_version == assumed  # kept, if it is newer
        if read == assumed:
            return True
        if self._assumed is not None:
            self._assumed.pop(level_id, None)
        return False

    def _board_of(self, state: LevelState, season: int | None) -> Board:
        level_id = state.level_id
        current = state.current_board(self.now_us())
        if season is None or season == current.season:
            return current
        if not 1 <= season < current.season:
            raise NoSuchSeason(level_id, season)
        rules = state.rules
        order = state.span_of(season).order
        if order != rules.order:  # a past season, stored in the order of its time
            rules = dataclasses.replace(rules, order=order)
        return Board(board_id(level_id, season), season, rules)

    def seasons(self, state: LevelState) -> list[tuple[Season, int]]:
        """Every season of the level, oldest first, each with its number of players."""
        now_us = self.now_us()
        current = state.current_season(now_us)
        with self.database.read() as cursor:
            players = dict(
                self._players_by_season.execute(
                    cursor, level_id=state.level_id, seasons=current
                ).fetchall()
            )
        return [
            (state.season(number, now_us), players.get(number, 0))
            for number in range(1, current + 1)
        ]

    # Changes, each in the caller's unit of work

    def change_rules(self, uow: UnitOfWork, level_id: int, rules: Rules) -> LevelState:
        """Make rules the level's, in uow: a new reset or time zone counts from now on."""
        state = self._stored_in(uow, level_id)
        now_us = self.now_us()
        uow.execute(self._write_rules, level_id=level_id, **dataclasses.asdict(rules))
        last = state.spans[-1]
        if (last.reset, last.timezone, last.order) != (rules.reset, rules.timezone, rules.order):
            # The current season goes on until the next boundary of the new schedule (counted
            # from now: a schedule's boundaries are fixed times of day, wherever counted from).
            current = state.current_season(now_us)
            started_us = state.season(current, now_us).started_us
            span = SeasonSpan(current, started_us, now_us, rules.reset, rules.timezone, rules.order)
            self._store_span(uow, level_id, span)
        uow.execute(self._new_version, level_id=level_id, now=now_us)
        uow.rules_changed(level_id)
        return self._read_in(uow, level_id)

    def start_season(self, uow: UnitOfWork, level_id: int) -> LevelState:
        """Start the level's next season now, in uow."""
        state = self._stored_in(uow, level_id)
        now_us = self.now_us()
        rules = state.rules
        next_season = state.current_season(now_us) + 1
        span = SeasonSpan(next_season, now_us, now_us, rules.reset, rules.timezone, rules.order)
        self._store_span(uow, level_id, span)
        uow.execute(self._new_version, level_id=level_id, now=now_us)
        uow.rules_changed(level_id)
        return self._read_in(uow, level_id)

    def _stored_in(self, uow: UnitOfWork, level_id: int) -> LevelState:
        """The level's state in uow, its default rules and first season stored if they were not:
        a level changed once has rules and spans from its first season on."""
        state = self._read_in(uow, level_id)
        if not state.spans_stored:
            uow.execute(self._write_rules, level_id=level_id, **dataclasses.asdict(state.rules))
            self._store_span(uow, level_id, state.spans[0])
        return state

    def _store_span(self, uow: UnitOfWork, level_id: int, span: SeasonSpan) -> None:
        uow.execute(
            self._add_span,
            level_id=level_id,
            first_season=span.first,
            started_at=span.started_us,
            counted_from=span.counted_from_us,
            reset=span.reset,
            timezone=span.timezone,
            order=span.order,
        )

    def state_in(self, uow: UnitOfWork, level_id: int) -> LevelState:
        """The level's rules and seasons as uow's transaction sees them."""
        return self._read_in(uow, level_id)

    def _read_in(self, uow: UnitOfWork, level_id: int) -> "_StoredState":
        rows = uow.execute(self._read, level_id=level_id).fetchall()
        return self._state_from(level_id, rows, 0)

    @staticmethod
    def _state_from(level_id: int, rows: Sequence[Sequence[Any]], version: int) -> "_StoredState":
        since, order = rows[0][0], rows[0][1]
        if order is None:  # no rules stored: the defaults since seasons began
            since_us = 0 if since is None else int(since)
            span = SeasonSpan(1, since_us, since_us, "never", "UTC", "desc")
            return _StoredState(level_id, DEFAULT_RULES, (span,), version, stored=False)
        rules = Rules(*rows[0][1:8])
        spans = tuple(SeasonSpan(*row[8:14]) for row in rows)
        stored_version = int(rows[0][14])
        return _StoredState(level_id, rules, spans, version, stored_version, stored=True)


class _StoredState(LevelState):
    """A LevelState that also says whether the level has rules stored at all."""

    __slots__ = ("spans_stored",)

    def __init__(
        self,
        level_id: int,
        rules: Rules,
        spans: tuple[SeasonSpan, ...],
        version: int,
        stored_version: int = 0,
        *,
        stored: bool,
    ) -> None:
        super().__init__(level_id, rules, spans, version, stored_version)
        self.spans_stored = stored


def _level_state() -> Select[*tuple[Any, ...]]:
    """The level's rules and season spans, oldest first, after when seasons began.

    One row at least, whatever is stored: from the one-row `base`, the service setting
    seasons_since, then the rules and spans if the level has any (else NULLs), and last the
    level's stored version (on every row).
    """
    base = select(literal_column("1").label("one")).subquery("base")
    level = bindparam("level_id", type_=Integer)
    return (
        select(
            service_settings.c.value,
            level_rules.c.sort_order,
            level_rules.c.keep,
            level_rules.c.reset,
            level_rules.c.timezone,
            level_rules.c.min_score,
            level_rules.c.max_score,
            level_rules.c.writes,
            season_spans.c.first_season,
            season_spans.c.started_at,
            season_spans.c.counted_from,
            season_spans.c.reset,
            season_spans.c.timezone,
            season_spans.c.sort_order,
            level_rules.c.version,
        )
        .select_from(
            base.outerjoin(service_settings, service_settings.c.name == SEASONS_SINCE)
            .outerjoin(level_rules, level_rules.c.level_id == level)
            .outerjoin(season_spans, season_spans.c.level_id == level_rules.c.level_id)
        )
        .order_by(season_spans.c.first_season)
    )


def _players_by_season() -> Select[int, int]:
    """(season, players) of :level_id's seasons 1 to :seasons that have any player.

    Each season's board is looked up by its key in rank_counts: the boards of one level are
    2**31 apart, so a range over them would cross every other level's boards.
    """
    number: Callable[[int], ColumnElement[int]] = lambda value: literal_column(  # noqa: E731
        str(value), BigInteger
    )
    first = select(
        number(1).label("season"), bindparam("level_id", type_=BigInteger).label("board")
    )
    seasons = first.cte("seasons", recursive=True)
    seasons = seasons.union_all(
        select(seasons.c.season + _number(1), seasons.c.board + _number(SEASON_STRIDE)).where(
            seasons.c.season < bindparam("seasons", type_=Integer)
        )
    )
    players = (
        select(func.sum(rank_counts.c.players))
        .where(rank_counts.c.level_id == seasons.c.board, rank_counts.c.depth == _number(1))
        .scalar_subquery()
    )
    return select(seasons.c.season, players).where(players.is_not(None))


def _number(value: int) -> ColumnElement[int]:
    return literal_column(str(value), BigInteger)
