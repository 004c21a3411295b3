"""Equal scores ordered the same way by every process and replica on one database.

The repository's upsert takes `reached_at` from `next_reached_at()`. On PostgreSQL that is this
function, the database server's clock in microseconds, so that replicas whose clocks disagree
still order ties by when the database received them; SQLite's processes share one machine's
clock, and each connection registers the function itself. Two writes in the same microsecond
rank by user id: the ranking index now ends with it, so the order is the same on every read.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_RANKING = ["level_id", sa.text("score DESC"), "reached_at"]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION next_reached_at() RETURNS bigint LANGUAGE sql VOLATILE AS "
            "$$ SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint $$"
        )
    op.drop_index("ix_best_scores_ranking", table_name="best_scores")
    op.create_index("ix_best_scores_ranking", "best_scores", [*_RANKING, "user_id"])


def downgrade() -> None:
    op.drop_index("ix_best_scores_ranking", table_name="best_scores")
    op.create_index("ix_best_scores_ranking", "best_scores", _RANKING)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION next_reached_at()")
