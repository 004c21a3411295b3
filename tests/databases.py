"""The kinds of database every integration and functional test runs on."""

import pytest

DATABASE_KINDS = ("memory", "file", "postgresql")


def empty_database_url(kind: str, request: pytest.FixtureRequest, tmp_path) -> str:
    """A new, empty database of kind: SQLite in memory, a SQLite file, a PostgreSQL database."""
    if kind == "memory":
        return "sqlite://"
    if kind == "file":
        return f"sqlite:///{tmp_path}/scores.db"
    return request.getfixturevalue("postgresql_url")
