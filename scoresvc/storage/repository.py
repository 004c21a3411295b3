"""The repository: best scores, stored session keys and service settings, over one Database."""

from collections.abc import Callable, Iterable
from typing import NamedTuple

from sqlalchemy import BigInteger, bindparam, select

from scoresvc.storage import ranking
from scoresvc.storage.database import Database
from scoresvc.storage.leftoverjournal import ScoreRecord
from scoresvc.storage.schema import best_scores, service_settings, session_keys
from scoresvc.storage.statements import best_score_upsert, upsert_insert
from scoresvc.storage.topscores import TopScores

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

    Every statement is built and compiled once, here or in statements.py: building a
    SQLAlchemy statement, or running it through Connection.execute(), costs several times what
    the driver spends on it. Every write is a unit of work, which publishes what it changed.
    """

    def __init__(
        self, database: Database, *, top_scores_cache_levels: int = TOP_SCORES_CACHE_LEVELS
    ) -> None:
        self.database = database
        self._top_scores_cache = database.top_scores_cache(top_scores_cache_levels)
        dialect = database.engine.dialect
        compile_ = database.compile
        self._record_score = database.score_write(best_score_upsert(dialect))
        self._record_score_reached = compile_(
            best_score_upsert(dialect, reached_at=bindparam("reached_at", type_=BigInteger))
        )
        self._top_scores = compile_(ranking.top_of_level())
        self._rank = compile_(ranking.rank_of_user())
        self._window_from = compile_(ranking.window_from_rank())
        self._window_around = compile_(ranking.window_around_user())
        self._players = compile_(ranking.players_on_level())

        insert = upsert_insert(dialect)
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
        (a memory database of one process): whether it was a new best is not known yet.
        """
        with self.database.unit_of_work(one_statement=True) as uow:
            written = self._record_score.run(uow, level_id=level_id, user_id=user_id, score=score)
            uow.level_changed(level_id)
        return None if written is None else written > 0

    def is_banned(self, user_id: int) -> bool:
        """Whether the user is banned: their posts and logins are refused."""
        return user_id in self.database.banned_users

    def record_scores_reached(self, records: Iterable[ScoreRecord]) -> None:
        """Keep each record's score as a best, reached when the record says, in one transaction.

        Oldest first, so that of two equal scores the earlier keeps its place; a record the
        database already has changes nothing (a best is only replaced by a higher score).
        """
        records = list(records)
        with self.database.unit_of_work() as uow:
            uow.executemany(self._record_score_reached, [r._asdict() for r in records])
            for level_id in {record.level_id for record in records}:
                uow.level_changed(level_id)

    def top_scores(self, level_id: int) -> list[ScoreEntry]:
        """The level's best scores, highest first, earliest first among equals, at most 15."""
        return list(self.top_scores_snapshot(level_id).entries)

    def top_scores_snapshot(self, level_id: int) -> TopScores:
        """The level's top scores: kept from the last read while no write has changed the level."""
        cache = self._top_scores_cache
        top = cache.get(level_id)
        if top is None:
            version = cache.version(level_id)  # before the read: a write after it is seen
            top = self._read_top_scores(level_id, version)
            cache.fill(level_id, top)
        return top

    def rank(self, level_id: int, user_id: int) -> PlayerRank | None:
        """The user's place in the level's whole ordering, or None if the user has no score."""
        with self.database.read() as cursor:
            found = self._rank.execute(cursor, level_id=level_id, user_id=user_id).fetchone()
        return None if found is None else PlayerRank(*found)

    def window_from(self, level_id: int, first_rank: int) -> Window:
        """The 15 places from first_rank (1-based) on; no entries past the end."""
        with self.database.read() as cursor:
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
        with self.database.read() as cursor:
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
        with self.database.read() as cursor:
            rows = self._top_scores.execute(cursor, level_id=level_id).fetchall()
        entries = [ScoreEntry(user_id, score) for user_id, score, _ in rows]
        return TopScores(entries, rows[0][2] if rows else 0, version)

    def store_session_key(self, user_id: int, key_hash: str, expires_at_ms: int) -> None:
        """Make key_hash the user's only valid stored key, ending any earlier one."""
        with self.database.unit_of_work(one_statement=True) as uow:
            uow.write(
                self._store_session_key,
                user_id=user_id,
                key_hash=key_hash,
                expires_at=expires_at_ms,
            )

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
            return uow.execute(self._get_setting, name=name).fetchone()[0]

    def finish_writes(self) -> None:
        """Make every write answered so far (a memory database defers them a few ms)."""
        self.database.finish_writes()

    def check(self) -> None:
        """Read from the scores table: raises DatabaseUnavailable if the database cannot answer."""
        with self.database.read() as cursor:
            self._health_probe.execute(cursor).fetchall()
