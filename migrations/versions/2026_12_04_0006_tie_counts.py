"""Flat ties: players tied on one score are counted by when they reached it.

Players on one score are ranked by reached_at (then user id). rank_counts finds the players
ahead of a score in a few hundred rows, but the players ahead within the score were counted
from the ranking index one by one: 7 ms for the last of 100,000 players tied on a score.
tie_counts is a second tree, one per crowded score: at depth 1 a node per reached_at >> 48, down
to a node per reached_at at depth 7, fanout 256 as in rank_counts, and a root (depth 0, prefix
0) holding all the score's players. The players who reached a score before a player are those
of the earlier siblings of the player's seven nodes, then those with the same reached_at and a
lower user id: a few hundred rows at most, however many are tied.

Most scores are held by a few players, and a tree per score would cost every write seven more
rows. So a score gets its tree when CROWDED (64) of a board's players hold it, and keeps it
until its last player leaves: a score with no root has fewer than 64 players, which the ranking
index counts in microseconds. Checking for a root is all a write to an uncrowded score costs.

As for rank_counts, the database keeps the counts in the write's own transaction, for every
writer (rows written by hand and TRUNCATE included), and this migration counts the scores
already crowded:
- SQLite: triggers of their own, each with a WHEN that lets a write to an uncrowded score pass
  with a look-up or two. SQLite does not say in which order triggers fire, so these are right
  before or after rank_counts' triggers: a tree is built from best_scores itself, when a score
  without a root is found to hold 64 players.
- PostgreSQL: the functions of rank_counts' triggers go on to the tie counts, after the score
  counts and in key order, so that two writes cannot deadlock; the update trigger fires on a
  new reached_at too (a `latest` post of the same score moves its player within the score).

These figures are copied, not imported, from scoresvc.storage.schema: a migration stays as
it was written.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# rank_counts: the bits a node at each depth (1 to 4) drops from the score.
_SCORE_SHIFTS = (24, 16, 8, 0)
# tie_counts: the bits a node at each depth (1 to 7) drops from reached_at; depth 0 is the root.
_TIME_SHIFTS = (48, 40, 32, 24, 16, 8, 0)
_CROWDED = 64
_SQLITE_TRIGGERS = (
    "tie_counts_after_insert",
    "tie_counts_after_update",
    "tie_counts_after_delete",
    "tie_counts_leave",
    "tie_counts_join",
)


def upgrade() -> None:
    op.create_table(
        "tie_counts",
        sa.Column(
            "level_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("score", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("depth", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("prefix", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("players", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("level_id", "score", "depth", "prefix", name="pk_tie_counts"),
        sqlite_with_rowid=False,
    )
    crowded = (
        f"SELECT level_id, score FROM best_scores GROUP BY level_id, score "
        f"HAVING count(*) >= {_CROWDED}"
    )
    for depth, shift in _nodes():
        prefix = _prefix("b", shift)
        op.execute(
            "INSERT INTO tie_counts (level_id, score, depth, prefix, players) "
            f"SELECT b.level_id, b.score, {depth}, {prefix}, count(*) "
            f"FROM best_scores AS b JOIN ({crowded}) AS crowded "
            "ON crowded.level_id = b.level_id AND crowded.score = b.score "
            f"GROUP BY {_grouped('b.level_id, b.score', prefix)}"
        )
    if op.get_bind().dialect.name == "postgresql":
        _create_postgresql_functions(with_ties=True)
        _create_postgresql_update_trigger(on_reached_at=True)
    else:
        _create_sqlite_triggers()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _create_postgresql_functions(with_ties=False)
        _create_postgresql_update_trigger(on_reached_at=False)
        op.execute("DROP FUNCTION tie_counts_join(bigint, int, bigint)")
        op.execute("DROP FUNCTION tie_counts_path(bigint, int, bigint, int)")
        op.execute("DROP FUNCTION tie_counts_change(bigint, int, int, bigint, int)")
    else:
        for trigger in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {trigger}")
        op.execute("DROP VIEW tie_count_changes")
    op.drop_table("tie_counts")


def _nodes() -> list[tuple[int, int | None]]:
    # Each depth of the tie tree with its shift: the root (depth 0) has none.
    return [(0, None), *enumerate(_TIME_SHIFTS, start=1)]


def _prefix(row: str, shift: int | None) -> str:
    return "0" if shift is None else f"{row}.reached_at >> {shift}"


def _grouped(columns: str, prefix: str) -> str:
    # A constant (the root's prefix) is no GROUP BY term: SQLite reads 0 as a column's number.
    return columns if prefix == "0" else f"{columns}, {prefix}"


def _root_of(row: str) -> str:
    """Whether the score of `row` (NEW, OLD) has a tie tree."""
    return (
        f"EXISTS (SELECT 1 FROM tie_counts WHERE level_id = {row}.level_id "
        f"AND score = {row}.score AND depth = 0 AND prefix = 0)"
    )


def _players_on_score(row: str) -> str:
    """The players on the score of `row`, as rank_counts has them (NULL for none)."""
    return (
        f"(SELECT players FROM rank_counts WHERE level_id = {row}.level_id "
        f"AND depth = {len(_SCORE_SHIFTS)} AND prefix = {row}.score)"
    )


def _sqlite_join(row: str) -> str:
    # `row` (NEW) joins its score's tree, if the score has one.
    nodes = " UNION ALL ".join(
        f"SELECT {row}.level_id, {row}.score, {depth}, {_prefix(row, shift)}, 1"
        for depth, shift in _nodes()
    )
    return (
        "INSERT INTO tie_counts (level_id, score, depth, prefix, players) "
        f"SELECT * FROM ({nodes}) WHERE {_root_of(row)} "
        "ON CONFLICT (level_id, score, depth, prefix) DO UPDATE SET players = players + 1;"
    )


def _sqlite_build(row: str) -> str:
    # The tree of `row`'s score, counted from best_scores, when the score has none and now
    # holds CROWDED players: counted exactly here (at most CROWDED rows of the ranking index),
    # since rank_counts' triggers may have fired before this one or not. The condition is a
    # one-row table on the left of a CROSS JOIN, which SQLite keeps as the outer loop: tested
    # once, not once per row of a crowded score. The root comes last: until it is written,
    # the condition holds for every depth.
    enough = (
        f"(SELECT count(*) FROM (SELECT 1 FROM best_scores WHERE level_id = {row}.level_id "
        f"AND score = {row}.score LIMIT {_CROWDED})) >= {_CROWDED}"
    )
    gate = f"(SELECT 1 WHERE NOT {_root_of(row)} AND {enough}) AS gate"
    counts = " UNION ALL ".join(
        f"SELECT level_id, score, {depth}, {_prefix('best_scores', shift)}, count(*) "
        f"FROM {gate} CROSS JOIN best_scores "
        f"WHERE level_id = {row}.level_id AND score = {row}.score "
        f"GROUP BY {_grouped('level_id, score', _prefix('best_scores', shift))}"
        for depth, shift in reversed(_nodes())
    )
    return f"INSERT INTO tie_counts (level_id, score, depth, prefix, players) {counts};"


def _sqlite_leave(row: str) -> str:
    # `row` (OLD) leaves each node of its score's tree; an emptied node goes. One statement per
    # node: SQLite finds a row by its key only for a plain equality.
    statements = []
    for depth, shift in _nodes():
        node = (
            f"level_id = {row}.level_id AND score = {row}.score AND depth = {depth} "
            f"AND prefix = {_prefix(row, shift)}"
        )
        statements.append(f"DELETE FROM tie_counts WHERE {node} AND players = 1;")
        statements.append(f"UPDATE tie_counts SET players = players - 1 WHERE {node};")
    return " ".join(statements)


def _create_sqlite_triggers() -> None:
    # SQLite sets up a trigger's whole program each time it fires, before its WHEN: a trigger
    # on best_scores holding the statements below cost an update 1.6 µs when its WHEN was
    # false, 8 µs without it. So the triggers on best_scores only pass the change on, when
    # the score has a tree or may need one, to the view tie_count_changes, whose triggers
    # (INSTEAD OF an insert: the view holds nothing) change the counts.
    op.execute(
        "CREATE VIEW tie_count_changes AS "
        "SELECT level_id, score, reached_at, 0 AS change FROM best_scores WHERE false"
    )
    op.execute(
        "CREATE TRIGGER tie_counts_leave INSTEAD OF INSERT ON tie_count_changes "
        f"WHEN NEW.change < 0 BEGIN {_sqlite_leave('NEW')} END"
    )
    op.execute(
        "CREATE TRIGGER tie_counts_join INSTEAD OF INSERT ON tie_count_changes "
        f"WHEN NEW.change > 0 BEGIN {_sqlite_join('NEW')} {_sqlite_build('NEW')} END"
    )
    # A score may gain its tree from a player joining it: whether its players, as rank_counts
    # has them before or after this write, are CROWDED - 1 or more lets the trigger fire in
    # either order; the build then counts exactly.
    may_join = f"({_root_of('NEW')} OR {_players_on_score('NEW')} >= {_CROWDED - 1})"
    moved = (
        "(OLD.level_id != NEW.level_id OR OLD.score != NEW.score "
        "OR OLD.reached_at != NEW.reached_at)"
    )

    def change(row: str, sign: int) -> str:
        return (
            "INSERT INTO tie_count_changes (level_id, score, reached_at, change) "
            f"VALUES ({row}.level_id, {row}.score, {row}.reached_at, {sign});"
        )

    op.execute(
        "CREATE TRIGGER tie_counts_after_insert AFTER INSERT ON best_scores "
        f"WHEN {may_join} BEGIN {change('NEW', 1)} END"
    )
    # An update leaves the old place, then joins the new one. Leaving needs no condition of
    # its own: a score without a tree has no node to change.
    op.execute(
        "CREATE TRIGGER tie_counts_after_update "
        "AFTER UPDATE OF level_id, score, reached_at ON best_scores "
        f"WHEN {moved} AND ({_root_of('OLD')} OR {may_join}) "
        f"BEGIN {change('OLD', -1)} {change('NEW', 1)} END"
    )
    op.execute(
        "CREATE TRIGGER tie_counts_after_delete AFTER DELETE ON best_scores "
        f"WHEN {_root_of('OLD')} BEGIN {change('OLD', -1)} END"
    )


def _values(shifts: list[tuple[int, int | None]]) -> str:
    return ", ".join(f"({depth}, {shift or 0})" for depth, shift in shifts)


def _create_postgresql_functions(*, with_ties: bool) -> None:
    """rank_counts' trigger functions, going on to tie_counts or (with_ties false, as
    migration 0003 and 0005 left them) not."""
    score_tree = _values(list(enumerate(_SCORE_SHIFTS, start=1)))
    time_tree = _values(_nodes())
    time_prefix = "CASE WHEN tree.depth = 0 THEN 0 ELSE r.reached_at >> tree.shift END"
    root_of_r = (
        "EXISTS (SELECT FROM tie_counts AS root WHERE root.level_id = r.level_id "
        "AND root.score = r.score AND root.depth = 0 AND root.prefix = 0)"
    )
    for event, rows, change in (("insert", "new_rows", 1), ("delete", "old_rows", -1)):
        score_nodes = (
            f"SELECT level_id, depth, score >> shift AS prefix, count(*) * {change} AS change "
            f"FROM {rows} CROSS JOIN (VALUES {score_tree}) AS tree (depth, shift) "
            "GROUP BY level_id, depth, score >> shift ORDER BY level_id, depth, prefix"
        )
        time_nodes = (
            f"SELECT r.level_id, r.score, tree.depth, {time_prefix} AS prefix, "
            f"count(*) * {change} AS change "
            f"FROM {rows} AS r CROSS JOIN (VALUES {time_tree}) AS tree (depth, shift) "
            f"WHERE {root_of_r} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
        )
        statements = [
            "INSERT INTO rank_counts AS node (level_id, depth, prefix, players) "
            f"SELECT * FROM ({score_nodes}) AS nodes "
            "ON CONFLICT (level_id, depth, prefix) "
            "DO UPDATE SET players = node.players + excluded.players;"
        ]
        if change < 0:
            statements.append(
                "DELETE FROM rank_counts WHERE players = 0 AND (level_id, depth, prefix) IN "
                f"(SELECT level_id, depth, prefix FROM ({score_nodes}) AS nodes);"
            )
        if with_ties:
            # The scores with a tree: each node changes once (taken in key order).
            statements.append(
                "INSERT INTO tie_counts AS node (level_id, score, depth, prefix, players) "
                f"SELECT * FROM ({time_nodes}) AS nodes "
                "ON CONFLICT (level_id, score, depth, prefix) "
                "DO UPDATE SET players = node.players + excluded.players;"
            )
        if with_ties and change < 0:
            statements.append(
                "DELETE FROM tie_counts WHERE players = 0 AND (level_id, score, depth, prefix) "
                f"IN (SELECT level_id, score, depth, prefix FROM ({time_nodes}) AS nodes);"
            )
        if with_ties and change > 0:
            # The scores without one that now hold CROWDED players (rank_counts has just
            # counted them): built from best_scores.
            statements.append(
                "INSERT INTO tie_counts (level_id, score, depth, prefix, players) "
                f"SELECT r.level_id, r.score, tree.depth, {time_prefix}, count(*) "
                f"FROM best_scores AS r CROSS JOIN (VALUES {time_tree}) AS tree (depth, shift) "
                "WHERE (r.level_id, r.score) IN ("
                "SELECT c.level_id, c.prefix FROM rank_counts AS c "
                f"WHERE c.depth = {len(_SCORE_SHIFTS)} AND c.players >= {_CROWDED} "
                "AND (c.level_id, c.prefix) IN (SELECT level_id, score FROM new_rows) "
                "AND NOT EXISTS (SELECT FROM tie_counts AS root WHERE root.level_id = c.level_id "
                "AND root.score = c.prefix AND root.depth = 0 AND root.prefix = 0)) "
                "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4;"
            )
        body = "\n".join(statements)
        op.execute(
            f"""
            CREATE OR REPLACE FUNCTION rank_counts_after_{event}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                {body}
                RETURN NULL;
            END $$
            """
        )
    if with_ties:
        _create_postgresql_tie_functions()
    score_shifts = ", ".join(str(shift) for shift in _SCORE_SHIFTS)
    time_shifts = ", ".join(str(shift) for shift in _TIME_SHIFTS)
    ties = f"""
            IF OLD.level_id = NEW.level_id AND OLD.score = NEW.score THEN
                -- A new time on the same score: the player moves within the score's tree.
                old_crowded := EXISTS (SELECT FROM tie_counts WHERE level_id = OLD.level_id
                    AND score = OLD.score AND depth = 0 AND prefix = 0);
                IF old_crowded THEN
                    FOR at_depth IN 1 .. array_length(time_shifts, 1) LOOP
                        old_time := OLD.reached_at >> time_shifts[at_depth];
                        new_time := NEW.reached_at >> time_shifts[at_depth];
                        CONTINUE WHEN old_time = new_time;
                        IF old_time < new_time THEN
                            PERFORM tie_counts_change(
                                OLD.level_id, OLD.score, at_depth, old_time, -1);
                            PERFORM tie_counts_change(
                                NEW.level_id, NEW.score, at_depth, new_time, 1);
                        ELSE
                            PERFORM tie_counts_change(
                                NEW.level_id, NEW.score, at_depth, new_time, 1);
                            PERFORM tie_counts_change(
                                OLD.level_id, OLD.score, at_depth, old_time, -1);
                        END IF;
                    END LOOP;
                END IF;
            ELSE
                -- One statement: the hot path (a better score, neither crowded) runs no other.
                SELECT EXISTS (SELECT FROM tie_counts WHERE level_id = OLD.level_id
                        AND score = OLD.score AND depth = 0 AND prefix = 0),
                    EXISTS (SELECT FROM tie_counts WHERE level_id = NEW.level_id
                        AND score = NEW.score AND depth = 0 AND prefix = 0)
                    OR coalesce((SELECT players FROM rank_counts WHERE level_id = NEW.level_id
                        AND depth = {len(_SCORE_SHIFTS)} AND prefix = NEW.score), 0) >= {_CROWDED}
                INTO old_crowded, new_crowded;
                -- The lower score's tree first: key order.
                IF (OLD.level_id, OLD.score) < (NEW.level_id, NEW.score) THEN
                    IF old_crowded THEN
                        PERFORM tie_counts_path(OLD.level_id, OLD.score, OLD.reached_at, -1);
                    END IF;
                    IF new_crowded THEN
                        PERFORM tie_counts_join(NEW.level_id, NEW.score, NEW.reached_at);
                    END IF;
                ELSE
                    IF new_crowded THEN
                        PERFORM tie_counts_join(NEW.level_id, NEW.score, NEW.reached_at);
                    END IF;
                    IF old_crowded THEN
                        PERFORM tie_counts_path(OLD.level_id, OLD.score, OLD.reached_at, -1);
                    END IF;
                END IF;
            END IF;
    """
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION rank_counts_after_update() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            shifts CONSTANT int[] := ARRAY[{score_shifts}];
            {f"time_shifts CONSTANT int[] := ARRAY[{time_shifts}];" if with_ties else ""}
            moves CONSTANT boolean := OLD.level_id <> NEW.level_id;
            old_prefix int;
            new_prefix int;
            {
            "old_time bigint; new_time bigint; old_crowded boolean; new_crowded boolean;"
            if with_ties
            else ""
        }
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
            {ties if with_ties else ""}
            RETURN NULL;
        END $$
        """
    )
    truncated = "rank_counts, tie_counts" if with_ties else "rank_counts"
    op.execute(
        "CREATE OR REPLACE FUNCTION rank_counts_after_truncate() RETURNS trigger "
        f"LANGUAGE plpgsql AS $$ BEGIN TRUNCATE {truncated}; RETURN NULL; END $$"
    )


