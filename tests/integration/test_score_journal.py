"""The score journal: what a database file has not got yet, kept where a crash cannot lose it."""

import subprocess
import sys

import pytest
from webtest import TestApp

from scoresvc.application import create_app, score_journal_for
from scoresvc.serving import cli
from scoresvc.settings import Settings
from scoresvc.storage.database import Database, create_database_engine
from scoresvc.storage.migrate import upgrade_to_head
from scoresvc.storage.repository import Repository, ScoreEntry
from scoresvc.storage.scorejournal import (
    JOURNAL_SUFFIX,
    RECORD_BYTES,
    ScoreJournal,
    ScoreRecord,
)
from tests.integration.conftest import query


@pytest.fixture
def journal_path(tmp_path):
    return tmp_path / f"scores.db{JOURNAL_SUFFIX}"


def migrated(path) -> Database:
    database = Database(create_database_engine(f"sqlite:///{path}"))
    upgrade_to_head(database)
    return database


def test_records_come_back_oldest_first(journal_path):
    journal = ScoreJournal(journal_path, slots=8)
    for record in [
        ScoreRecord(1, 2, 30, 300),
        ScoreRecord(1, 3, 10, 100),
        ScoreRecord(2, 2, 20, 200),
    ]:
        journal.append(record)
    assert [r.reached_at for r in journal.records()] == [100, 200, 300]
    journal.close()
    reopened = ScoreJournal(journal_path, slots=8)  # what a restarted process finds
    assert reopened.records()[0] == ScoreRecord(1, 3, 10, 100)
    reopened.close()


def test_a_torn_record_is_skipped(journal_path):
    journal = ScoreJournal(journal_path, slots=8)
    journal.append(ScoreRecord(1, 1, 10, 100))
    journal.append(ScoreRecord(1, 2, 20, 200))
    journal.close()
    with journal_path.open("r+b") as raw:  # half of the second record from another write
        raw.seek(RECORD_BYTES + 4)
        raw.write(b"\xff\xff\xff\xff")
    reopened = ScoreJournal(journal_path, slots=8)
    assert reopened.records() == [ScoreRecord(1, 1, 10, 100)]
    reopened.close()


def test_a_journal_is_used_by_one_process_at_a_time(journal_path):
    journal = ScoreJournal(journal_path, slots=8)
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from scoresvc.storage.scorejournal import ScoreJournal; ScoreJournal({str(journal_path)!r})",
        ],
        capture_output=True,
        text=True,
    )
    assert other.returncode != 0 and "JournalInUse" in other.stderr
    journal.close()
    ScoreJournal(journal_path, slots=8).close()  # free again once closed


def test_a_second_server_on_one_database_file_refuses_to_start(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/scores.db"
    app = create_app(Settings(database_url=url))
    try:
        assert cli.main(["--database", url], serve=lambda app, settings: None) == 1
        assert "in use by another process" in capsys.readouterr().err
    finally:
        app.close()


def test_a_restart_writes_what_the_journal_holds(tmp_path, journal_path, clock):
    database = migrated(tmp_path / "scores.db")
    journal = ScoreJournal(journal_path, slots=8)
    # A run that was killed: its answered scores are in the journal, not in the file.
    journal.append(ScoreRecord(1, 7, 50, 1_000))
    journal.append(ScoreRecord(1, 8, 50, 2_000))
    journal.append(ScoreRecord(1, 7, 40, 3_000))  # not a best: changes nothing
    journal.append(ScoreRecord(1, 7, 50, 4_000))  # equal: 7 keeps its earlier time
    repository = Repository(database, clock=clock, journal=journal)
    assert repository.top_scores(1) == [ScoreEntry(7, 50), ScoreEntry(8, 50)]
    assert query(database, "SELECT reached_at FROM best_scores WHERE user_id = 7") == [(1_000,)]
    assert journal.records() == []  # cleared once the file has them
    journal.close()
    database.close()


def test_replaying_what_the_file_already_has_changes_nothing(tmp_path, journal_path, clock):
    database = migrated(tmp_path / "scores.db")
    journal = ScoreJournal(journal_path, slots=8)
    repository = Repository(database, clock=clock, journal=journal)
    repository.record_score(1, 7, 50)
    clock.advance(1)
    repository.record_score(1, 7, 90)
    database.run_deferred()
    before = query(database, "SELECT level_id, user_id, score, reached_at FROM best_scores")
    records = journal.records()
    journal.close()

    again = ScoreJournal(journal_path, slots=8)
    for record in records:  # as if the run had been killed after writing them
        again.append(record)
    Repository(database, clock=clock, journal=again)
    assert query(database, "SELECT level_id, user_id, score, reached_at FROM best_scores") == before
    again.close()
    database.close()


def test_a_full_journal_starts_again_and_loses_nothing(tmp_path, journal_path, clock):
    database = migrated(tmp_path / "scores.db")
    journal = ScoreJournal(journal_path, slots=1500)  # rewound every 500 or so writes
    repository = Repository(database, clock=clock, journal=journal)
    for n in range(1, 5001):
        repository.record_score(n % 7, n, n)
    assert journal.free_slots > 0
    expected = {(n % 7, n, n) for n in range(1, 5001)}
    assert set(query(database, "SELECT level_id, user_id, score FROM best_scores")) == expected
    journal.close()
    database.close()


def test_score_writes_are_journaled_unless_each_must_be_synced(tmp_path):
    def journal_for(url, synchronous):
        database = Database(create_database_engine(url, synchronous=synchronous))
        journal = score_journal_for(database, synchronous)
        database.close()
        if journal is not None:
            journal.close()
        return journal is not None

    assert journal_for(f"sqlite:///{tmp_path}/a.db", "NORMAL")
    assert journal_for(f"sqlite:///{tmp_path}/b.db", "OFF")
    assert not journal_for(f"sqlite:///{tmp_path}/c.db", "FULL")
    assert not journal_for(f"sqlite:///{tmp_path}/d.db", "EXTRA")
    assert not journal_for("sqlite://", "NORMAL")  # in memory: nothing to lose to a crash


def test_a_clean_stop_leaves_the_scores_in_the_file_and_the_journal_empty(tmp_path, journal_path):
    url = f"sqlite:///{tmp_path}/scores.db"
    client = TestApp(create_app(Settings(database_url=url)))
    key = client.get("/4711/login").text
    client.post(f"/3/score?sessionkey={key}", "1500")
    assert any(journal_path.read_bytes()[:RECORD_BYTES])  # answered, and in the journal
    client.app.close()
    reopened = ScoreJournal(journal_path)
    assert reopened.records() == []
    reopened.close()
    restarted = TestApp(create_app(Settings(database_url=url)))
    assert restarted.get("/3/highscorelist").text == "4711=1500"
    restarted.app.close()
