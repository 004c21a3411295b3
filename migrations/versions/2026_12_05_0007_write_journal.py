"""The write journal's positions: how far a SQLite database has applied each journal region.

A SQLite file (or the workers' database in memory) takes score posts and stored keys into a
journal beside it, `scores.db-writes`, and applies them in batches (storage/writejournal.py).
A batch's writes and the positions it reached commit in one transaction: a process killed
between the commit and noting the positions in the journal applies nothing twice. PostgreSQL
has no journal; the table is made there too, empty, so that both schemas are one.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "write_journal",
        sa.Column("region", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("journal_id", sa.BigInteger(), nullable=False),
        sa.Column("applied", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("region", name=op.f("pk_write_journal")),
    )


def downgrade() -> None:
    op.drop_table("write_journal")
