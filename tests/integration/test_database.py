"""Opening databases: memory databases are shared within an engine, files are durable WAL."""

import pytest
from sqlalchemy import text

from scoresvc.database import Database, create_database_engine, is_memory_url
from scoresvc.errors import DatabaseUnavailable


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_memory_urls_are_recognised(url):
    assert is_memory_url(url)
    assert not is_memory_url("sqlite:////tmp/scores.db")


def test_every_connection_of_a_memory_engine_sees_the_same_data():
    database = Database(create_database_engine("sqlite://"))
    with database.transaction() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
        connection.execute(text("INSERT INTO t VALUES (1)"))
    with database.engine.connect() as other:
        assert other.execute(text("SELECT x FROM t")).scalar() == 1
    database.close()


def test_two_memory_engines_do_not_share_data():
    first = Database(create_database_engine("sqlite://"))
    second = Database(create_database_engine("sqlite://"))
    with first.transaction() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
    with second.transaction() as connection:
        assert connection.execute(text("SELECT name FROM sqlite_master")).all() == []
    first.close()
    second.close()


@pytest.mark.parametrize(("level", "number"), [("NORMAL", 1), ("FULL", 2)])
def test_a_file_database_uses_wal_and_the_chosen_synchronous_level(tmp_path, level, number):
    database = Database(create_database_engine(f"sqlite:///{tmp_path}/x.db", synchronous=level))
    with database.transaction() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == number
    database.close()


def test_a_failed_unit_of_work_is_rolled_back(tmp_path):
    database = Database(create_database_engine(f"sqlite:///{tmp_path}/x.db"))
    with database.transaction() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
    with pytest.raises(RuntimeError), database.transaction() as connection:
        connection.execute(text("INSERT INTO t VALUES (1)"))
        raise RuntimeError("fails half-way")
    with database.transaction() as connection:
        assert connection.execute(text("SELECT count(*) FROM t")).scalar() == 0
    database.close()


def test_a_database_error_becomes_database_unavailable():
    database = Database(create_database_engine("sqlite://"))
    with pytest.raises(DatabaseUnavailable, match="no such table"), database.transaction() as c:
        c.execute(text("SELECT * FROM missing"))
    database.close()


def test_a_file_that_cannot_be_opened_is_database_unavailable(tmp_path):
    with pytest.raises(DatabaseUnavailable):
        Database(create_database_engine(f"sqlite:///{tmp_path}/no/such/dir/x.db"))


def test_other_databases_are_refused_for_now():
    with pytest.raises(ValueError, match="only SQLite"):
        create_database_engine("postgresql://localhost/scores")
