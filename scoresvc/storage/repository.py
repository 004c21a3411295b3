"""The repository: scores per level and season, stored session keys and service settings.

Every request that reads or writes scores names a level, and the level's rules and seasons
(storage/levels.py) say which board it reads (the current season's, or the one `season=`
names), in which order, and how a post changes it. Scores are stored as the board ranks them
(see scoresvc.leaderboards): what this module answers is always the score as posted.
"""

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Delete,
    Integer,
    String,
    Table,
    bindparam,
    delete,
    select,
    tuple_,
)

from scoresvc.errors import ScoreOutOfBounds, ServerWritesOnly
from scoresvc.leaderboards import KEEPS, ORDERS
from scoresvc.storage import ranking
from scoresvc.storage.database import Database
from scoresvc.storage.leftoverjournal import ScoreRecord
from scoresvc.storage.levelcache import NoLevelCache
from scoresvc.storage.levels import SEASONS_SINCE_SETTING, Board, Levels
from scoresvc.storage.schema import best_scores, idempotency_keys, service_settings, session_keys
from scoresvc.storage.statements import (
    CompiledStatement,
    best_score_upsert,
    upsert_insert,
)
from scoresvc.storage.topscores import LastReads, TopScores

TOP_SCORES_LIMIT = ranking.WINDOW_SIZE
# Reads of a list on a board assumed from kept rules (see top_scores_snapshot) before the last
# one is taken whatever its rules version says.
CONFIRM_TRIES = 3
# Levels whose top scores are kept in memory (the most recently read): about 2 KB each at most.
TOP_SCORES_CACHE_LEVELS = 10_000
# The most users one friends list (users=) names.
FRIENDS_LIMIT = 100
# How long a score post's Idempotency-Key is remembered, in µs.
IDEMPOTENCY_KEY_LIFETIME_US = 24 * 3600 * 1_000_000
# Expired rows (stored session keys, idempotency keys) are deleted as part of normal work:
# once in so many writes of that kind, at most so many rows, so that no statement is unbounded
# and the tables stay at what the last day (or key lifetime) wrote.
PURGE_EVERY = 64
PURGE_ROWS = 256


class ScoreEntry(NamedTuple):
    """One line of a high score list."""

    user_id: int
    score: int


class RankedEntry(NamedTuple):
    """One place in a level's ordering."""

    rank: int
    user_id: int
    score: int


class PlayerRank(NamedTuple):
    """Where a user's best score stands in a level, of how many players."""

    rank: int
    score: int
    players: int


class Window(NamedTuple):
    """Up to 15 consecutive places of a level's ordering, and the level's number of players."""

    entries: tuple[RankedEntry, ...]
    players: int


class StoredSessionKey(NamedTuple):
    """What the database holds for a stored-mode key: whose it is and when it ends (ms)."""

    user_id: int
    expires_at_ms: int


