"""The repository: best scores, stored session keys and service settings, over one Database."""

from collections.abc import Callable, Iterable
from typing import NamedTuple

from sqlalchemy import Integer, bindparam, exists, func, literal, select

from scoresvc.errors import UserBanned
from scoresvc.storage import ranking
from scoresvc.storage.bannedusers import BannedUsersCache
from scoresvc.storage.database import Database
from scoresvc.storage.leftoverjournal import ScoreRecord
from scoresvc.storage.schema import banned_users, best_scores, service_settings, session_keys
from scoresvc.storage.statements import upsert_insert
from scoresvc.storage.topscores import TopScores, TopScoresCache

TOP_SCORES_LIMIT = ranking.WINDOW_SIZE
# Levels whose top scores are kept in memory (the most recently read): about 2 KB each at most.
TOP_SCORES_CACHE_LEVELS = 10_000


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
    """Best scores per level, stored session keys and service settings, over one Database.

    Every statement is built and compiled once, here: building a SQLAlchemy statement, or
    running it through Connection.execute(), costs several times what the driver spends on it.
    """

    def __init__(
        self,
        database: Database,
        *,
        top_scores_cache_levels: int = TOP_SCORES_CACHE_LEVELS,
        on_new_bests: Callable[[int], None] | None = None,
    ) -> None:
        self.database = database
        # Told how many scores became new bests, once they are written (the metrics count them).
        self._on_new_bests = on_new_bests
        # Lists are kept only where every writer to the database shares the level versions
        # that tell a kept list from a stale one (not across PostgreSQL replicas).
        versions = database.level_versions
        self._top_scores_cache = (
            None
            if versions is None
            else TopScoresCache(versions, max_levels=top_scores_cache_levels)
        )
        insert = upsert_insert(database.engine.dialect)
        # Each statement is compiled for the database's dialect and run on its driver.
        compile_ = database.compile
        is_banned = exists().where(banned_users.c.user_id == bindparam("user_id", type_=Integer))

        def best_score_upsert(reached_at):
            # Nothing is written for a banned user, in the write itself: a post that raced a
            # ban (checked before it, written after it) cannot put a hidden player back.
            row = select(
                bindparam("level_id", type_=Integer),
                bindparam("user_id", type_=Integer),
                bindparam("score", type_=Integer),
                reached_at,
            ).where(~is_banned)
            upsert = insert(best_scores).from_select(
                ["level_id", "user_id", "score", "reached_at"], row
            )
            return upsert.on_conflict_do_update(
                index_elements=[best_scores.c.level_id, best_scores.c.user_id],
                set_={"score": upsert.excluded.score, "reached_at": upsert.excluded.reached_at},
                # Only a higher score replaces the best: an equal one keeps its earlier time.
                where=upsert.excluded.score > best_scores.c.score,
            )

        # When a score was reached is the database's to say (next_reached_at(): see the
        # migrations), so that every process and replica orders ties the same way.
        self._record_score = compile_(best_score_upsert(func.next_reached_at()))
        self._record_score_reached = compile_(best_score_upsert(bindparam("reached_at")))
        self._is_banned = compile_(select(literal(1)).where(is_banned))
        self._banned_user_ids = compile_(select(banned_users.c.user_id))
        # Who is banned: kept in memory where a ban's new version reaches every process
        # (SQLite), else asked of the database (PostgreSQL, whose replicas share no memory).
        self._banned = (
            None if versions is None else BannedUsersCache(versions, self._read_banned_users)
        )
        if self._banned is None:
            # One round trip: the write, whether the user is banned (then it wrote nothing), and
            # whether it wrote a new best.
            written = (
                best_score_upsert(func.next_reached_at())
                .returning(best_scores.c.user_id)
                .cte("written")
            )
            self._record_score_or_banned = compile_(
                select(is_banned, select(func.count()).select_from(written).scalar_subquery())
            )
        self._top_scores = compile_(ranking.top_of_level())
        self._rank = compile_(ranking.rank_of_user())
        self._window_from = compile_(ranking.window_from_rank())
        self._window_around = compile_(ranking.window_around_user())
        self._players = compile_(ranking.players_on_level())

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

        self._add_setting = compile_(
            insert(service_settings)
            .values(name=bindparam("name"), value=bindparam("value"))
            .on_conflict_do_nothing(index_elements=[service_settings.c.name])
        )
        self._get_setting = compile_(
            select(service_settings.c.value).where(service_settings.c.name == bindparam("name"))
        )
        self._health_probe = compile_(select(best_scores.c.level_id).limit(1))

    def record_score(self, level_id: int, user_id: int, score: int) -> bool | None:
        """Keep score as the user's best on the level if it beats the best: whether it did.

        Once this returns, every read made afterwards, by any process on the database, sees it.
        UserBanned, with nothing written, for a banned user. None where the write is deferred
        (a memory database of one process): whether it was a new best is not known yet, and
        on_new_bests hears of it when it is written, a few milliseconds later.
        """
        if self._banned is None:
            with self.database.cursor() as cursor:
                banned, written = self._record_score_or_banned.execute(
                    cursor, level_id=level_id, user_id=user_id, score=score
                ).fetchone()
            if banned:
                raise UserBanned(user_id)
            if written and self._on_new_bests is not None:
                self._on_new_bests(written)
            return written > 0
        if user_id in self._banned:
            raise UserBanned(user_id)
        rows = self.database.write(
            self._record_score,
            on_rows_changed=self._on_new_bests,
            level_id=level_id,
            user_id=user_id,
            score=score,
        )
        # After the write: a reader of the new version sees it.
        self.database.level_versions.changed(level_id)
        return None if rows is None else rows > 0

    def is_banned(self, user_id: int) -> bool:
        """Whether the user is banned: their posts and logins are refused."""
        if self._banned is not None:
            return user_id in self._banned
        with self.database.cursor() as cursor:
            return self._is_banned.execute(cursor, user_id=user_id).fetchone() is not None

    def _read_banned_users(self) -> list[int]:
        with self.database.cursor() as cursor:
            return [user_id for (user_id,) in self._banned_user_ids.execute(cursor).fetchall()]

    def record_scores_reached(self, records: Iterable[ScoreRecord]) -> None:
        """Keep each record's score as a best, reached when the record says, in one transaction.

        Oldest first, so that of two equal scores the earlier keeps its place; a record the
        database already has changes nothing (a best is only replaced by a higher score).
        """
        with self.database.transaction() as connection:
            cursor = connection.connection.cursor()  # the driver's, inside the transaction
            self._record_score_reached.executemany(cursor, [r._asdict() for r in records])

    def top_scores(self, level_id: int) -> list[ScoreEntry]:
        """The level's best scores, highest first, earliest first among equals, at most 15."""
        return list(self.top_scores_snapshot(level_id).entries)

    def top_scores_snapshot(self, level_id: int) -> TopScores:
        """The level's top scores: kept from the last read while no write has changed the level."""
        cache = self._top_scores_cache
        if cache is None:
            return self._read_top_scores(level_id)
        top = cache.get(level_id)
        if top is None:
            version = cache.version(level_id)  # before the read: a write after it is seen
            top = self._read_top_scores(level_id, version)
            cache.fill(level_id, top)
        return top

    def rank(self, level_id: int, user_id: int) -> PlayerRank | None:
        """The user's place in the level's whole ordering, or None if the user has no score."""
        with self.database.cursor() as cursor:
            found = self._rank.execute(cursor, level_id=level_id, user_id=user_id).fetchone()
        return None if found is None else PlayerRank(*found)

    def window_from(self, level_id: int, first_rank: int) -> Window:
        """The 15 places from first_rank (1-based) on; no entries past the end."""
        with self.database.cursor() as cursor:
            rows = self._window_from.execute(cursor, level_id=level_id, rank=first_rank).fetchall()
            if not rows:  # past the end: the level's players, on their own
                players = self._players.execute(cursor, level_id=level_id).fetchone()[0]
                return Window((), players)
        entries = tuple(
            RankedEntry(rank, user_id, score)
            for rank, (user_id, score, _) in enumerate(rows, start=first_rank)
        )
        return Window(entries, rows[0][2])

    def window_around(self, level_id: int, user_id: int) -> Window | None:
        """15 places with the user's in the middle (shifted at either end), or None."""
        with self.database.cursor() as cursor:
            rows = self._window_around.execute(
                cursor, level_id=level_id, user_id=user_id
            ).fetchall()
        if not rows:
            return None
        first, players = rows[0][2], rows[0][3]
        entries = tuple(
            RankedEntry(rank, user_id, score)
            for rank, (user_id, score, _, _) in enumerate(rows, start=first)
        )
        return Window(entries, players)

    def _read_top_scores(self, level_id: int, version: int = 0) -> TopScores:
        with self.database.cursor() as cursor:
            rows = self._top_scores.execute(cursor, level_id=level_id).fetchall()
        entries = [ScoreEntry(user_id, score) for user_id, score, _ in rows]
        return TopScores(entries, rows[0][2] if rows else 0, version)

    def store_session_key(self, user_id: int, key_hash: str, expires_at_ms: int) -> None:
        """Make key_hash the user's only valid stored key, ending any earlier one."""
        self.database.write(
            self._store_session_key, user_id=user_id, key_hash=key_hash, expires_at=expires_at_ms
        )

    def find_session_key(self, key_hash: str) -> StoredSessionKey | None:
        """The stored key with this hash, if it is still any user's newest."""
        with self.database.cursor() as cursor:
            row = self._find_session_key.execute(cursor, key_hash=key_hash).fetchone()
        return None if row is None else StoredSessionKey(*row)

    def setting(self, name: str, *, default: Callable[[], str]) -> str:
        """The stored value of a service setting, storing default() first if there is none."""
        with self.database.cursor() as cursor:
            # Insert-if-absent then read: two processes starting together agree on one value.
            self._add_setting.execute(cursor, name=name, value=default())
            return self._get_setting.execute(cursor, name=name).fetchone()[0]

    def finish_writes(self) -> None:
        """Make every write answered so far (a memory database defers them a few ms)."""
        self.database.finish_writes()

    def check(self) -> None:
        """Read from the scores table: raises DatabaseUnavailable if the database cannot answer."""
        with self.database.cursor() as cursor:
            self._health_probe.execute(cursor).fetchall()
