"""SQLAlchemy Core statements compiled once for a dialect and run on the driver's own cursor."""

from sqlalchemy import Executable
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

# Both dialects spell the upsert the same way (INSERT ... ON CONFLICT DO UPDATE ... WHERE).
_INSERT_BY_DIALECT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def upsert_insert(dialect: Dialect):
    """The dialect's insert(), the one with on_conflict_do_update() and do_nothing()."""
    return _INSERT_BY_DIALECT[dialect.name]


class CompiledStatement:
    """A SQLAlchemy Core statement compiled once for a dialect, run on a driver cursor.

    Connection.execute() looks its compiled form up in a cache and builds an execution context
    and a Result around every call, several times the work of the driver's own execute(). The
    SQL text and its parameter order still come from SQLAlchemy's compiler for the engine's
    dialect, so no SQL written for one database leaks into the repository.
    """

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
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

    def execute(self, cursor, **values):
        """Run the statement on a driver cursor with the given parameter values; the cursor."""
        return cursor.execute(self.sql, self._parameters(values))

    def executemany(self, cursor, batch: list[dict]):
        """Run the statement once per set of values in batch, in the driver; the cursor."""
        return cursor.executemany(self.sql, [self._parameters(values) for values in batch])

    def _parameters(self, values: dict):
        merged = {**self._defaults, **values}
        if self._names is None:
            return merged
        return [merged[name] for name in self._names]
