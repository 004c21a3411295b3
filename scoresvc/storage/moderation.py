"""Moderation: what the admin API reads and changes, each change recorded in the audit log.

A ban hides a user rather than deleting them: their rows move from best_scores to
hidden_scores in one unit of work, so the triggers take them out of rank_counts, and every
list, rank, window and count (which read only those two tables) leaves them out at once, on
every worker and replica. An unban moves the rows back. The score upsert writes nothing for a
banned user (see Repository), so a banned player cannot come back by posting.
"""

import logging
import time
from collections.abc import Callable, Generator
from typing import NamedTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Insert,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    union,
)

from scoresvc.errors import RulesConflict
from scoresvc.leaderboards import MAX_SCORE, RULE_FIELDS, Rules
from scoresvc.storage import ranking
from scoresvc.storage.database import Database
from scoresvc.storage.levels import Board, Levels, LevelState, Season
from scoresvc.storage.schema import (
    audit_log,
    banned_users,
    best_scores,
    hidden_scores,
    level_rules,
    rank_counts,
)
from scoresvc.storage.statements import keep_best, upsert_insert
from scoresvc.storage.unitofwork import UnitOfWork

logger = logging.getLogger("scoresvc")

PAGE_SIZE = 100
# Rows an export reads per fetch: a few hundred KB of CSV, so memory stays flat at any size.
EXPORT_BATCH_ROWS = 2000


class RulesAndSeason(NamedTuple):
    """A level's rules and its current season."""

    level_id: int
    rules: Rules
    season: Season


class LevelPlayers(NamedTuple):
    """A level, and how many players have a (visible) score on it."""

    level_id: int
    players: int


class AdminEntry(NamedTuple):
    """One place in a level's ordering, with when the score was reached (us since the epoch)."""

    rank: int
    user_id: int
    score: int
    reached_at_us: int


class AdminPage(NamedTuple):
    """Up to 100 consecutive places of a level's season, and its number of players."""

    entries: tuple[AdminEntry, ...]
    players: int
    season: int


class DeletedScore(NamedTuple):
    """A best score that was removed; hidden if it was a banned user's."""

    score: int
    reached_at_us: int
    hidden: bool


class BanChange(NamedTuple):
    """The outcome of a ban or unban: whether it changed anything, and which levels."""

    user_id: int
    changed: bool
    levels: tuple[int, ...]


class BannedUser(NamedTuple):
    """A banned user, since when (us since the epoch), and how many scores of theirs are hidden."""

    user_id: int
    banned_at_us: int
    hidden_scores: int


class AuditEntry(NamedTuple):
    """One change made through the admin API."""

    id: int
    changed_at_us: int
    action: str
    level_id: int | None
    user_id: int
    detail: str


def _scores(count: int) -> str:
    return f"{count} score" if count == 1 else f"{count} scores"


def _number(value: int) -> ColumnElement[int]:
    return literal_column(str(value), Integer)


def _levels_after(
    after: ColumnElement[int], limit: int | None, *, up_to: int | None = None
) -> Select[int]:
    """level_id of each board with a player, in order, after the id `after` (at most `limit`,
    none past `up_to`: MAX_SCORE for the levels' first seasons only).

    rank_counts has a few rows per board at depth 1 but one per score at depth 4, so a scan
    for distinct boards would read them all: this walks from board to board instead, each
    step one look-up of the next id in rank_counts' primary key.
    """
    bounds = [] if up_to is None else [rank_counts.c.level_id <= _number(up_to)]
    first = select(func.min(rank_counts.c.level_id).label("level_id"), _number(1).label("n")).where(
        rank_counts.c.level_id > after, *bounds
    )
    walk = first.cte("walk", recursive=True)
    next_level = (
        select(func.min(rank_counts.c.level_id))
        .where(rank_counts.c.level_id > walk.c.level_id, *bounds)
        .scalar_subquery()
    )
    step = select(next_level, walk.c.n + _number(1)).where(walk.c.level_id.is_not(None))
    if limit is not None:
        step = step.where(walk.c.n < _number(limit))
    walk = walk.union_all(step)
    return select(walk.c.level_id).where(walk.c.level_id.is_not(None))


def _level_page() -> Select[int]:
    """Up to 100 level ids after :after: those with a player in season 1, and those with rules
    (whose later seasons may have players while the first has none)."""
    after = bindparam("after", type_=Integer)
    walk = _levels_after(after, PAGE_SIZE, up_to=MAX_SCORE).subquery("levels")
    with_rules = (
        select(level_rules.c.level_id)
        .where(level_rules.c.level_id > after)
        .order_by(level_rules.c.level_id)
        .limit(PAGE_SIZE)
        .subquery("with_rules")
    )
    levels = union(select(walk.c.level_id), select(with_rules.c.level_id)).subquery("page")
    return select(levels.c.level_id).order_by(levels.c.level_id).limit(PAGE_SIZE)


