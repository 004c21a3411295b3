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
they hold for every process and replica, for rows written by hand (TRUNCATE included) and
for rows written before this migration, which counts them once, below. On PostgreSQL a bulk
insert or delete changes each node once per statement (see _create_postgresql_triggers).

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
    for trigger in _TRIGGERS + (("rank_counts_after_truncate",) if postgresql else ()):
        op.execute(
            f"DROP TRIGGER {trigger} ON best_scores" if postgresql else f"DROP TRIGGER {trigger}"
        )
    if postgresql:
        for event in ("insert", "update", "delete", "truncate"):
            op.execute(f"DROP FUNCTION rank_counts_after_{event}()")
        op.execute("DROP FUNCTION rank_counts_change(int, int, int, int)")
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
    # Each version of a row that a transaction writes stays until it commits, and every later
    # look-up of the row in that transaction walks past them all: a trigger per row would
    # make a bulk load (INSERT ... SELECT, COPY) that adds players to one node quadratic. So
    # inserts and deletes have statement triggers, which read the statement's rows from a
    # transition table and change each node once. An update (a better score: the hot path)
    # moves one player and has a row trigger, which costs less than a statement trigger.
    # Every trigger changes the nodes in key order, so that two writes cannot deadlock.
    tree = ", ".join(f"({depth}, {shift})" for depth, shift in enumerate(_SHIFTS, start=1))
    shifts = ", ".join(str(shift) for shift in _SHIFTS)
    for event, rows, change in (("insert", "new_rows", 1), ("delete", "old_rows", -1)):
        nodes = (
            f"SELECT level_id, depth, score >> shift AS prefix, count(*) * {change} AS change "
            f"FROM {rows} CROSS JOIN (VALUES {tree}) AS tree (depth, shift) "
            "GROUP BY level_id, depth, score >> shift ORDER BY level_id, depth, prefix"
        )
        remove_emptied = (
            "DELETE FROM rank_counts WHERE players = 0 AND (level_id, depth, prefix) IN "
            f"(SELECT level_id, depth, prefix FROM ({nodes}) AS nodes);"
        )
        op.execute(
            f"""
            CREATE FUNCTION rank_counts_after_{event}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO rank_counts AS node (level_id, depth, prefix, players)
                SELECT * FROM ({nodes}) AS nodes
                ON CONFLICT (level_id, depth, prefix)
                DO UPDATE SET players = node.players + excluded.players;
                {remove_emptied if change < 0 else ""}
                RETURN NULL;
            END $$
            """
        )
        op.execute(
            f"CREATE TRIGGER rank_counts_after_{event} AFTER {event.upper()} ON best_scores "
            f"REFERENCING {'NEW' if change > 0 else 'OLD'} TABLE AS {rows} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION rank_counts_after_{event}()"
        )
    op.execute(
        f"""
        CREATE FUNCTION rank_counts_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            shifts CONSTANT int[] := ARRAY[{shifts}];
            moves CONSTANT boolean := OLD.level_id <> NEW.level_id;
            old_prefix int;
            new_prefix int;
        BEGIN
            -- Key order within the level. A player moved to another level (only ever by
            -- hand) is out of order: PostgreSQL would end a deadlock by failing one write.
            FOR at_depth IN 1 .. array_length(shifts, 1) LOOP
                old_prefix := OLD.score >> shifts[at_depth];
                new_prefix := NEW.score >> shifts[at_depth];
                CONTINUE WHEN NOT moves AND old_prefix = new_prefix;
                IF moves OR old_prefix < new_prefix THEN
                    PERFORM rank_counts_change(OLD.level_id, at_depth, old_prefix, -1);
                    PERFORM rank_counts_change(NEW.level_id, at_depth, new_prefix, 1);
                ELSE
                    PERFORM rank_counts_change(NEW.level_id, at_depth, new_prefix, 1);
                    PERFORM rank_counts_change(OLD.level_id, at_depth, old_prefix, -1);
                END IF;
            END LOOP;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION rank_counts_change(level int, node_depth int, node_prefix int, change int)
        RETURNS void LANGUAGE plpgsql AS $$
        DECLARE
            left_over int;
        BEGIN
            INSERT INTO rank_counts AS node (level_id, depth, prefix, players)
            VALUES (level, node_depth, node_prefix, change)
            ON CONFLICT (level_id, depth, prefix)
            DO UPDATE SET players = node.players + change
            RETURNING players INTO left_over;
            IF left_over = 0 THEN
                DELETE FROM rank_counts
                WHERE level_id = level AND depth = node_depth AND prefix = node_prefix;
            END IF;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER rank_counts_after_update AFTER UPDATE OF level_id, score ON best_scores "
        "FOR EACH ROW WHEN (OLD.level_id <> NEW.level_id OR OLD.score <> NEW.score) "
        "EXECUTE FUNCTION rank_counts_after_update()"
    )
    # TRUNCATE fires no delete trigger: it has one of its own.
    op.execute(
        "CREATE FUNCTION rank_counts_after_truncate() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN TRUNCATE rank_counts; RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER rank_counts_after_truncate AFTER TRUNCATE ON best_scores "
        "FOR EACH STATEMENT EXECUTE FUNCTION rank_counts_after_truncate()"
    )
