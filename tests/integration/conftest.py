"""Integration tests use real SQLite databases, migrated by the real migrations."""

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from scoresvc.storage.database import Database, create_database_engine
from scoresvc.storage.migrate import upgrade_to_head
from scoresvc.storage.repository import Repository


@pytest.fixture(params=["memory", "file"])
def database(request, tmp_path) -> Iterator[Database]:
    """A migrated database: in memory (shared cache) and in a file (WAL)."""
    url = "sqlite://" if request.param == "memory" else f"sqlite:///{tmp_path}/scores.db"
    database = Database(create_database_engine(url))
    upgrade_to_head(database)
    yield database
    database.close()


@pytest.fixture
def repository(database, clock) -> Repository:
    return Repository(database, clock=clock)


def query(database: Database, sql: str, **params) -> list[tuple]:
    """Rows of a raw SQL query, run on the database's own connection."""
    with database.transaction() as connection:
        return [tuple(row) for row in connection.execute(text(sql), params)]