class Moderation:
    """The admin API's reads and changes, over one Database; clock() stamps the changes."""

    def __init__(
        self, database: Database, levels: Levels, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.database = database
        self._level_states = levels
        self._clock = clock
        insert_ = upsert_insert(database.engine.dialect)
        compile_ = database.compile
        self._levels = compile_(_level_page())
        self._page = compile_(ranking.window_from_rank(PAGE_SIZE, reached_at=True))
        self._players = compile_(ranking.players_on_level())
        self._export = compile_(
            select(best_scores.c.user_id, best_scores.c.score, best_scores.c.reached_at)
            .where(best_scores.c.level_id == bindparam("level_id", type_=BigInteger))
            .order_by(best_scores.c.score.desc(), best_scores.c.reached_at, best_scores.c.user_id)
        )
        hidden = (
            select(func.count())
            .where(hidden_scores.c.user_id == banned_users.c.user_id)
            .scalar_subquery()
        )
        self._banned_users = compile_(
            select(banned_users.c.user_id, banned_users.c.banned_at, hidden)
            .where(banned_users.c.user_id > bindparam("after", type_=Integer))
            .order_by(banned_users.c.user_id)
            .limit(PAGE_SIZE)
        )
        self._audit = compile_(
            select(audit_log)
            .where(audit_log.c.id < bindparam("before", type_=BigInteger))
            .order_by(audit_log.c.id.desc())
            .limit(PAGE_SIZE)
        )
        # The changes' statements.
        user = bindparam("user_id", type_=Integer)
        level = bindparam("level_id", type_=BigInteger)
        self._delete_score = {
            table: compile_(
                delete(table)
                .where(table.c.level_id == level, table.c.user_id == user)
                .returning(table.c.score, table.c.reached_at)
            )
            for table in (best_scores, hidden_scores)
        }
        self._add_ban = compile_(
            insert_(banned_users)
            .values(user_id=user, banned_at=bindparam("banned_at", type_=BigInteger))
            .on_conflict_do_nothing(index_elements=[banned_users.c.user_id])
            .returning(banned_users.c.user_id)
        )
        self._remove_ban = compile_(
            delete(banned_users)
            .where(banned_users.c.user_id == user)
            .returning(banned_users.c.user_id)
        )
        self._hide_scores = compile_(_hide_users_scores())
        # hidden_scores is keyed by user: a scan, of the few rows that bans hide.
        self._hidden_on_board = compile_(
            select(func.count()).select_from(hidden_scores).where(hidden_scores.c.level_id == level)
        )
        self._delete_hidden_from_best = compile_(
            delete(best_scores).where(
                best_scores.c.user_id == user,
                best_scores.c.level_id.in_(
                    select(hidden_scores.c.level_id).where(hidden_scores.c.user_id == user)
                ),
            )
        )
        restored = insert_(best_scores).from_select(
            ["level_id", "user_id", "score", "reached_at"],
            select(
                hidden_scores.c.level_id, hidden_scores.c.user_id, hidden_scores.c.score,
                hidden_scores.c.reached_at,
            ).where(hidden_scores.c.user_id == user),
        )  # fmt: skip
        self._restore_scores = compile_(keep_best(restored))
        self._delete_hidden = compile_(delete(hidden_scores).where(hidden_scores.c.user_id == user))
        self._hidden_levels = compile_(
            select(hidden_scores.c.level_id)
            .where(hidden_scores.c.user_id == user)
            .order_by(hidden_scores.c.level_id)
        )
        self._audit_change = compile_(
            insert(audit_log).values(
                changed_at=bindparam("changed_at", type_=BigInteger),
                action=bindparam("action", type_=String),
                level_id=bindparam("level_id", type_=Integer),
                user_id=user,
                detail=bindparam("detail", type_=String),
            )
        )

    # Reads

    def levels(self, after: int = -1) -> list[LevelPlayers]:
        """Up to 100 levels with players or rules, by id, after the level `after`, each with
        the players of its current season."""
        with self.database.read() as cursor:
            level_ids = [level_id for (level_id,) in self._levels.execute(cursor, after=after)]
        found = []
        for level_id in level_ids:
            board = self._level_states.board(level_id)
            with self.database.read() as cursor:
                (players,) = self._players.execute(cursor, level_id=board.board).fetchone()
            found.append(LevelPlayers(level_id, players))
        return found

    def scores_from(self, level_id: int, first_rank: int, season: int | None = None) -> AdminPage:
        """The 100 places from first_rank (1-based) on, ranked as the public lists rank them."""
        board = self._level_states.board(level_id, season)
        with self.database.read() as cursor:
            rows = self._page.execute(cursor, level_id=board.board, rank=first_rank).fetchall()
            if not rows:
                players = self._players.execute(cursor, level_id=board.board).fetchone()[0]
                return AdminPage((), players, board.season)
        shown = board.rules.shown
        entries = tuple(
            AdminEntry(rank, user_id, shown(stored), reached_at)
            for rank, (user_id, stored, reached_at, _) in enumerate(rows, start=first_rank)
        )
        return AdminPage(entries, rows[0][3], board.season)

    def export(
        self, level_id: int, season: int | None = None
    ) -> Generator[list[AdminEntry], None, None]:
        """The level's whole ordering in batches, read from one snapshot as it is consumed.

        A generator: the reader's connection is held until it is exhausted or closed. The
        season is judged when it is called (NoSuchSeason at once), before the first batch.
        """
        board = self._level_states.board(level_id, season)
        return self._export_board(board)

    def _export_board(self, board: Board) -> Generator[list[AdminEntry], None, None]:
        rank = 0
        shown = board.rules.shown
        with self.database.snapshot() as cursor:
            self._export.execute(cursor, level_id=board.board)
            while rows := cursor.fetchmany(EXPORT_BATCH_ROWS):
                batch = [
                    AdminEntry(rank + n, user_id, shown(stored), reached_at)
                    for n, (user_id, stored, reached_at) in enumerate(rows, start=1)
                ]
                rank += len(rows)
                yield batch

    def rules(self, level_id: int) -> RulesAndSeason:
        """The level's rules and its current season."""
        return self._rules_and_season(self._level_states.state(level_id))

    def banned_users(self, after: int = -1) -> list[BannedUser]:
        """Up to 100 banned users, by id, after the user `after`."""
        with self.database.read() as cursor:
            rows = self._banned_users.execute(cursor, after=after).fetchall()
        return [BannedUser(*row) for row in rows]

    def audit_entries(self, before: int | None = None) -> list[AuditEntry]:
        """Up to 100 audit entries, newest first, older than the entry `before`."""
        before = 2**31 if before is None else before
        with self.database.read() as cursor:
            rows = self._audit.execute(cursor, before=before).fetchall()
        return [AuditEntry(*row) for row in rows]

    # Changes: each one unit of work with its audit entry

    def delete_score(self, level_id: int, user_id: int) -> DeletedScore | None:
        """Remove the user's entry in the level's current season (hidden or not); None if
        there is none."""
        now = self._now_us()
        board = self._level_states.board(level_id)
        with self.database.unit_of_work() as uow:
            deleted = None
            for table, hidden in ((best_scores, False), (hidden_scores, True)):
                row = uow.execute(
                    self._delete_score[table], level_id=board.board, user_id=user_id
                ).fetchone()
                if row is not None:
                    stored, reached_at = row
                    deleted = DeletedScore(board.rules.shown(stored), reached_at, hidden)
                    break
            if deleted is None:
                return None
            detail = f"score {deleted.score}"
            if deleted.hidden:
                detail += " (hidden: the user is banned)"
            self._record_audit(uow, now, "delete_score", level_id, user_id, detail)
            uow.level_changed(level_id)
        logger.info("admin: deleted user %d's score on level %d: %s", user_id, level_id, detail)
        return deleted

    def ban(self, user_id: int) -> BanChange:
        """Ban the user: their scores hidden from every level, their posts and logins refused."""
        now = self._now_us()
        with self.database.unit_of_work() as uow:
            # No score post can write a row for the user after the rows have been moved.
            uow.lock_scores()
            if uow.execute(self._add_ban, user_id=user_id, banned_at=now).fetchone() is None:
                return BanChange(user_id, False, ())
            uow.execute(self._hide_scores, user_id=user_id)
            levels = self._levels_hidden(uow, user_id)
            uow.execute(self._delete_hidden_from_best, user_id=user_id)
            detail = f"{_scores(len(levels))} hidden"
            self._record_audit(uow, now, "ban", None, user_id, detail)
            self._changed(uow, levels)
        logger.info("admin: banned user %d: %s", user_id, detail)
        return BanChange(user_id, True, levels)

    def unban(self, user_id: int) -> BanChange:
        """Lift the user's ban: their hidden scores come back where they rank."""
        now = self._now_us()
        with self.database.unit_of_work() as uow:
            if uow.execute(self._remove_ban, user_id=user_id).fetchone() is None:
                return BanChange(user_id, False, ())
            levels = self._levels_hidden(uow, user_id)
            uow.execute(self._restore_scores, user_id=user_id)
            uow.execute(self._delete_hidden, user_id=user_id)
            detail = f"{_scores(len(levels))} restored"
            self._record_audit(uow, now, "unban", None, user_id, detail)
            self._changed(uow, levels)
        logger.info("admin: unbanned user %d: %s", user_id, detail)
        return BanChange(user_id, True, levels)

    def change_rules(self, level_id: int, changes: object) -> RulesAndSeason:
        """Change the rules the JSON object `changes` names; the level's rules after it.

        InvalidRules (400) for an unknown field, a wrong type or value; RulesConflict (409)
        for a new order or keep while the current season has a score.
        """
        now = self._now_us()
        with self.database.unit_of_work() as uow:
            state = self._level_states.state_in(uow, level_id)
            rules = state.rules.changed_by(changes)
            if rules == state.rules:
                return self._rules_and_season(state)  # no change: nothing to record
            if (rules.order, rules.keep) != (state.rules.order, state.rules.keep):
                board = state.current_board(self.database.now_us()).board
                # Banned players' scores count: they come back, as stored, on unban.
                visible = uow.execute(self._players, level_id=board).fetchone()[0]
                hidden = uow.execute(self._hidden_on_board, level_id=board).fetchone()[0]
                if visible or hidden:
                    raise RulesConflict(
                        f"level {level_id}'s current season has scores: order and keep change "
                        f"only with a new season (POST /admin/levels/{level_id}/seasons first)"
                    )
            changed = self._level_states.change_rules(uow, level_id, rules)
            detail = ", ".join(
                f"{name} {getattr(state.rules, name)} -> {getattr(rules, name)}"
                for name in RULE_FIELDS
                if getattr(rules, name) != getattr(state.rules, name)
            )
            self._record_audit(uow, now, "rules", level_id, None, detail[:256])
        logger.info("admin: level %d's rules changed: %s", level_id, detail)
        return self._rules_and_season(changed)

    def start_season(self, level_id: int) -> RulesAndSeason:
        """Start the level's next season now: it begins empty, the earlier ones are kept."""
        now = self._now_us()
        with self.database.unit_of_work() as uow:
            state = self._level_states.start_season(uow, level_id)
            season = state.current_season(self.database.now_us())
            self._record_audit(uow, now, "season", level_id, None, f"season {season} started")
        logger.info("admin: level %d's season %d started", level_id, season)
        return self._rules_and_season(state)

    def _rules_and_season(self, state: LevelState) -> RulesAndSeason:
        now_us = self.database.now_us()
        season = state.season(state.current_season(now_us), now_us)
        return RulesAndSeason(state.level_id, state.rules, season)

    def _levels_hidden(self, uow: UnitOfWork, user_id: int) -> tuple[int, ...]:
        rows = uow.execute(self._hidden_levels, user_id=user_id).fetchall()
        return tuple(level_id for (level_id,) in rows)

    def _record_audit(
        self,
        uow: UnitOfWork,
        changed_at_us: int,
        action: str,
        level_id: int | None,
        user_id: int | None,
        detail: str,
    ) -> None:
        uow.execute(
            self._audit_change,
            changed_at=changed_at_us,
            action=action,
            level_id=level_id,
            user_id=user_id,
            detail=detail,
        )

    @staticmethod
    def _changed(uow: UnitOfWork, levels: tuple[int, ...]) -> None:
        for level_id in levels:
            uow.level_changed(level_id)
        uow.bans_changed()

    def _now_us(self) -> int:
        return int(self._clock() * 1_000_000)


def _hide_users_scores() -> Insert:
    """Copy :user_id's rows from best_scores into hidden_scores.

    Each level's row of the user, found by primary key level by level: no index on user_id
    alone is kept, which every new score would pay for.
    """
    user = bindparam("user_id", type_=Integer)
    walk = _levels_after(_number(-1), None).subquery("levels")
    users_rows = select(
        best_scores.c.user_id, best_scores.c.level_id, best_scores.c.score,
        best_scores.c.reached_at,
    ).select_from(
        walk.join(
            best_scores,
            and_(best_scores.c.level_id == walk.c.level_id, best_scores.c.user_id == user),
        )
    )  # fmt: skip
    return insert(hidden_scores).from_select(
        ["user_id", "level_id", "score", "reached_at"], users_rows
    )
