"""Create the best scores, stored session keys and service settings tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "best_scores",
        sa.Column("level_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("reached_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("level_id", "user_id", name="pk_best_scores"),
        sqlite_with_rowid=False,
    )
    op.create_index(
        "ix_best_scores_ranking",
        "best_scores",
        ["level_id", sa.text("score DESC"), "reached_at"],
    )
    op.create_table(
        "session_keys",
        sa.Column("user_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_session_keys"),
        sa.UniqueConstraint("key_hash", name="uq_session_keys_key_hash"),
    )
    op.create_table(
        "service_settings",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_service_settings"),
    )


def downgrade() -> None:
    op.drop_table("service_settings")
    op.drop_table("session_keys")
    op.drop_index("ix_best_scores_ranking", table_name="best_scores")
    op.drop_table("best_scores")
