"""The statements that more than one module runs, each built here once, and how they run.

The repository, moderation and the bench import what they run from here (and the ranking reads
from ranking.py), so that a statement the service runs is written in one place only. Each is
compiled once for a database's dialect (CompiledStatement) and run on the driver's cursor.
"""

import json
from collections.abc import Callable
from typing import Any, TypeAlias, cast

from sqlalchemy import (
    BigInteger,
    ClauseElement,
    ColumnElement,
    Integer,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal_column,
)
from sqlalchemy import select as select_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert

from scoresvc.leaderboards import MAX_SCORE
from scoresvc.storage.schema import banned_users, best_scores

# A DBAPI driver's cursor (sqlite3's, psycopg's): the drivers share no type, and the rows it
# fetches are the driver's own.
Cursor: TypeAlias = Any
# An INSERT with on_conflict_do_update() and excluded, which both dialects have alike.
UpsertInsert: TypeAlias = sqlite.Insert | postgresql.Insert

# Both dialects spell the upsert the same way (INSERT ... ON CONFLICT DO UPDATE ... WHERE).
_INSERT_BY_DIALECT: dict[str, Callable[[Table], UpsertInsert]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}


def upsert_insert(dialect: Dialect) -> Callable[[Table], UpsertInsert]:
    """The dialect's insert(), the one with on_conflict_do_update() and do_nothing()."""
    return _INSERT_BY_DIALECT[dialect.name]


def is_banned(user_id: ColumnElement[int] | None = None) -> ColumnElement[bool]:
    """Whether the user (:user_id by default) is banned."""
    if user_id is None:
        user_id = bindparam("user_id", type_=Integer)
    return exists().where(banned_users.c.user_id == user_id)


def banned_user_ids() -> Select[int]:
    """Every banned user's id."""
    return select_(banned_users.c.user_id)


def keep_best(upsert: UpsertInsert, table: Table = best_scores) -> UpsertInsert:
    """upsert (an INSERT into table) made to keep each player's best: a higher score replaces
    the row, an equal or lower one changes nothing (the earlier time keeps its place)."""
    return upsert.on_conflict_do_update(
        index_elements=[table.c.level_id, table.c.user_id],
        set_={"score": upsert.excluded.score, "reached_at": upsert.excluded.reached_at},
        where=upsert.excluded.score > table.c.score,
    )


def best_score_upsert(
    dialect: Dialect, *, reached_at: ColumnElement[int] | None = None, table: Table = best_scores
) -> Insert:
    """A score post that keeps the best: see score_upsert."""
    return score_upsert(dialect, "best", "desc", reached_at=reached_at, table=table)


def score_upsert(
    dialect: Dialect,
    keep: str,
    order: str,
    *,
    reached_at: ColumnElement[int] | None = None,
    table: Table = best_scores,
    batch: bool = False,
) -> Insert:
    """A score post: :score (the value the board stores) for :user_id on the board :level_id,
    kept as the level's rules say; with batch, every post of :rows, a JSON array of rows of
    BATCH_ROW's values (SQLite), in the array's order, as if each were posted in turn.

    - best: the row changes only for a higher stored value (a better score in either order);
    - latest: every post replaces the row, reached now;
    - sum: every post adds its score to the row's total, which stops at MAX_SCORE (an `asc`
      board stores MAX_SCORE - total, so there the stored value goes down, and stops at 0);
      the row is reached again only when the total changes.

    When it was reached is the database's to say by default (next_reached_at(): see the
    migrations), so that every process and replica orders ties the same way. Nothing is
    written for a banned user, in the write itself: a post that raced a ban (checked before
    it, written after it) cannot put a hidden player back.
    """
    if batch:
        row = _rows_of_json_array()
    else:
        if reached_at is None:
            reached_at = func.next_reached_at()
        row = select_(
            bindparam("level_id", type_=BigInteger),
            bindparam("user_id", type_=Integer),
            bindparam("score", type_=Integer),
            reached_at,
        ).where(~is_banned())
    upsert = upsert_insert(dialect)(table).from_select(
        ["level_id", "user_id", "score", "reached_at"], row
    )
    if keep == "best":
        return keep_best(upsert, table)
    stored, posted = table.c.score, upsert.excluded.score
    new_score: ColumnElement[int]
    if keep == "latest":
        new_score = posted
        changed = None
    elif order == "desc":
        # MAX_SCORE - posted never overflows a 32-bit integer; stored + posted might.
        new_score = case(
            (stored > _number(MAX_SCORE) - posted, _number(MAX_SCORE)), else_=stored + posted
        )
        changed = posted > _number(0)
    else:
        # Stored as MAX_SCORE - total: the posted score is MAX_SCORE - posted.
        gained = _number(MAX_SCORE) - posted
        new_score = case((stored < gained, _number(0)), else_=stored - gained)
        changed = gained > _number(0)
    return upsert.on_conflict_do_update(
        index_elements=[table.c.level_id, table.c.user_id],
        set_={"score": new_score, "reached_at": upsert.excluded.reached_at},
        where=None if changed is None else and_(changed, new_score != stored),
    )


