"""Exact ranks at any size: how many players each range of scores holds, kept by the database.

A player's rank is one plus the players ahead. Counting them row by row costs as many rows as
there are: 50-100 ms at a million players. `rank_counts` is a tree over the 31-bit score
space instead: at depth 1 a node per score >> 24 (128 of them), at depth 2 per score >> 16,
at depth 3 per score >> 8, at depth 4 per score; each node holds how many of the level's
players have a best score in its range (nodes holding none are not stored). The players
ahead of a score are the players of the higher siblings of each of its four nodes: at most
127 + 3 * 255 rows to add up whatever the size of the level, and then the players who reached
the same score first, from the ranking index. A write moves a player between at most four
nodes.

Triggers keep the counts, in the same transaction as the write to `best_scores`, so that
they hold for every process and replica, for rows written by hand and for rows written
before this migration (which counts them once, below). On PostgreSQL a trigger takes the row
locks of the nodes in one order, depth by depth and by prefix, so that two writes cannot
deadlock.

These figures are copied, not imported, from scoresvc.storage.schema: a migration stays as
it was written.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The bits a node at each depth (1 to 4) drops from the score.
_SHIFTS = (24, 16, 8, 0)
_TRIGGERS = ("rank_counts_after_insert", "rank_counts_after_update", "rank_counts_after_delete")


def upgrade() -> None:
    op.create_table(
        "rank_counts",
        sa.Column("level_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("depth", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("prefix", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("players", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("level_id", "depth", "prefix", name="pk_rank_counts"),
        sqlite_with_rowid=False,
    )
    for depth, shift in enumerate(_SHIFTS, start=1):
        op.execute(
            "INSERT INTO rank_counts (level_id, depth, prefix, players) "
            f"SELECT level_id, {depth}, score >> {shift}, count(*) FROM best_scores "
            f"GROUP BY level_id, score >> {shift}"
        )
    if op.get_bind().dialect.name == "postgresql":
        _create_postgresql_triggers()
    else:
        _create_sqlite_triggers()


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for trigger in _TRIGGERS:
        op.execute(
            f"DROP TRIGGER {trigger} ON best_scores" if postgresql else f"DROP TRIGGER {trigger}"
        )
    if postgresql:
        op.execute("DROP FUNCTION rank_counts_follow()")
        op.execute("DROP FUNCTION rank_counts_leave(int, int, int)")
    op.drop_table("rank_counts")


def _sqlite_join(row: str, moved: str = "true") -> str:
    # The nodes of `row` (NEW) that `moved` says changed each gain a player.
    nodes = " UNION ALL ".join(
        f"SELECT {row}.level_id, {depth}, {row}.score >> {shift}, 1 WHERE {moved.format(s=shift)}"
        for depth, shift in enumerate(_SHIFTS, start=1)
    )
    # WHERE true: SQLite's parser needs it before ON CONFLICT after a SELECT.
    return (
        f"INSERT INTO rank_counts (level_id, depth, prefix, players) "
        f"SELECT * FROM ({nodes}) WHERE true "
        "ON CONFLICT (level_id, depth, prefix) DO UPDATE SET players = players + 1;"
    )


def _sqlite_leave(row: str, moved: str = "true") -> str:
    # The nodes of `row` (OLD) that `moved` says changed each lose a player; an emptied node
    # goes. One statement per node: SQLite finds a row by its key only for a plain equality.
    statements = []
    for depth, shift in enumerate(_SHIFTS, start=1):
        node = (
            f"level_id = {row}.level_id AND depth = {depth} AND prefix = {row}.score >> {shift} "
            f"AND ({moved.format(s=shift)})"
        )
        statements.append(f"DELETE FROM rank_counts WHERE {node} AND players = 1;")
        statements.append(f"UPDATE rank_counts SET players = players - 1 WHERE {node};")
    return " ".join(statements)


def _create_sqlite_triggers() -> None:
    moved = "OLD.level_id != NEW.level_id OR OLD.score >> {s} != NEW.score >> {s}"
    op.execute(
        f"CREATE TRIGGER rank_counts_after_insert AFTER INSERT ON best_scores "
        f"BEGIN {_sqlite_join('NEW')} END"
    )
    op.execute(
        "CREATE TRIGGER rank_counts_after_update AFTER UPDATE OF level_id, score ON best_scores "
        "WHEN OLD.level_id != NEW.level_id OR OLD.score != NEW.score "
        f"BEGIN {_sqlite_leave('OLD', moved)} {_sqlite_join('NEW', moved)} END"
    )
    op.execute(
        f"CREATE TRIGGER rank_counts_after_delete AFTER DELETE ON best_scores "
        f"BEGIN {_sqlite_leave('OLD')} END"
    )


def _create_postgresql_triggers() -> None:
    shifts = ", ".join(str(shift) for shift in _SHIFTS)
    op.execute(
        f"""
        CREATE FUNCTION rank_counts_follow() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            shifts CONSTANT int[] := ARRAY[{shifts}];
            leaving boolean := TG_OP <> 'INSERT';
            joining boolean := TG_OP <> 'DELETE';
            old_prefix int;
            new_prefix int;
            old_first boolean;
        BEGIN
            FOR at_depth IN 1 .. array_length(shifts, 1) LOOP
                IF leaving THEN old_prefix := OLD.score >> shifts[at_depth]; END IF;
                IF joining THEN new_prefix := NEW.score >> shifts[at_depth]; END IF;
                IF leaving AND joining
                   AND OLD.level_id = NEW.level_id AND old_prefix = new_prefix THEN
                    CONTINUE;
                END IF;
                -- Row locks in one order everywhere (depth, level, prefix): no deadlock.
                old_first := leaving AND (NOT joining
                    OR (OLD.level_id, old_prefix) < (NEW.level_id, new_prefix));
                IF old_first THEN
                    PERFORM rank_counts_leave(OLD.level_id, at_depth, old_prefix);
                END IF;
                IF joining THEN
                    INSERT INTO rank_counts AS node (level_id, depth, prefix, players)
                    VALUES (NEW.level_id, at_depth, new_prefix, 1)
                    ON CONFLICT (level_id, depth, prefix)
                    DO UPDATE SET players = node.players + 1;
                END IF;
                IF leaving AND NOT old_first THEN
                    PERFORM rank_counts_leave(OLD.level_id, at_depth, old_prefix);
                END IF;
            END LOOP;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION rank_counts_leave(level int, node_depth int, node_prefix int)
        RETURNS void LANGUAGE plpgsql AS $$
        DECLARE
            left_over int;
        BEGIN
            UPDATE rank_counts SET players = players - 1
            WHERE level_id = level AND depth = node_depth AND prefix = node_prefix
            RETURNING players INTO left_over;
            IF left_over = 0 THEN
                DELETE FROM rank_counts
                WHERE level_id = level AND depth = node_depth AND prefix = node_prefix;
            END IF;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER rank_counts_after_insert AFTER INSERT ON best_scores "
        "FOR EACH ROW EXECUTE FUNCTION rank_counts_follow()"
    )
    op.execute(
        "CREATE TRIGGER rank_counts_after_update AFTER UPDATE OF level_id, score ON best_scores "
        "FOR EACH ROW WHEN (OLD.level_id <> NEW.level_id OR OLD.score <> NEW.score) "
        "EXECUTE FUNCTION rank_counts_follow()"
    )
    op.execute(
        "CREATE TRIGGER rank_counts_after_delete AFTER DELETE ON best_scores "
        "FOR EACH ROW EXECUTE FUNCTION rank_counts_follow()"
    )
