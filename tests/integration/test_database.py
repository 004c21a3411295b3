"""Opening databases: memory shared within an engine, files in WAL, PostgreSQL per thread."""

import contextlib
import socket
import sqlite3
import threading
import time

import psycopg
import pytest
from sqlalchemy import text

from scoresvc.errors import DatabaseUnavailable
from scoresvc.settingvalues import is_memory_url
from scoresvc.storage.database import Database, open_database
from tests.pgserver import psycopg_conninfo


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_memory_urls_are_recognised(url):
    assert is_memory_url(url)
    assert not is_memory_url("sqlite:////tmp/scores.db")


def test_every_connection_of_a_memory_engine_sees_the_same_data():
    database = open_database("sqlite://")
    with database.unit_of_work() as uow:
        uow.connection.execute(text("CREATE TABLE t (x INTEGER)"))
        uow.connection.execute(text("INSERT INTO t VALUES (1)"))
    with database.engine.connect() as other:
        assert other.execute(text("SELECT x FROM t")).scalar() == 1
    database.close()


def test_two_memory_engines_do_not_share_data():
    first = open_database("sqlite://")
    second = open_database("sqlite://")
    with first.unit_of_work() as uow:
        uow.connection.execute(text("CREATE TABLE t (x INTEGER)"))
    with second.unit_of_work() as uow:
        assert uow.connection.execute(text("SELECT name FROM sqlite_master")).all() == []
    first.close()
    second.close()


@pytest.mark.parametrize(("level", "number"), [("NORMAL", 1), ("FULL", 2)])
def test_a_file_database_uses_wal_and_the_chosen_synchronous_level(tmp_path, level, number):
    database = open_database(f"sqlite:///{tmp_path}/x.db", synchronous=level)
    with database.unit_of_work() as uow:
        assert uow.connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert uow.connection.execute(text("PRAGMA synchronous")).scalar() == number
    database.close()


def test_a_failed_unit_of_work_is_rolled_back(database):
    with database.unit_of_work() as uow:
        uow.connection.execute(text("CREATE TABLE t (x INTEGER)"))
    with pytest.raises(RuntimeError), database.unit_of_work() as uow:
        uow.connection.execute(text("INSERT INTO t VALUES (1)"))
        raise RuntimeError("fails half-way")
    with database.unit_of_work() as uow:
        assert uow.connection.execute(text("SELECT count(*) FROM t")).scalar() == 0


def test_a_transaction_holds_the_drivers_own_statements_too(database):
    # Repository.record_scores_reached writes through the driver's cursor inside transaction().
    with database.unit_of_work() as uow:
        uow.connection.execute(text("CREATE TABLE t (x INTEGER)"))
    with pytest.raises(RuntimeError), database.unit_of_work() as uow:
        uow.connection.connection.cursor().execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("fails half-way")
    with database.unit_of_work() as uow:
        assert uow.connection.execute(text("SELECT count(*) FROM t")).scalar() == 0


def test_a_database_error_becomes_database_unavailable():
    database = open_database("sqlite://")
    with pytest.raises(DatabaseUnavailable, match="no such table"), database.unit_of_work() as uow:
        uow.connection.execute(text("SELECT * FROM missing"))
    database.close()


def test_a_file_that_cannot_be_opened_is_database_unavailable(tmp_path):
    with pytest.raises(DatabaseUnavailable):
        open_database(f"sqlite:///{tmp_path}/no/such/dir/x.db")


def test_other_databases_are_refused_with_the_urls_to_use():
    with pytest.raises(ValueError, match=r"unsupported database 'mysql'.*postgresql"):
        open_database("mysql://localhost/scores")


def test_postgresql_is_reached_through_psycopg_3():
    with pytest.raises(ValueError, match="psycopg 3"):
        open_database("postgresql+psycopg2://localhost/scores")


def test_a_postgresql_server_that_does_not_answer_is_database_unavailable():
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(DatabaseUnavailable, match="cannot open the database"):
        open_database(f"postgresql+psycopg://scoresvc@127.0.0.1:{port}/scores")


def test_a_write_is_committed_for_every_other_connection_when_it_returns(shared_database_url):
    # Another process (here another Database) reads it at once.
    database = open_database(shared_database_url)
    with database.unit_of_work() as uow:
        uow.connection.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
    write(database, database.compile(text("INSERT INTO t (x) VALUES (:x)")), x=1)
    other = open_database(database.engine.url)
    with other.read() as cursor:
        assert cursor.execute("SELECT x FROM t").fetchall() == [(1,)]
    other.close()
    database.close()


