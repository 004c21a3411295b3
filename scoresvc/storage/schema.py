"""The tables, as SQLAlchemy Core sees them; migrations/ creates them in the database."""

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, SmallInteger, String, Table

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# level_id, here and in rank_counts and hidden_scores, is the board: the level's id for its
# season 1, 2**31 more for each later season (see scoresvc.leaderboards and migration 0005).
# A bigint; SQLite's INTEGER holds 64 bits already.
Board = BigInteger().with_variant(Integer(), "sqlite")

best_scores = Table(
    "best_scores",
    metadata,
    Column("level_id", Board, primary_key=True, autoincrement=False),
    Column("user_id", Integer, primary_key=True, autoincrement=False),
    Column("score", Integer, nullable=False),
    # Microseconds since the epoch, from next_reached_at(): ranks equal scores.
    Column("reached_at", BigInteger, nullable=False),
    # One row per (level, user) and the ranking index below are all the table needs: without a
    # rowid, SQLite stores the rows in the primary key's own b-tree.
    sqlite_with_rowid=False,
)

# A level's ordering is this index's: the top 15 are its first 15 entries, with no sort,
# whatever the level's size. The user id settles writes made in the same microsecond.
Index(
    "ix_best_scores_ranking",
    best_scores.c.level_id,
    best_scores.c.score.desc(),
    best_scores.c.reached_at,
    best_scores.c.user_id,
)

# The bits a rank_counts node at each depth (1 to 4) drops from the score. Migration 0003
# explains the tree and creates the triggers that keep it; it has its own copy of these.
RANK_COUNT_SHIFTS = (24, 16, 8, 0)

# How many of a level's players have a best score in each node's range of scores.
rank_counts = Table(
    "rank_counts",
    metadata,
    Column("level_id", Board, primary_key=True, autoincrement=False),
    Column("depth", SmallInteger, primary_key=True, autoincrement=False),
    Column("prefix", Integer, primary_key=True, autoincrement=False),  # score >> the shift
    Column("players", Integer, nullable=False),
    sqlite_with_rowid=False,
)

# Players tied on one score are ranked by when they reached it. Once CROWDED_SCORE of a level's
# players hold one score, tie_counts counts them by reached_at, as rank_counts counts scores: a
# tree over the 64-bit time, at depth 1 a node per reached_at >> 48, down to one per reached_at
# at depth 7, with the score's root (depth 0, prefix 0) holding all its players. A score with
# no root holds fewer than CROWDED_SCORE players, which the ranking index counts quickly enough.
# Migration 0006 explains it and creates the triggers that keep it; it has its own copy of these.
TIE_COUNT_SHIFTS = (48, 40, 32, 24, 16, 8, 0)
CROWDED_SCORE = 64

tie_counts = Table(
    "tie_counts",
    metadata,
    Column("level_id", Board, primary_key=True, autoincrement=False),
    Column("score", Integer, primary_key=True, autoincrement=False),
    Column("depth", SmallInteger, primary_key=True, autoincrement=False),
    Column("prefix", BigInteger, primary_key=True, autoincrement=False),  # reached_at >> shift
    Column("players", Integer, nullable=False),
    sqlite_with_rowid=False,
)

session_keys = Table(
    "session_keys",
    metadata,
    Column("user_id", Integer, primary_key=True, autoincrement=False),
    # SHA-256 of the key, hex: the key itself is never stored.
    Column("key_hash", String(64), nullable=False, unique=True),
    # Milliseconds since the epoch.
    Column("expires_at", BigInteger, nullable=False),
)

service_settings = Table(
    "service_settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)

# Moderation (migration 0004). A banned user's best scores are moved here from best_scores, in
# the transaction that bans them, and back on unban: out of every list, rank and count (the
# triggers on best_scores keep rank_counts) without being deleted.
hidden_scores = Table(
    "hidden_scores",
    metadata,
    # User first: a ban and an unban move all of one user's rows.
    Column("user_id", Integer, primary_key=True, autoincrement=False),
    Column("level_id", Board, primary_key=True, autoincrement=False),
    Column("score", Integer, nullable=False),
    Column("reached_at", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

# Users whose score posts and logins are refused; the score upsert will not write for them.
banned_users = Table(
    "banned_users",
    metadata,
    Column("user_id", Integer, primary_key=True, autoincrement=False),
    Column("banned_at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
)

# Every change made through the admin API, oldest first.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("changed_at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Column("action", String(16), nullable=False),  # ban, unban, delete_score, rules, season
    Column("level_id", Integer, nullable=True),  # none for a ban or unban: every level
    Column("user_id", Integer, nullable=True),  # none for a change of rules or seasons
    Column("detail", String(256), nullable=False),
)

# Leaderboards (migration 0005). A level's rules, for the levels given any.
level_rules = Table(
    "level_rules",
    metadata,
    Column("level_id", Integer, primary_key=True, autoincrement=False),
    Column("sort_order", String(4), nullable=False),  # desc, asc
    Column("keep", String(6), nullable=False),  # best, latest, sum
    Column("reset", String(7), nullable=False),  # never, manual, daily, weekly, monthly
    Column("timezone", String(64), nullable=False),  # an IANA name
    Column("min_score", Integer, nullable=False),
    Column("max_score", Integer, nullable=False),
    Column("writes", String(7), nullable=False),  # players, server
    # Changed by every change of the level's rules or seasons, never back (migration 0008).
    Column("version", BigInteger, nullable=False, server_default="1"),
)

# Since when each run of a level's seasons counts (scoresvc.leaderboards.SeasonSpan).
season_spans = Table(
    "season_spans",
    metadata,
    Column("level_id", Integer, primary_key=True, autoincrement=False),
    Column("first_season", Integer, primary_key=True, autoincrement=False),
    Column("started_at", BigInteger, nullable=False),  # µs since the epoch, UTC
    Column("counted_from", BigInteger, nullable=False),  # µs since the epoch, UTC
    Column("reset", String(7), nullable=False),
    Column("timezone", String(64), nullable=False),
    # The order its seasons' boards are stored in: a level's order changes only between seasons.
    Column("sort_order", String(4), nullable=False),
    sqlite_with_rowid=False,
)

# What a score post with an Idempotency-Key answered, kept 24 hours.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("user_id", Integer, primary_key=True, autoincrement=False),
    Column("level_id", Integer, primary_key=True, autoincrement=False),
    Column("idempotency_key", String(64), primary_key=True),
    Column("status", SmallInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),  # µs since the epoch, UTC
    sqlite_with_rowid=False,
)
Index("ix_idempotency_keys_created_at", idempotency_keys.c.created_at)
Index("ix_session_keys_expires_at", session_keys.c.expires_at)

# How far a SQLite database has applied each region of its write journal (`scores.db-writes`,
# see storage/writejournal.py), written in the same transaction as the writes applied, so that
# none is applied twice. journal_id names the journal file the position belongs to.
write_journal = Table(
    "write_journal",
    metadata,
    Column("region", Integer, primary_key=True, autoincrement=False),
    Column("journal_id", BigInteger, nullable=False),
    Column("applied", BigInteger, nullable=False),
)
