"""Compiled statements on the driver's cursor, in units of work and reads."""

import datetime
import sqlite3
import threading

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, Table, bindparam, insert, select, text

from scoresvc.errors import DatabaseUnavailable
from scoresvc.storage.database import Database, open_database
from scoresvc.storage.schema import best_scores
from tests.integration.conftest import query

_scratch = MetaData()
_numbers = Table("numbers", _scratch, Column("x", Integer, primary_key=True))
_moments = Table("moments", _scratch, Column("at", DateTime, primary_key=True))
_absent = Table("absent", _scratch, Column("x", Integer, primary_key=True))  # never created


@pytest.fixture
def numbers(tmp_path):
    """A file database (so that other connections see only what was committed) with a table."""
    database = open_database(f"sqlite:///{tmp_path}/numbers.db")
    with database.unit_of_work() as uow:
        uow.connection.execute(text("CREATE TABLE numbers (x INTEGER PRIMARY KEY)"))
    yield database
    database.close()


def committed(database: Database) -> list[int]:
    """The numbers another connection sees: only what was committed."""
    with sqlite3.connect(database.file_path) as other:
        return [x for (x,) in other.execute("SELECT x FROM numbers ORDER BY x")]


def test_a_unit_of_one_statement_is_committed_as_it_runs(numbers):
    add = numbers.compile(insert(_numbers).values(x=bindparam("x")))
    with numbers.unit_of_work(one_statement=True) as uow:
        uow.execute(add, x=1)
        assert committed(numbers) == [1]  # another connection sees it already
    assert committed(numbers) == [1]


def test_a_unit_of_one_statement_refuses_a_second(numbers):
    add = numbers.compile(insert(_numbers).values(x=bindparam("x")))
    one_statement = numbers.unit_of_work(one_statement=True)
    with pytest.raises(RuntimeError, match="use a transaction"), one_statement as uow:
        uow.execute(add, x=1)
        uow.execute(add, x=2)
    assert committed(numbers) == [1]  # its own transaction, done before the error


def test_an_error_in_a_unit_of_work_releases_the_lock(numbers):
    add = numbers.compile(insert(_numbers).values(x=bindparam("x")))
    with pytest.raises(RuntimeError), numbers.unit_of_work() as uow:
        uow.execute(add, x=1)
        raise RuntimeError("fails half-way")
    assert committed(numbers) == []  # rolled back
    with numbers.unit_of_work() as uow:
        uow.execute(add, x=3)
    assert committed(numbers) == [3]


def test_a_driver_error_becomes_database_unavailable_and_releases_the_lock(numbers):
    add = numbers.compile(insert(_numbers).values(x=bindparam("x")))
    missing = numbers.compile(select(_absent.c.x))
    with pytest.raises(DatabaseUnavailable, match="no such table"), numbers.read() as cursor:
        missing.execute(cursor)
    with pytest.raises(DatabaseUnavailable, match="no such table"), numbers.unit_of_work() as uow:
        uow.execute(add, x=4)
        uow.execute(missing)
    assert committed(numbers) == []  # the whole unit of work
    with numbers.unit_of_work(one_statement=True) as uow:
        uow.execute(add, x=4)
    assert committed(numbers) == [4]


def test_changes_are_published_after_the_commit_and_never_after_a_rollback(numbers):
    add = numbers.compile(insert(_numbers).values(x=bindparam("x")))
    heard = []

    def listener(changes) -> None:
        heard.append((list(changes.levels), changes.bans, changes.new_bests, committed(numbers)))

    numbers.subscribe(listener)
    with numbers.unit_of_work() as uow:
        uow.write(add, new_bests=True, x=1)
        uow.level_changed(7)
        uow.bans_changed()
    with pytest.raises(RuntimeError), numbers.unit_of_work() as uow:
        uow.write(add, new_bests=True, x=2)
        uow.level_changed(8)
        raise RuntimeError("fails half-way")
    with numbers.unit_of_work(one_statement=True) as uow:
        uow.execute(add, x=3)  # no change recorded: nobody hears of it
    assert heard == [([7], True, 1, [1])]


def test_a_transaction_still_stands_or_falls_as_a_whole(numbers):
    # SQLAlchemy's transactions begin with an explicit BEGIN, the driver's own being off.
    with pytest.raises(RuntimeError), numbers.unit_of_work() as uow:
        uow.connection.execute(text("INSERT INTO numbers VALUES (1)"))
        raise RuntimeError("fails half-way")
    with numbers.unit_of_work() as uow:
        uow.connection.execute(text("INSERT INTO numbers VALUES (2)"))
        assert committed(numbers) == []  # not before the commit
    assert committed(numbers) == [2]


def test_values_fixed_in_a_statement_are_sent_with_the_given_ones(database):
    with database.unit_of_work() as uow:
        uow.connection.execute(
            best_scores.insert(),
            [{"level_id": 1, "user_id": u, "score": u, "reached_at": u} for u in range(20)],
        )
    top_three = database.compile(
        select(best_scores.c.user_id)
        .where(best_scores.c.level_id == bindparam("level_id"))
        .order_by(best_scores.c.score.desc())
        .limit(3)
    )
    with database.read() as cursor:
        assert top_three.execute(cursor, level_id=1).fetchall() == [(19,), (18,), (17,)]
        assert top_three.execute(cursor, level_id=2).fetchall() == []


def test_a_statement_whose_types_convert_values_is_refused(numbers):
    # The driver gets values as given: SQLite's DateTime needs SQLAlchemy to convert them.
    with pytest.raises(ValueError, match="type processing"):
        numbers.compile(select(_moments.c.at))
    with pytest.raises(ValueError, match="type processing"):
        numbers.compile(insert(_moments).values(at=datetime.datetime(2026, 1, 1)))


def test_units_of_one_statement_and_transactions_take_turns(database):
    # Both kinds share one lock: many threads mixing them never fail and lose nothing.
    add = database.compile(
        best_scores.insert().values(
            level_id=bindparam("level_id"), user_id=bindparam("user_id"), score=0, reached_at=0
        )
    )
    errors: list[BaseException] = []

    def writer(level_id: int) -> None:
        try:
            for user_id in range(100):
                if user_id % 2:
                    with database.unit_of_work(one_statement=True) as uow:
                        uow.execute(add, level_id=level_id, user_id=user_id)
                else:
                    with database.unit_of_work() as uow:
                        uow.connection.execute(
                            text("INSERT INTO best_scores VALUES (:level_id, :user_id, 0, 0)"),
                            {"level_id": level_id, "user_id": user_id},
                        )
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(level_id,)) for level_id in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert query(database, "SELECT count(*) FROM best_scores") == [(800,)]
