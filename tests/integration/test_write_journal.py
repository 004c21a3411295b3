"""The write journal beside a SQLite file: accepted writes outlive their process, apply once."""

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from scoresvc.leaderboards import Rules
from scoresvc.storage import writejournal
from scoresvc.storage.database import open_database
from scoresvc.storage.levelversions import VERSIONS_SUFFIX
from scoresvc.storage.migrate import upgrade_to_head
from scoresvc.storage.ownfiles import FileRefused
from scoresvc.storage.repository import Repository
from scoresvc.storage.sqlite import GATHER_SECONDS, SQLiteDatabase
from scoresvc.storage.writejournal import JOURNAL_SUFFIX, JournalRefused, WriteJournal

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def path(tmp_path) -> str:
    """A migrated SQLite file with a table of counters, closed."""
    path = str(tmp_path / "scores.db")
    database = open_database(f"sqlite:///{path}")
    upgrade_to_head(database)
    with database.unit_of_work() as uow:
        uow.connection.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)"))
        uow.connection.execute(text("INSERT INTO counter VALUES (1, 0)"))
    database.close()
    return path


def count(database) -> int:
    with database.read() as cursor:
        return cursor.execute("SELECT n FROM counter WHERE id = 1").fetchone()[0]


def add_one(database) -> int | None:
    """A write that is not idempotent: applied twice, it shows."""
    statement = database.compile(text("UPDATE counter SET n = n + :by WHERE id = 1"))
    with database.unit_of_work(one_statement=True) as uow:
        return uow.write(statement, by=1)


def never_apply_in_background(database: SQLiteDatabase) -> None:
    """Leave accepted writes in the journal until a read or unit of work applies them."""
    database._access._applier.close()


def test_a_write_is_accepted_into_the_journal_and_applied_before_the_next_read(path):
    database = open_database(f"sqlite:///{path}")
    never_apply_in_background(database)
    assert add_one(database) is None  # accepted, not yet made
    journal = WriteJournal(f"{path}{JOURNAL_SUFFIX}")
    assert journal  # another process sees it pending
    other = open_database(f"sqlite:///{path}")
    assert count(other) == 1  # and applies it before reading
    assert not journal
    assert count(database) == 1
    journal.close()
    other.close()
    database.close()


def test_a_database_whose_journal_another_process_applies_applies_it_only_before_reads(path):
    database = open_database(f"sqlite:///{path}", background_apply=False)
    assert database.writes_journaled
    assert add_one(database) is None
    time.sleep(20 * GATHER_SECONDS)  # many batches' time, had a thread of its own applied it
    assert database.writes_waiting()
    assert count(database) == 1
    assert not database.writes_waiting()
    database.close()


def test_a_failure_to_apply_in_one_process_has_every_process_write_directly(path):
    database = open_database(f"sqlite:///{path}")
    never_apply_in_background(database)
    assert add_one(database) is None  # waiting
    other = WriteJournal(f"{path}{JOURNAL_SUFFIX}")  # another process's view of the file
    other.failing = True  # its last try to apply what waits failed
    assert add_one(database) is not None  # made at once, not accepted
    assert not other.failing  # what waited was applied first, this time with success
    assert add_one(database) is None  # accepted again
    assert count(database) == 3
    other.close()
    database.close()


def test_the_journal_is_the_owners_alone_and_never_a_link(path, tmp_path):
    journal = Path(f"{path}{JOURNAL_SUFFIX}")
    os.umask(umask := os.umask(0o022))
    try:
        open_database(f"sqlite:///{path}").close()
    finally:
        os.umask(umask)
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    journal.unlink()
    target = tmp_path / "elsewhere"
    target.write_text("keep me\n")
    journal.symlink_to(target)
    with pytest.raises(FileRefused, match="is a symbolic link"):
        open_database(f"sqlite:///{path}")
    assert target.read_text() == "keep me\n"