class Repository:
    """Scores per level and season, stored session keys and service settings, over one Database.

    Every statement is built and compiled once, here or in statements.py and ranking.py:
    building a SQLAlchemy statement, or running it through Connection.execute(), costs several
    times what the driver spends on it. Every write is a unit of work, which publishes what it
    changed.
    """

    def __init__(
        self, database: Database, *, top_scores_cache_levels: int = TOP_SCORES_CACHE_LEVELS
    ) -> None:
        self.database = database
        self.levels = Levels(database)
        self._top_scores_cache = database.level_cache(top_scores_cache_levels)
        # Where no list is kept as current (PostgreSQL), each board's last read is kept to be
        # given back when read again unchanged; else the cache above keeps the lists.
        keeps_nothing = isinstance(self._top_scores_cache, NoLevelCache)
        self._last_top_scores = LastReads(top_scores_cache_levels if keeps_nothing else 0)
        dialect = database.engine.dialect
        compile_ = database.compile
        self._score_writes = {
            (keep, order): database.score_write(keep, order) for keep in KEEPS for order in ORDERS
        }
        self._record_score_reached = compile_(
            best_score_upsert(dialect, reached_at=bindparam("reached_at", type_=BigInteger))
        )
        self._top_scores = compile_(ranking.top_of_level())
        self._rank = compile_(ranking.rank_of_user())
        self._window_from = compile_(ranking.window_from_rank())
        self._window_around = compile_(ranking.window_around_user())
        self._players = compile_(ranking.players_on_level())
        self._entries_of_users = compile_(ranking.entries_of_users(FRIENDS_LIMIT))

        insert = upsert_insert(dialect)
        claimed = insert(idempotency_keys).values(
            user_id=bindparam("user_id", type_=Integer),
            level_id=bindparam("level_id", type_=Integer),
            idempotency_key=bindparam("key", type_=String),
            status=200,
            created_at=bindparam("now", type_=BigInteger),
        )
        # A key seen within its lifetime is not claimed again: its post was answered once.
        self._claim_idempotency_key = compile_(
            claimed.on_conflict_do_update(
                index_elements=list(idempotency_keys.primary_key),
                set_={"created_at": claimed.excluded.created_at},
                where=idempotency_keys.c.created_at < bindparam("expired_before", type_=BigInteger),
            ).returning(idempotency_keys.c.user_id)
        )
        self._find_idempotency_key = compile_(
            select(idempotency_keys.c.status).where(
                idempotency_keys.c.user_id == bindparam("user_id", type_=Integer),
                idempotency_keys.c.level_id == bindparam("level_id", type_=Integer),
                idempotency_keys.c.idempotency_key == bindparam("key", type_=String),
                idempotency_keys.c.created_at >= bindparam("since", type_=BigInteger),
            )
        )
        self._purge_idempotency_keys = compile_(
            _purge(idempotency_keys, idempotency_keys.c.created_at, "expired_before")
        )
        self._idempotent_posts = itertools.count(1)

        stored_key = insert(session_keys).values(
            user_id=bindparam("user_id"),
            key_hash=bindparam("key_hash"),
            expires_at=bindparam("expires_at"),
        )
        self._store_session_key = compile_(
            stored_key.on_conflict_do_update(
                index_elements=[session_keys.c.user_id],
                set_={
                    "key_hash": stored_key.excluded.key_hash,
                    "expires_at": stored_key.excluded.expires_at,
                },
            )
        )
        self._find_session_key = compile_(
            select(session_keys.c.user_id, session_keys.c.expires_at).where(
                session_keys.c.key_hash == bindparam("key_hash")
            )
        )
        self._purge_session_keys = compile_(
            _purge(session_keys, session_keys.c.expires_at, "expired_before")
        )
        self._stored_keys = itertools.count(1)

        self._add_setting = compile_(
            insert(service_settings)
            .values(name=bindparam("name"), value=bindparam("value"))
            .on_conflict_do_nothing(index_elements=[service_settings.c.name])
        )
        self._get_setting = compile_(
            select(service_settings.c.value).where(service_settings.c.name == bindparam("name"))
        )
        self._health_probe = compile_(select(best_scores.c.level_id).limit(1))

    # Writes

    def record_score(
        self,
        level_id: int,
        user_id: int,
        score: int,
        *,
        by_server: bool = False,
        idempotency_key: str | None = None,
    ) -> bool | None:
        """Record a posted score as the level's rules keep it: whether the entry changed.

        Once this returns, every read made afterwards, by any process on the database, sees it.
        Raised, with nothing written: UserBanned, ServerWritesOnly (a player's post where only
        the game's server writes), ScoreOutOfBounds. With an idempotency_key this user already
        posted to this level within 24 hours, nothing is written and the post is answered as
        the first was (False). None where the write is deferred (a memory database of one
        process): whether the entry changed is not known yet.
        """
        state = self.levels.state(level_id)
        rules = state.rules
        if rules.writes == "server" and not by_server:
            raise ServerWritesOnly(level_id)
        if not rules.accepts(score):
            raise ScoreOutOfBounds(score, rules.min_score, rules.max_score)
        now_us = self.database.now_us()
        values = {
            "level_id": state.current_board(now_us).board,
            "user_id": user_id,
            "score": rules.stored(score),
        }
        write = self._score_writes[rules.keep, rules.order]
        if idempotency_key is None:
            with self.database.unit_of_work(one_statement=True) as uow:
                written = write.run(uow, **values)
                uow.level_changed(level_id)
            return None if written is None else written > 0
        with self.database.unit_of_work() as uow:
            claimed = uow.execute(
                self._claim_idempotency_key,
                user_id=user_id,
                level_id=level_id,
                key=idempotency_key,
                now=now_us,
                expired_before=now_us - IDEMPOTENCY_KEY_LIFETIME_US,
            ).fetchone()
            if claimed is None:
                return False  # the first post with this key was answered: this one changes nothing
            written = write.run(uow, **values)
            uow.level_changed(level_id)
        if next(self._idempotent_posts) % PURGE_EVERY == 0:
            self._purge(self._purge_idempotency_keys, now_us - IDEMPOTENCY_KEY_LIFETIME_US)
        return bool(written)

    def answered_before(self, level_id: int, user_id: int, idempotency_key: str) -> bool:
        """Whether a post of the user's to the level with this Idempotency-Key was recorded
        within the key's lifetime: a retry of it is answered as it was, judged by nothing."""
        since = self.database.now_us() - IDEMPOTENCY_KEY_LIFETIME_US
        with self.database.read() as cursor:
            found = self._find_idempotency_key.execute(
                cursor, user_id=user_id, level_id=level_id, key=idempotency_key, since=since
            ).fetchone()
        return found is not None

    def record_scores_reached(self, records: Iterable[ScoreRecord]) -> None:
        """Keep each record's score as a best, reached when the record says, in one transaction.

        Oldest first, so that of two equal scores the earlier keeps its place; a record the
        database already has changes nothing (a best is only replaced by a higher score).
        Records are scoresvc 1.0's, whose levels had no rules: season 1, highest first.
        """
        records = list(records)
        with self.database.unit_of_work() as uow:
            uow.executemany(self._record_score_reached, [r._asdict() for r in records])
            for level_id in {record.level_id for record in records}:
                uow.level_changed(level_id)

    def is_banned(self, user_id: int) -> bool:
        """Whether the user is banned: their posts and logins are refused."""
        return user_id in self.database.banned_users

    # Reads

    def board(self, level_id: int, season: int | None = None) -> Board:
        """The board of the level's season (the current one by default); NoSuchSeason."""
        return self.levels.board(level_id, season)

    def top_scores(self, level_id: int, season: int | None = None) -> list[ScoreEntry]:
        """The level's first places as posted scores, best first, earliest first among equals,
        at most 15."""
        return list(self.top_scores_snapshot(level_id, season).entries)

    def top_scores_snapshot(self, level_id: int, season: int | None = None) -> TopScores:
        """The level's top scores: kept from the last read while no write has changed the level.

        The board is the one the level's last read rules and seasons say (one round trip on
        PostgreSQL, not two), confirmed by the rules version the list is read with: where the
        level changed meanwhile, its rules are read anew and the list again.
        """
        levels = self.levels
        cache = self._top_scores_cache
        for _ in range(CONFIRM_TRIES):
            board, assumed = levels.assumed_board(level_id, season)
            kept: TopScores | None = cache.get(board.board)
            if kept is not None:
                return kept
            version = cache.version(board.board)  # before the read: a write after it is seen
            top, rules_version = self._read_top_scores(board, level_id, version)
            if levels.confirm(level_id, assumed, rules_version):
                break
        # Confirmed, or read after rules read anew (a change between the two reads, as ever).
        cache.fill(board.board, top)
        return top

    def rank(self, level_id: int, user_id: int, season: int | None = None) -> PlayerRank | None:
        """The user's place in the level's whole ordering, or None if the user has no score."""
        board = self.board(level_id, season)
        with self.database.read() as cursor:
            found = self._rank.execute(cursor, level_id=board.board, user_id=user_id).fetchone()
        if found is None:
            return None
        rank, stored, players = found
        return PlayerRank(rank, board.rules.shown(stored), players)

    def window_from(self, level_id: int, first_rank: int, season: int | None = None) -> Window:
        """The 15 places from first_rank (1-based) on; no entries past the end."""
        board = self.board(level_id, season)
        with self.database.read() as cursor:
            rows = self._window_from.execute(
                cursor, level_id=board.board, rank=first_rank
            ).fetchall()
            if not rows:  # past the end: the level's players, on their own
                players = self._players.execute(cursor, level_id=board.board).fetchone()[0]
                return Window((), players)
        shown = board.rules.shown
        entries = tuple(
            RankedEntry(rank, user_id, shown(stored))
            for rank, (user_id, stored, _) in enumerate(rows, start=first_rank)
        )
        return Window(entries, rows[0][2])

    def window_around(
        self, level_id: int, user_id: int, season: int | None = None
    ) -> Window | None:
        """15 places with the user's in the middle (shifted at either end), or None."""
        board = self.board(level_id, season)
        with self.database.read() as cursor:
            rows = self._window_around.execute(
                cursor, level_id=board.board, user_id=user_id
            ).fetchall()
        if not rows:
            return None
        first, players = rows[0][2], rows[0][3]
        shown = board.rules.shown
        entries = tuple(
            RankedEntry(rank, user_id, shown(stored))
            for rank, (user_id, stored, _, _) in enumerate(rows, start=first)
        )
        return Window(entries, players)

    def entries_of_users(
        self, level_id: int, user_ids: Sequence[int], season: int | None = None
    ) -> Window:
        """Those of the users (at most 100) who have a score on the level, in its order, each
        with their place in the whole level."""
        if len(user_ids) > FRIENDS_LIMIT:
            raise ValueError(f"at most {FRIENDS_LIMIT} users")
        board = self.board(level_id, season)
        named = dict.fromkeys(user_ids)  # duplicates count once
        users = {f"user_{n}": user for n, user in enumerate(named)}
        users.update({f"user_{n}": -1 for n in range(len(named), FRIENDS_LIMIT)})
        with self.database.read() as cursor:
            rows = self._entries_of_users.execute(cursor, level_id=board.board, **users).fetchall()
            if not rows:
                players = self._players.execute(cursor, level_id=board.board).fetchone()[0]
                return Window((), players)
        shown = board.rules.shown
        entries = tuple(RankedEntry(rank, user, shown(stored)) for user, stored, rank, _ in rows)
        return Window(entries, rows[0][3])

    def _read_top_scores(
        self, board: Board, level_id: int, version: int = 0
    ) -> tuple[TopScores, int | None]:
        """The board's top scores, and the level's stored rules version as read with them (0
        without rules; None where no row came to say)."""
        with self.database.read() as cursor:
            rows = self._top_scores.execute(
                cursor, level_id=board.board, rules_level=level_id
            ).fetchall()
        if not rows:
            return TopScores((), 0, version), None
        rules_version = rows[0][3] or 0
        last = self._last_top_scores
        top = last.get(board.board, board.rules, rows, version)
        if top is None:
            shown = board.rules.shown
            entries = [ScoreEntry(user_id, shown(stored)) for user_id, stored, _, _ in rows]
            top = TopScores(entries, rows[0][2], version)
            last.keep(board.board, board.rules, rows, top)
        return top, rules_version

    # Session keys and settings

    def store_session_key(
        self, user_id: int, key_hash: str, expires_at_ms: int, *, now_ms: int | None = None
    ) -> None:
        """Make key_hash the user's only valid stored key, ending any earlier one.

        Now and then (given now_ms), keys that expired before now are deleted, a few at a time.
        """
        with self.database.unit_of_work(one_statement=True) as uow:
            uow.write(
                self._store_session_key,
                user_id=user_id,
                key_hash=key_hash,
                expires_at=expires_at_ms,
            )
        if now_ms is not None and next(self._stored_keys) % PURGE_EVERY == 0:
            self._purge(self._purge_session_keys, now_ms)

    def find_session_key(self, key_hash: str) -> StoredSessionKey | None:
        """The stored key with this hash, if it is still any user's newest."""
        with self.database.read() as cursor:
            row = self._find_session_key.execute(cursor, key_hash=key_hash).fetchone()
        return None if row is None else StoredSessionKey(*row)

    def setting(self, name: str, *, default: Callable[[], str]) -> str:
        """The stored value of a service setting, storing default() first if there is none."""
        with self.database.unit_of_work() as uow:
            # Insert-if-absent then read: two processes starting together agree on one value.
            uow.execute(self._add_setting, name=name, value=default())
            value: str = uow.execute(self._get_setting, name=name).fetchone()[0]
            return value

    def begin_seasons(self) -> None:
        """Record when seasons began, if no start has yet: season 1 of every level without
        rules began then."""
        self.setting(SEASONS_SINCE_SETTING, default=lambda: str(self.database.now_us()))

    def finish_writes(self) -> None:
        """Make every write answered so far (a memory database defers them a few ms)."""
        self.database.finish_writes()

    def check(self) -> None:
        """Read from the scores table: raises DatabaseUnavailable if the database cannot answer."""
        with self.database.read() as cursor:
            self._health_probe.execute(cursor).fetchall()

    def _purge(self, statement: CompiledStatement, expired_before: int) -> None:
        with self.database.unit_of_work(one_statement=True) as uow:
            uow.write(statement, expired_before=expired_before)


def _purge(table: Table, expires: ColumnElement[int], parameter: str) -> Delete:
    """Delete at most PURGE_ROWS rows of table whose `expires` column is before :parameter,
    oldest first, found through the index on that column: a short statement at any size."""
    key = tuple_(*table.primary_key.columns)
    expired = (
        select(*table.primary_key.columns)
        .where(expires < bindparam(parameter, type_=BigInteger))
        .order_by(expires)
        .limit(PURGE_ROWS)
    )
    return delete(table).where(key.in_(expired))
