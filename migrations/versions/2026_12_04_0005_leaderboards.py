"""Leaderboards: rules per level, seasons, idempotent posts; stored keys found by expiry.

Each season of a level is a board of its own in best_scores, rank_counts and hidden_scores:
the column level_id holds the board's id, which is the level's id for season 1 and grows by
2**31 per later season (see scoresvc.leaderboards). Every score already stored is therefore
season 1 of its level, where it is, and no row moves. On PostgreSQL the column becomes a bigint
(SQLite's integers are 64-bit already), and the function the counts' triggers call takes one.

- level_rules: a level's rules, for the levels that have been given any (the others keep the
  defaults: highest first, best kept, never reset, written by players, any score).
- season_spans: since when each run of a level's seasons counts (see SeasonSpan); a level with
  none is in season 1, which began when this migration ran (the service setting seasons_since).
- idempotency_keys: what a score post carrying an Idempotency-Key answered, for 24 hours.
- ix_session_keys_expires_at: expired stored keys are found and deleted a few at a time.
- audit_log.user_id may be NULL: a change of a level's rules or seasons concerns no user.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BOARD_TABLES = ("best_scores", "hidden_scores", "rank_counts")


def upgrade() -> None:
    op.create_table(
        "level_rules",
        sa.Column("level_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sort_order", sa.String(length=4), nullable=False),
        sa.Column("keep", sa.String(length=6), nullable=False),
        sa.Column("reset", sa.String(length=7), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("min_score", sa.Integer(), nullable=False),
        sa.Column("max_score", sa.Integer(), nullable=False),
        sa.Column("writes", sa.String(length=7), nullable=False),
        sa.PrimaryKeyConstraint("level_id", name="pk_level_rules"),
    )
    op.create_table(
        "season_spans",
        sa.Column("level_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("first_season", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("counted_from", sa.BigInteger(), nullable=False),
        sa.Column("reset", sa.String(length=7), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("sort_order", sa.String(length=4), nullable=False),
        sa.PrimaryKeyConstraint("level_id", "first_season", name="pk_season_spans"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("level_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "user_id", "level_id", "idempotency_key", name="pk_idempotency_keys"
        ),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])
    op.create_index("ix_session_keys_expires_at", "session_keys", ["expires_at"])
    # A change of a level's rules or seasons is audited with no user.
    with op.batch_alter_table("audit_log") as audit_log:
        audit_log.alter_column("user_id", existing_type=sa.Integer(), nullable=True)
    op.execute(
        "INSERT INTO service_settings (name, value) "
        f"VALUES ('seasons_since', '{time.time_ns() // 1000}')"
    )
    if op.get_bind().dialect.name == "postgresql":
        _boards_as("bigint")


def downgrade() -> None:
    # The seasons after the first are forgotten with their scores: before this, a level had
    # one board.
    for table in _BOARD_TABLES:
        op.execute(f"DELETE FROM {table} WHERE level_id >= 2147483648")
    if op.get_bind().dialect.name == "postgresql":
        _boards_as("int")
    op.execute("DELETE FROM service_settings WHERE name = 'seasons_since'")
    op.execute("DELETE FROM audit_log WHERE user_id IS NULL")
    with op.batch_alter_table("audit_log") as audit_log:
        audit_log.alter_column("user_id", existing_type=sa.Integer(), nullable=False)
    op.drop_index("ix_session_keys_expires_at", table_name="session_keys")
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_table("season_spans")
    op.drop_table("level_rules")


def _boards_as(kind: str) -> None:
    """The boards' columns, and the function the counts' triggers call, made kind (a type)."""
    was = "int" if kind == "bigint" else "bigint"
    # The update trigger names level_id in its WHEN: it goes while the column's type changes.
    op.execute("DROP TRIGGER rank_counts_after_update ON best_scores")
    for table in _BOARD_TABLES:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN level_id TYPE {kind}")
    op.execute(f"DROP FUNCTION rank_counts_change({was}, int, int, int)")
    op.execute(
        f"""
        CREATE FUNCTION rank_counts_change(
            board {kind}, node_depth int, node_prefix int, change int
        ) RETURNS void LANGUAGE plpgsql AS $$
        DECLARE
            left_over int;
        BEGIN
            INSERT INTO rank_counts AS node (level_id, depth, prefix, players)
            VALUES (board, node_depth, node_prefix, change)
            ON CONFLICT (level_id, depth, prefix)
            DO UPDATE SET players = node.players + change
            RETURNING players INTO left_over;
            IF left_over = 0 THEN
                DELETE FROM rank_counts
                WHERE level_id = board AND depth = node_depth AND prefix = node_prefix;
            END IF;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER rank_counts_after_update AFTER UPDATE OF level_id, score ON best_scores "
        "FOR EACH ROW WHEN (OLD.level_id <> NEW.level_id OR OLD.score <> NEW.score) "
        "EXECUTE FUNCTION rank_counts_after_update()"
    )