def test_the_pages_written_have_their_blocks_before_and_the_rest_stays_a_hole(path):
    # A page of a hole written through a map on a full disk is a SIGBUS, not an error.
    database = open_database(f"sqlite:///{path}")
    never_apply_in_background(database)
    journal = Path(f"{path}{JOURNAL_SUFFIX}")
    header = writejournal._REGIONS_AT
    assert header <= journal.stat().st_blocks * 512 < header + writejournal._REGION_BYTES
    assert add_one(database) is None  # this process's region claimed
    allocated = journal.stat().st_blocks * 512
    assert header + writejournal._REGION_BYTES <= allocated < writejournal.SIZE // 4
    levels = Path(f"{path}{VERSIONS_SUFFIX}").stat()  # the level versions: all of it, at once
    assert levels.st_blocks * 512 >= levels.st_size
    database.close()


def test_a_file_that_is_not_a_journal_is_refused(path):
    Path(f"{path}{JOURNAL_SUFFIX}").write_bytes(b"something else entirely\n")
    with pytest.raises(JournalRefused, match="is not a scoresvc write journal"):
        open_database(f"sqlite:///{path}")


def test_a_journal_whose_making_was_cut_short_is_made_again(path):
    journal = Path(f"{path}{JOURNAL_SUFFIX}")
    journal.write_bytes(b"")
    os.truncate(journal, 4096)  # made and sized, killed before its magic was written
    database = open_database(f"sqlite:///{path}")
    add_one(database)
    assert count(database) == 1
    database.close()


def test_synchronous_full_commits_each_write_before_it_returns(path):
    post_then_die(path, 3)  # accepted into the journal while synchronous was NORMAL
    database = open_database(f"sqlite:///{path}", synchronous="FULL")
    assert count(database) == 5  # what was left is applied
    assert add_one(database) == 1  # made, and its rows counted, before returning
    assert not database._access.pending
    database.close()


def test_a_database_not_yet_migrated_is_written_directly(tmp_path):
    database = open_database(f"sqlite:///{tmp_path / 'old.db'}")
    with database.unit_of_work() as uow:
        uow.connection.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)"))
        uow.connection.execute(text("INSERT INTO counter VALUES (1, 0)"))
    assert add_one(database) == 1  # no write_journal table: no journal
    database.close()


