"""The kinds of database every integration and functional test runs on."""

import psycopg
import pytest

from tests.pgserver import psycopg_conninfo

DATABASE_KINDS = ("memory", "file", "postgresql")


def empty_database_url(kind: str, request: pytest.FixtureRequest, tmp_path) -> str:
    """A new, empty database of kind: SQLite in memory, a SQLite file, a PostgreSQL database."""
    if kind == "memory":
        return "sqlite://"
    if kind == "file":
        return f"sqlite:///{tmp_path}/scores.db"
    return request.getfixturevalue("postgresql_url")


def empty_tables(postgresql_url: str) -> None:
    """Empty every table of a migrated PostgreSQL database: cheaper than a new database."""
    with psycopg.connect(psycopg_conninfo(postgresql_url), autocommit=True) as connection:
        connection.execute(
            "TRUNCATE best_scores, session_keys, service_settings, hidden_scores, banned_users, "
            "audit_log, level_rules, season_spans, idempotency_keys"
        )