def _create_postgresql_tie_functions() -> None:
    time_shifts = ", ".join(str(shift) for shift in _TIME_SHIFTS)
    time_tree = _values(_nodes())
    op.execute(
        """
        CREATE FUNCTION tie_counts_change(
            board bigint, tied_score int, node_depth int, node_prefix bigint, change int
        ) RETURNS void LANGUAGE plpgsql AS $$
        DECLARE
            left_over int;
        BEGIN
            INSERT INTO tie_counts AS node (level_id, score, depth, prefix, players)
            VALUES (board, tied_score, node_depth, node_prefix, change)
            ON CONFLICT (level_id, score, depth, prefix)
            DO UPDATE SET players = node.players + change
            RETURNING players INTO left_over;
            IF left_over = 0 THEN
                DELETE FROM tie_counts WHERE level_id = board AND score = tied_score
                    AND depth = node_depth AND prefix = node_prefix;
            END IF;
        END $$
        """
    )
    # A player reached at `reached` joins (change 1) or leaves (-1) every node of the path.
    op.execute(
        f"""
        CREATE FUNCTION tie_counts_path(board bigint, tied_score int, reached bigint, change int)
        RETURNS void LANGUAGE plpgsql AS $$
        DECLARE
            time_shifts CONSTANT int[] := ARRAY[{time_shifts}];
        BEGIN
            PERFORM tie_counts_change(board, tied_score, 0, 0, change);
            FOR at_depth IN 1 .. array_length(time_shifts, 1) LOOP
                PERFORM tie_counts_change(
                    board, tied_score, at_depth, reached >> time_shifts[at_depth], change);
            END LOOP;
        END $$
        """
    )
    # A player joins a crowded score: its tree gains the player, or is built, with the player.
    op.execute(
        f"""
        CREATE FUNCTION tie_counts_join(board bigint, tied_score int, reached bigint)
        RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT FROM tie_counts WHERE level_id = board AND score = tied_score
                       AND depth = 0 AND prefix = 0) THEN
                PERFORM tie_counts_path(board, tied_score, reached, 1);
            ELSE
                INSERT INTO tie_counts (level_id, score, depth, prefix, players)
                SELECT r.level_id, r.score, tree.depth,
                    CASE WHEN tree.depth = 0 THEN 0 ELSE r.reached_at >> tree.shift END,
                    count(*)
                FROM best_scores AS r CROSS JOIN (VALUES {time_tree}) AS tree (depth, shift)
                WHERE r.level_id = board AND r.score = tied_score
                GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4;
            END IF;
        END $$
        """
    )


def _create_postgresql_update_trigger(*, on_reached_at: bool) -> None:
    op.execute("DROP TRIGGER rank_counts_after_update ON best_scores")
    columns = "level_id, score, reached_at" if on_reached_at else "level_id, score"
    moved = "OLD.level_id <> NEW.level_id OR OLD.score <> NEW.score"
    if on_reached_at:
        moved += " OR OLD.reached_at <> NEW.reached_at"
    op.execute(
        f"CREATE TRIGGER rank_counts_after_update AFTER UPDATE OF {columns} ON best_scores "
        f"FOR EACH ROW WHEN ({moved}) EXECUTE FUNCTION rank_counts_after_update()"
    )