CHILD = """
import os, signal, sys
from sqlalchemy import text
from scoresvc.storage.database import open_database
from scoresvc.storage.repository import Repository

database = open_database(sys.argv[1])
database._access._applier.close()  # nothing applied by this process: the journal keeps it all
repository = Repository(database)
for user_id in range(1, int(sys.argv[2]) + 1):
    repository.record_score(7, user_id, 1000 + user_id)
statement = database.compile(text("UPDATE counter SET n = n + :by WHERE id = 1"))
with database.unit_of_work(one_statement=True) as uow:
    uow.write(statement, by=5)
print("accepted", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def post_then_die(path: str, posts: int) -> None:
    """Score posts and one count accepted by another process, which is then killed (-9)."""
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), f"sqlite:///{path}", str(posts)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert child.stdout == "accepted\n"


def test_writes_accepted_survive_their_process_killed_and_are_applied_once(path):
    post_then_die(path, 300)
    post_then_die(path, 20)  # a new process takes the dead one's region, and goes on
    database = open_database(f"sqlite:///{path}")
    repository = Repository(database)
    top = repository.top_scores(7)
    assert [(entry.user_id, entry.score) for entry in top][:2] == [(300, 1300), (299, 1299)]
    with database.read() as cursor:
        assert cursor.execute("SELECT count(*) FROM best_scores").fetchone() == (300,)
    assert count(database) == 10
    database.close()
    # Opened again, nothing is applied twice.
    database = open_database(f"sqlite:///{path}")
    assert count(database) == 10
    database.close()


def test_an_applier_killed_between_its_commit_and_noting_it_applies_nothing_twice(path):
    database = open_database(f"sqlite:///{path}")
    never_apply_in_background(database)
    journal = database._access.pending
    assert isinstance(journal, WriteJournal)
    for _ in range(5):
        add_one(database)
    counts = journal._map[writejournal._APPLIED_AT : writejournal._APPLIED_AT + 8]
    assert count(database) == 5
    # As if the applier died after COMMIT and before writing the positions into the file.
    journal._map[writejournal._APPLIED_AT : writejournal._APPLIED_AT + 8] = counts
    assert journal  # pending, says the file
    assert count(database) == 5  # the database's positions say otherwise
    assert not journal
    database.close()


def test_a_full_region_is_applied_before_more_is_accepted(path, monkeypatch):
    monkeypatch.setattr(WriteJournal.__init__, "__kwdefaults__", {"accepting": True, "slots": 4})
    database = open_database(f"sqlite:///{path}")
    never_apply_in_background(database)
    for _ in range(4):
        assert add_one(database) is None
    assert add_one(database) == 1  # full: made directly, after the 4 before it
    for _ in range(9):  # around the ring twice more
        add_one(database)
    assert count(database) == 14
    database.close()


def test_a_record_the_database_refuses_is_passed_over_and_the_rest_applied(path, caplog):
    database = open_database(f"sqlite:///{path}")
    never_apply_in_background(database)
    insert = database.compile(text("INSERT INTO counter (id, n) VALUES (:id, 0)"))
    for id_ in (2, 1, 3):  # 1 is taken: refused when applied
        with database.unit_of_work(one_statement=True) as uow:
            assert uow.write(insert, id=id_) is None
    with caplog.at_level(logging.ERROR, logger="scoresvc"), database.read() as cursor:
        ids = [row[0] for row in cursor.execute("SELECT id FROM counter ORDER BY id")]
    assert ids == [1, 2, 3]
    assert "refused by the database is lost: UNIQUE constraint failed" in caplog.text
    assert not database._access.pending
    database.close()


def test_two_processes_read_each_others_writes_at_once(path):
    first = open_database(f"sqlite:///{path}")
    second = open_database(f"sqlite:///{path}")  # a region of its own
    for expected in range(1, 201):
        writer, reader = (first, second) if expected % 2 else (second, first)
        add_one(writer)
        assert count(reader) == expected
    first.close()
    second.close()


def test_a_forked_child_claims_regions_of_its_own_in_every_journal_open(path, tmp_path):
    # The child shares the parent's open files, and with them the locks on its regions: each
    # journal open in the parent is opened again in the child, which then claims its own.
    database = open_database(f"sqlite:///{path}")
    statement = database.compile(text("SELECT :x"))
    database.close()
    database_files = (path, tmp_path / "other.db")
    journals = [WriteJournal(f"{file}{JOURNAL_SUFFIX}") for file in database_files]
    for journal in journals:
        assert journal.add(statement, {"x": 1}, False)
    readable, writable = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            claimed = [journal.add(statement, {"x": 2}, False) for journal in journals]
            report: object = [claimed, [journal._region for journal in journals]]
        except BaseException as error:
            report = repr(error)  # for the parent to fail on
        finally:
            os.write(writable, json.dumps(report).encode())
            os._exit(0)
    os.close(writable)
    with os.fdopen(readable) as pipe:
        report = json.loads(pipe.read())
    os.waitpid(child, 0)
    assert isinstance(report, list), report
    claimed, regions = report
    assert claimed == [True, True]
    assert regions == [1, 1]  # the parent holds region 0 of each
    assert [journal._region for journal in journals] == [0, 0]
    for journal in journals:
        journal.close()


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("keep", ["best", "latest", "sum"])
@pytest.mark.parametrize("kind", ["memory", "file"])
def test_a_batch_of_posts_applied_at_once_keeps_what_posts_one_at_a_time_keep(
    tmp_path, kind, keep, order
):
    posts = [(user, score) for score in (40, 90, 10, 90, 0, 70) for user in (1, 2, 3)]
    posts += [(4, 2_000_000_000), (4, 2_000_000_000)]  # a sum past MAX_SCORE stops there

    def kept(batched: bool) -> list[tuple[int, int]]:
        url = "sqlite://" if kind == "memory" else f"sqlite:///{tmp_path}/{batched}.db"
        database = open_database(url)
        upgrade_to_head(database)
        never_apply_in_background(database)
        repository = Repository(database)
        with database.unit_of_work() as uow:
            repository.levels.change_rules(uow, 5, Rules(order=order, keep=keep))
        for user, score in posts:
            repository.record_score(5, user, score)
            if not batched:
                database.finish_writes()
        top = [(entry.user_id, entry.score) for entry in repository.top_scores(5)]
        database.close()
        return top

    one_at_a_time = kept(batched=False)
    assert kept(batched=True) == one_at_a_time
    assert len(one_at_a_time) == 4
