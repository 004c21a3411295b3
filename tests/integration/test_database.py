"""Opening databases: memory databases are shared within an engine, files are durable WAL."""

import time

import pytest
from sqlalchemy import text

from scoresvc.errors import DatabaseUnavailable
from scoresvc.storage.database import Database, create_database_engine, is_memory_url


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


# --- deferred writes (memory databases) -------------------------------------------------


def _table_of_numbers(url: str) -> Database:
    database = Database(create_database_engine(url))
    with database.transaction() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
    return database


def _numbers(database: Database) -> list[int]:
    with database.transaction() as connection:
        return [row[0] for row in connection.execute(text("SELECT x FROM t ORDER BY x"))]


def _wait_until_written(database: Database, tag, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with database.deferral_lock:
            if not database.is_pending(tag):
                return
        time.sleep(0.001)
    raise AssertionError(f"deferred write {tag!r} still pending after {timeout} s")


def test_only_a_memory_database_ends_with_the_process(tmp_path):
    memory = Database(create_database_engine("sqlite://"))
    on_file = Database(create_database_engine(f"sqlite:///{tmp_path}/x.db"))
    assert (memory.ends_with_process, on_file.ends_with_process) == (True, False)
    memory.close()
    on_file.close()


def test_a_deferred_write_is_seen_by_the_next_unit_of_work():
    database = _table_of_numbers("sqlite://")
    insert = database.compile(text("INSERT INTO t (x) VALUES (:x)"))
    with database.deferral_lock:
        for x in (3, 1, 2):
            database.defer(insert, "numbers", x=x)
    assert _numbers(database) == [1, 2, 3]  # at once, not after the writer thread's next turn
    database.close()


def test_deferred_writes_are_made_with_no_read_to_ask_for_them():
    database = _table_of_numbers("sqlite://")
    insert = database.compile(text("INSERT INTO t (x) VALUES (:x)"))
    with database.deferral_lock:
        database.defer(insert, "numbers", x=7)
        assert database.is_pending("numbers")
    _wait_until_written(database, "numbers")
    with database.engine.connect() as other:  # not through Database: nothing runs them first
        assert other.execute(text("SELECT x FROM t")).scalar() == 7
    database.close()


def test_a_failed_batch_is_logged_and_later_writes_still_land(caplog):
    database = _table_of_numbers("sqlite://")
    insert = database.compile(text("INSERT INTO t (x) VALUES (:x)"))
    with database.deferral_lock:
        database.defer(insert, "first", x=1)
        database.defer(insert, "first", x=1)  # the same key twice: the batch fails whole
    _wait_until_written(database, "first")
    with database.deferral_lock:
        database.defer(insert, "second", x=2)
    _wait_until_written(database, "second")
    assert _numbers(database) == [2]
    assert "2 deferred writes lost" in caplog.text
    database.close()


def test_closing_runs_what_is_still_deferred():
    database = _table_of_numbers("sqlite://")
    insert = database.compile(text("INSERT INTO t (x) VALUES (:x)"))
    with database.engine.connect() as keeper:  # keeps the memory database alive past close()
        with database.deferral_lock:
            database.defer(insert, "numbers", x=5)
        database.close()
        assert keeper.execute(text("SELECT x FROM t")).scalar() == 5


def test_writes_deferred_while_the_database_fails_wait_for_it(caplog):
    database = _table_of_numbers("sqlite://")
    insert_elsewhere = database.compile(text("INSERT INTO later (x) VALUES (:x)"))
    with database.deferral_lock:
        database.defer(insert_elsewhere, "later", x=1)  # no such table yet: the database fails
    with pytest.raises(DatabaseUnavailable):
        _numbers(database)  # a unit of work runs them first, and fails with them
    with database.deferral_lock:
        assert database.is_pending("later")  # kept, not lost
    assert "1 deferred writes wait for the database" in caplog.text
    with database.engine.connect() as other:  # the database comes back
        other.execute(text("CREATE TABLE later (x INTEGER)"))
        other.commit()
    with database.transaction() as connection:
        assert connection.execute(text("SELECT x FROM later")).scalar() == 1
    database.close()