# The values of one row of a batch of score posts, in their order in the JSON array.
BATCH_ROW = ("level_id", "user_id", "score", "reached_at")


def _rows_of_json_array() -> Select[Any]:
    """The rows (level_id, user_id, score, reached_at) of the JSON array :rows, in its order,
    leaving out banned users: SQLite's json_each(), one call into SQLite for the whole batch."""
    rows = func.json_each(bindparam("rows", type_=String)).table_valued("key", "value")
    rows = rows.alias("batch_rows")

    def field(name: str, kind: type[Integer] | type[BigInteger]) -> ColumnElement[int]:
        path: ColumnElement[str] = literal_column(f"'$[{BATCH_ROW.index(name)}]'")
        return func.json_extract(rows.c.value, path, type_=kind)

    user_id = field("user_id", Integer)
    return (
        select_(field("level_id", BigInteger), user_id, field("score", Integer))
        .add_columns(field("reached_at", BigInteger))
        .select_from(rows)
        .where(~is_banned(user_id))
        .order_by(rows.c.key)
    )


def _number(value: int) -> ColumnElement[int]:
    return literal_column(str(value), Integer)


class CompiledStatement:
    """A SQLAlchemy Core statement compiled once for a dialect, run on a driver cursor.

    Connection.execute() looks its compiled form up in a cache and builds an execution context
    and a Result around every call, several times the work of the driver's own execute(). The
    SQL text and its parameter order still come from SQLAlchemy's compiler for the engine's
    dialect, so no SQL written for one database leaks into the repository.
    """

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        # A statement's compiler: binds and the parameter order are SQLCompiler's.
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        # Values go to the driver as given: refuse a statement whose types would convert them.
        binds = [dialect.type_descriptor(bind.type) for bind in compiled.binds.values()]
        columns = [
            dialect.type_descriptor(c.type) for c in getattr(statement, "selected_columns", ())
        ]
        if any(kind.bind_processor(dialect) for kind in binds) or any(
            kind.result_processor(dialect, None) for kind in columns
        ):
            raise ValueError(f"this statement needs SQLAlchemy's type processing: {statement}")
        self.sql = str(compiled)
        self._defaults = compiled.params  # values fixed in the statement, such as a LIMIT
        self._names = tuple(compiled.positiontup or ()) if compiled.positional else None

    def execute(self, cursor: Cursor, **values: Any) -> Cursor:
        """Run the statement on a driver cursor with the given parameter values; the cursor."""
        return cursor.execute(self.sql, self.parameters(values))

    def executemany(self, cursor: Cursor, batch: list[dict[str, Any]]) -> Cursor:
        """Run the statement once per set of values in batch, in the driver; the cursor."""
        return cursor.executemany(self.sql, [self.parameters(values) for values in batch])

    def parameters(self, values: dict[str, Any]) -> dict[str, Any] | list[Any]:
        """The driver's parameters for values: a list in the SQL's order, or a mapping."""
        merged = {**self._defaults, **values}
        if self._names is None:
            return merged
        return [merged[name] for name in self._names]


class BatchedStatement(CompiledStatement):
    """A write of one row that also has a form writing many rows in one statement.

    Where writes wait to be applied in batches (SQLite), a run of them is one call into the
    driver rather than one a row: each call into SQLite hands the GIL over and takes it back.
    """

    def __init__(
        self,
        statement: ClauseElement,
        batch: ClauseElement,
        dialect: Dialect,
        names: tuple[str, ...] = BATCH_ROW,
    ) -> None:
        super().__init__(statement, dialect)
        self.batch = CompiledStatement(batch, dialect)  # its one parameter: rows, a JSON array
        self.batch_names = names  # each row's values, in the order the batch reads them

    def batch_row(self, values: dict[str, Any]) -> list[Any]:
        """values as one row of the batch."""
        return [values[name] for name in self.batch_names]

    def execute_batch(self, cursor: Cursor, rows: list[list[Any]]) -> Cursor:
        """Write every row (each batch_row()), in order, in one statement; the cursor."""
        return self.batch.execute(cursor, rows=json.dumps(rows))
