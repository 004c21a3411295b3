"""Integration tests on real databases of each kind, migrated by the real migrations."""

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from scoresvc.storage.database import Database, open_database
from scoresvc.storage.migrate import upgrade_to_head
from scoresvc.storage.repository import Repository
from tests.databases import DATABASE_KINDS, empty_database_url


@pytest.fixture(params=DATABASE_KINDS)
def database_url(request, tmp_path) -> str:
    """An empty database's URL: SQLite in memory, a SQLite file (WAL), a PostgreSQL database."""
    return empty_database_url(request.param, request, tmp_path)


@pytest.fixture(params=("file", "postgresql"))
def shared_database_url(request, tmp_path) -> str:
    """An empty database's URL, of the kinds several processes can share."""
    return empty_database_url(request.param, request, tmp_path)


@pytest.fixture
def database(database_url, clock) -> Iterator[Database]:
    """The database at database_url, migrated."""
    database = open_database(database_url, clock=clock)
    upgrade_to_head(database)
    yield database
    database.close()


@pytest.fixture
def repository(database) -> Repository:
    return Repository(database)


def query(database: Database, sql: str, **params) -> list[tuple]:
    """Rows of a raw SQL query, run in a transaction of the database's own."""
    with database.unit_of_work() as uow:
        return [tuple(row) for row in uow.connection.execute(text(sql), params)]
