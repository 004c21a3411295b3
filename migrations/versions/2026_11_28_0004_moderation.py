"""Moderation: hidden scores, banned users and the audit log of the admin API.

A ban moves the user's rows from best_scores into hidden_scores in one transaction (the
triggers of migration 0003 take them out of rank_counts), and an unban moves them back, so
that every list, rank and count reads only the visible players with no filter of its own.
banned_users is read by the score upsert (which writes nothing for a banned user) and by the
check that refuses their posts and logins. audit_log records each change.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hidden_scores",
        sa.Column("user_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("level_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("reached_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "level_id", name="pk_hidden_scores"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "banned_users",
        sa.Column("user_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("banned_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_banned_users"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("level_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("detail", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )


def downgrade() -> None:
    # Hidden scores go back on the lists: downgrading forgets the bans, not the scores.
    op.execute(
        "INSERT INTO best_scores (level_id, user_id, score, reached_at) "
        "SELECT level_id, user_id, score, reached_at FROM hidden_scores"
    )
    op.drop_table("audit_log")
    op.drop_table("banned_users")
    op.drop_table("hidden_scores")