def test_each_thread_has_its_own_postgresql_connection(postgresql_url):
    database = open_database(postgresql_url)
    backends = set()

    def note_backend() -> None:
        with database.read() as cursor:
            backends.add(cursor.execute("SELECT pg_backend_pid()").fetchone()[0])

    threads = [threading.Thread(target=note_backend) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    note_backend()
    note_backend()  # the same thread again: its own connection again
    assert len(backends) == 5
    database.close()


def end_this_threads_connection(database: Database, url: str) -> int:
    """Have the server end the calling thread's connection, as a restart would; its backend."""
    with database.read() as cursor:
        backend = cursor.execute("SELECT pg_backend_pid()").fetchone()[0]
    terminate_backend(url, backend)
    return backend


def terminate_backend(url: str, backend: int) -> None:
    """Have the server end one connection, as a restart would."""
    with psycopg.connect(psycopg_conninfo(url), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [backend])


def test_a_lost_postgresql_connection_fails_one_unit_of_work_then_is_replaced(postgresql_url):
    database = open_database(postgresql_url)
    # Lost in the middle of a unit of work: before it, the idle check would replace it first.
    with pytest.raises(DatabaseUnavailable), database.read() as cursor:
        backend = cursor.execute("SELECT pg_backend_pid()").fetchone()[0]
        terminate_backend(postgresql_url, backend)
        cursor.execute("SELECT 1")
    with database.read() as cursor:
        assert cursor.execute("SELECT pg_backend_pid()").fetchone()[0] != backend
    database.close()


def test_an_idle_postgresql_connection_is_checked_before_it_is_used(postgresql_url):
    # After a server restart every idle connection is dead: none may cost a request a 503.
    database = open_database(postgresql_url)
    backend = end_this_threads_connection(database, postgresql_url)
    time.sleep(0.05)  # idle longer than IDLE_CHECK_SECONDS
    with database.read() as cursor:
        assert cursor.execute("SELECT pg_backend_pid()").fetchone()[0] != backend
    database.close()


# --- deferred writes (a memory database: this process's alone) ---------------------------


def _table_of_numbers() -> Database:
    database = open_database("sqlite://")
    with database.unit_of_work() as uow:
        uow.connection.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
    return database


def _numbers(database: Database) -> list[int]:
    with database.unit_of_work() as uow:
        return [row[0] for row in uow.connection.execute(text("SELECT x FROM t ORDER BY x"))]


def write(database: Database, statement, **values) -> int | None:
    """A unit of one write: the rows it changed, or None where it is deferred."""
    with database.unit_of_work(one_statement=True) as uow:
        return uow.write(statement, **values)


def _written(database: Database, table: str = "t") -> list[int]:
    """What the table holds now, read on a connection of its own: no deferred write runs first."""
    other = database.engine.raw_connection()
    try:
        return [x for (x,) in other.cursor().execute(f"SELECT x FROM {table} ORDER BY x")]
    finally:
        other.close()


def _wait_until_written(database: Database, expected: list[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.OperationalError):  # the shared cache's table lock
            if _written(database) == expected:
                return
        time.sleep(0.001)
    raise AssertionError(f"{expected} not written after {timeout} s: {_written(database)}")


def test_a_deferred_write_is_seen_by_the_next_unit_of_work():
    database = _table_of_numbers()
    insert = database.compile(text("INSERT INTO t (x) VALUES (:x)"))
    for x in (3, 1, 2):
        write(database, insert, x=x)
    assert _numbers(database) == [1, 2, 3]  # at once, not after the writer thread's next turn
    database.close()


def test_deferred_writes_are_made_with_no_read_to_ask_for_them():
    database = _table_of_numbers()
    write(database, database.compile(text("INSERT INTO t (x) VALUES (:x)")), x=7)
    _wait_until_written(database, [7])
    database.close()


def test_a_failed_batch_is_logged_and_later_writes_still_land(caplog):
    database = _table_of_numbers()
    insert = database.compile(text("INSERT INTO t (x) VALUES (:x)"))
    write(database, insert, x=1)
    assert _numbers(database) == [1]
    write(database, insert, x=1)  # a key the table has: the database refuses it
    deadline = time.monotonic() + 10
    while "deferred writes lost" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.001)
    assert "1 deferred writes lost: UNIQUE constraint failed" in caplog.text
    write(database, insert, x=2)
    _wait_until_written(database, [1, 2])
    database.close()


def test_closing_runs_what_is_still_deferred():
    database = _table_of_numbers()
    insert = database.compile(text("INSERT INTO t (x) VALUES (:x)"))
    keeper = database.engine.raw_connection()  # keeps the memory database alive past close()
    write(database, insert, x=5)
    database.close()
    assert keeper.cursor().execute("SELECT x FROM t").fetchall() == [(5,)]
    keeper.close()


def test_writes_deferred_while_the_database_fails_wait_for_it(caplog):
    database = _table_of_numbers()
    insert_elsewhere = database.compile(text("INSERT INTO later (x) VALUES (:x)"))
    write(database, insert_elsewhere, x=1)  # no such table yet: the database fails
    with pytest.raises(DatabaseUnavailable):
        _numbers(database)  # a unit of work runs them first, and fails with them
    with pytest.raises(DatabaseUnavailable):
        _numbers(database)  # and again: the streak was said already
    assert caplog.text.count("1 deferred writes wait for the database") == 1
    other = database.engine.raw_connection()  # the database comes back
    other.cursor().execute("CREATE TABLE later (x INTEGER)")
    other.close()
    with database.unit_of_work() as uow:
        assert uow.connection.execute(text("SELECT x FROM later")).scalar() == 1
    database.close()
