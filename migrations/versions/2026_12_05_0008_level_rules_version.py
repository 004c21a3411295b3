"""A version per level's rules and seasons, for replicas that keep a level's state in memory.

A PostgreSQL replica keeps each level's rules and season spans as it last read them, and sends
the level's version along with the statement that serves a request (the top 15 of its board);
where the version returned is not the one kept, another replica changed the level meanwhile,
and the state is read anew and the statement run again. A request so needs one round trip, not
two, and still sees every change committed before it.

Every change of a level's rules or seasons, in its own unit of work, sets level_rules.version
to the database's clock in µs, or to one more than it was where that is not larger (see
scoresvc.storage.levels): a level's versions only grow, so an equal version means an unchanged
level, even across a table emptied or a backup restored while replicas run. A level without
rules has no row: its version is none (0). The rows there are start at 1.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("level_rules") as level_rules:
        level_rules.add_column(
            sa.Column("version", sa.BigInteger(), server_default=sa.text("1"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("level_rules") as level_rules:
        level_rules.drop_column("version")
