"""The repository: the one module that speaks SQL."""

import time
from collections.abc import Callable
from typing import NamedTuple

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite

from scoresvc.storage.database import Database
from scoresvc.storage.schema import best_scores, service_settings, session_keys
from scoresvc.storage.scorejournal import ScoreJournal, ScoreRecord
from scoresvc.storage.topscores import TopScores, TopScoresCache

TOP_SCORES_LIMIT = 15
# The journal starts again from the top once fewer slots than this are free: a margin for the
# writes that come in while it is being rewound.
_JOURNAL_REWIND_AT = 1024
# Levels whose top scores are kept in memory (the most recently read): about 2 KB each at most.
TOP_SCORES_CACHE_LEVELS = 10_000

# Both dialects spell the upsert the same way (INSERT ... ON CONFLICT DO UPDATE ... WHERE).
_INSERT_BY_DIALECT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


class ScoreEntry(NamedTuple):
    """One line of a high score list."""

    user_id: int
    score: int


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
        clock: Callable[[], float] = time.time,
        top_scores_cache_levels: int = TOP_SCORES_CACHE_LEVELS,
        journal: ScoreJournal | None = None,
    ) -> None:
        self.database = database
        self._clock = clock
        # Score writes are deferred where a crash cannot lose one that was answered: in a
        # database that ends with the process, or kept in the journal until the file has it.
        self._journal = journal
        self._defer_scores = database.ends_with_process or journal is not None
        self._top_scores_cache = TopScoresCache(
            list_length=TOP_SCORES_LIMIT, max_levels=top_scores_cache_levels, entry=ScoreEntry
        )
        insert = _INSERT_BY_DIALECT[database.engine.dialect.name]
        # Each statement is compiled for the database's dialect and run on its driver.
        compile_ = database.compile

        upsert = insert(best_scores).values(
            level_id=bindparam("level_id"),
            user_id=bindparam("user_id"),
            score=bindparam("score"),
            reached_at=bindparam("reached_at"),
        )
        self._record_score = compile_(
            upsert.on_conflict_do_update(
                index_elements=[best_scores.c.level_id, best_scores.c.user_id],
                set_={"score": upsert.excluded.score, "reached_at": upsert.excluded.reached_at},
                # Only a higher score replaces the best: an equal one keeps its earlier time.
                where=upsert.excluded.score > best_scores.c.score,
            )
        )
        self._top_scores = compile_(
            select(best_scores.c.user_id, best_scores.c.score)
            .where(best_scores.c.level_id == bindparam("level_id"))
            .order_by(best_scores.c.score.desc(), best_scores.c.reached_at)
            .limit(TOP_SCORES_LIMIT)
        )

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

        if journal is not None:
            self._replay(journal)
        latest = compile_(select(func.max(best_scores.c.reached_at)))
        with database.cursor() as cursor:
            self._last_timestamp_us = latest.execute(cursor).fetchone()[0] or 0

    def _replay(self, journal: ScoreJournal) -> None:
        # Oldest first, so that of two equal scores the earlier keeps its place; a record the
        # file already has changes nothing (a best is only replaced by a higher score).
        # Run as deferred writes are, in one transaction; on failure the journal is kept.
        database = self.database
        with database.deferral_lock:
            for record in journal.records():
                database.defer(self._record_score, record.level_id, **record._asdict())
        database.run_deferred()
        journal.clear()

    def record_score(self, level_id: int, user_id: int, score: int) -> None:
        """Keep score as the user's best on the level if it beats the best.

        Deferred (see __init__), the write reaches the database a few ms later, still before any
        read made after this returns; otherwise it is committed before this returns.
        """
        if not self._defer_scores:
            self._write_score_now(level_id, user_id, score)
            return
        database, journal = self.database, self._journal
        while True:
            if journal is not None and journal.free_slots < _JOURNAL_REWIND_AT:
                self._rewind_journal()
            with database.deferral_lock:  # timestamps and list updates in the order of writes
                if journal is not None and not journal.free_slots:
                    continue  # filled up by others meanwhile: rewind, then try again
                reached_at = self._next_timestamp_us()
                if journal is not None:
                    journal.append(ScoreRecord(level_id, user_id, score, reached_at))
                database.defer(
                    self._record_score,
                    level_id,
                    level_id=level_id,
                    user_id=user_id,
                    score=score,
                    reached_at=reached_at,
                )
                self._top_scores_cache.score_posted(level_id, user_id, score)
                return

    def _write_score_now(self, level_id: int, user_id: int, score: int) -> None:
        with self.database.cursor() as cursor:
            self._record_score.execute(
                cursor,
                level_id=level_id,
                user_id=user_id,
                score=score,
                reached_at=self._next_timestamp_us(),
            )
            # Under the lock, before this write returns: no read after it gets the old list.
            self._top_scores_cache.score_posted(level_id, user_id, score)

    def _rewind_journal(self) -> None:
        # Entering a unit of work runs the deferred writes: then every record so far is in the
        # file, and the journal may start again from the top, unless more came meanwhile.
        with self.database.cursor(), self.database.deferral_lock:
            if not self.database.has_pending():
                self._journal.rewind()

    def top_scores(self, level_id: int) -> list[ScoreEntry]:
        """The level's best scores, highest first, earliest first among equals, at most 15."""
        return list(self.top_scores_snapshot(level_id).entries)

    def top_scores_snapshot(self, level_id: int) -> TopScores:
        """The level's top scores as the last read found them, unless a write changed them since.

        Answered from memory, kept in step with this process's writes, once a read has filled
        it; that read runs under the database lock, after the deferred writes.
        """
        top = self._top_scores_cache.get(level_id)
        if top is None:
            database = self.database
            with database.cursor() as cursor:  # deferred writes run first
                rows = self._top_scores.execute(cursor, level_id=level_id).fetchall()
                top = TopScores(ScoreEntry(user_id, score) for user_id, score in rows)
                # In this read's unit of work, so no write made before it is missing from the
                # list; a deferred write accepted since is still pending: then the list is
                # served but not kept.
                with database.deferral_lock:
                    if not database.is_pending(level_id):
                        self._top_scores_cache.fill(level_id, top)
        return top

    def store_session_key(self, user_id: int, key_hash: str, expires_at_ms: int) -> None:
        """Make key_hash the user's only valid stored key, ending any earlier one."""
        with self.database.cursor() as cursor:
            self._store_session_key.execute(
                cursor, user_id=user_id, key_hash=key_hash, expires_at=expires_at_ms
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

    def check(self) -> None:
        """Read from the scores table: raises DatabaseUnavailable if the database cannot answer."""
        with self.database.cursor() as cursor:
            self._health_probe.execute(cursor).fetchall()

    def _next_timestamp_us(self) -> int:
        # Strictly increasing, so that of two equal scores the earlier one always ranks first,
        # even when the clock stands still or steps back. Called under the lock that orders the
        # writes (the database's, or its deferral lock): timestamps follow the order of writes.
        now_us = int(self._clock() * 1_000_000)
        self._last_timestamp_us = max(now_us, self._last_timestamp_us + 1)
        return self._last_timestamp_us
