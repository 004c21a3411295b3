"""A score journal left by a killed scoresvc 1.0: its scores reach the file at the next start."""

import os
import struct
import threading
import zlib

import pytest

from scoresvc.application import create_app
from scoresvc.serving import cli
from scoresvc.settings import Settings
from scoresvc.storage import leftoverjournal
from scoresvc.storage.leftoverjournal import (
    JournalRefused,
    ScoreRecord,
    journal_path,
    leftover_records,
)
from tests.integration.conftest import query

_RECORD = struct.Struct("<IIIQI")  # as 1.0 wrote them: level, user, score, reached_at, CRC-32


def write_journal(path, records: list[ScoreRecord], *, slots: int = 8) -> None:
    """A journal as 1.0 left it: fixed slots, the unused ones zero."""
    data = bytearray(slots * _RECORD.size)
    for slot, record in enumerate(records):
        crc = zlib.crc32(struct.pack("<IIIQ", *record))
        _RECORD.pack_into(data, slot * _RECORD.size, *record, crc)
    path.write_bytes(bytes(data))


def test_whole_records_come_back_oldest_first_and_a_torn_one_is_skipped(tmp_path):
    database_path = tmp_path / "scores.db"
    write_journal(
        journal_path(database_path),
        [ScoreRecord(1, 1, 10, 300), ScoreRecord(1, 2, 20, 100), ScoreRecord(1, 3, 30, 200)],
    )
    with journal_path(database_path).open("r+b") as raw:  # the third record torn by a kill
        raw.seek(2 * _RECORD.size + 8)
        raw.write(b"\xff\xff")
    assert [r.reached_at for r in leftover_records(database_path)] == [100, 300]
    assert leftover_records(tmp_path / "none.db") == []


def test_the_first_start_writes_the_journal_into_the_file_and_removes_it(tmp_path):
    database_path = tmp_path / "scores.db"
    settings = Settings(database_url=f"sqlite:///{database_path}")
    create_app(settings).close()  # a 1.0 database: the tables exist
    write_journal(
        journal_path(database_path),
        [
            ScoreRecord(1, 7, 50, 1_000),
            ScoreRecord(1, 8, 50, 2_000),
            ScoreRecord(1, 7, 40, 3_000),  # not a best: changes nothing
            ScoreRecord(1, 7, 50, 4_000),  # equal: 7 keeps its earlier time
        ],
    )
    app = create_app(settings)
    assert not journal_path(database_path).exists()
    rows = query(app_database(app), "SELECT user_id, score, reached_at FROM best_scores")
    assert sorted(rows) == [(7, 50, 1_000), (8, 50, 2_000)]
    app.close()
    create_app(settings).close()  # and a later start finds nothing to write


def app_database(app):
    """The database behind an app's views."""
    (login,) = [route for route in app.router.routes if route.pattern == "<int:userid>/login"]
    return login.view.__self__.repository.database


PLANTED = [ScoreRecord(1, 666, 2147483647, 1_000)]


def owned_by_another_user(path, monkeypatch) -> None:
    """path made another user's: given away where the test runs as root, else we pose as one."""
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)  # nobody
    else:
        someone_else = os.geteuid() + 1
        monkeypatch.setattr(leftoverjournal.os, "geteuid", lambda: someone_else)


def test_a_journal_of_another_user_is_refused(tmp_path, monkeypatch):
    database_path = tmp_path / "scores.db"
    write_journal(journal_path(database_path), PLANTED)
    owned_by_another_user(journal_path(database_path), monkeypatch)
    with pytest.raises(JournalRefused, match=r"belongs to user \d+, not to the user scoresvc runs"):
        leftover_records(database_path)


def test_a_symbolic_link_in_the_journals_place_is_refused(tmp_path):
    database_path = tmp_path / "scores.db"
    planted = tmp_path / "elsewhere"
    write_journal(planted, PLANTED)
    journal_path(database_path).symlink_to(planted)
    with pytest.raises(JournalRefused, match=r"is a symbolic link: if scoresvc 1\.0 left it, put"):
        leftover_records(database_path)


def test_a_journal_every_user_may_write_is_refused(tmp_path):
    database_path = tmp_path / "scores.db"
    write_journal(journal_path(database_path), PLANTED)
    journal_path(database_path).chmod(0o666)
    with pytest.raises(JournalRefused, match="may be written by every user"):
        leftover_records(database_path)


def test_a_fifo_in_the_journals_place_is_refused_without_waiting_for_a_writer(tmp_path):
    database_path = tmp_path / "scores.db"
    os.mkfifo(journal_path(database_path), 0o600)
    refused = []
    reader = threading.Thread(target=lambda: refused.append(refusal(database_path)), daemon=True)
    reader.start()
    reader.join(timeout=5)
    assert refused and "is not a regular file" in str(refused[0])


def refusal(database_path) -> Exception | None:
    try:
        leftover_records(database_path)
    except JournalRefused as error:
        return error
    return None


@pytest.mark.parametrize("planting", ["another-users", "symbolic-link"])
def test_the_service_will_not_start_on_a_planted_journal_and_records_nothing(
    tmp_path, monkeypatch, capsys, planting
):
    database_path = tmp_path / "scores.db"
    url = f"sqlite:///{database_path}"
    create_app(Settings(database_url=url)).close()
    if planting == "symbolic-link":
        write_journal(tmp_path / "elsewhere", PLANTED)
        journal_path(database_path).symlink_to(tmp_path / "elsewhere")
    else:
        write_journal(journal_path(database_path), PLANTED)
        owned_by_another_user(journal_path(database_path), monkeypatch)
    assert cli.main(["--database", url], serve=lambda app, settings: None) == 1
    error = capsys.readouterr().err
    assert error.startswith("scoresvc: cannot start: the 1.0 score journal ")
    assert error.count("\n") == 1  # one line, no trace
    assert os.path.lexists(journal_path(database_path))  # left for its owner to judge
    monkeypatch.undo()
    journal_path(database_path).unlink()
    app = create_app(Settings(database_url=url))
    assert query(app_database(app), "SELECT user_id FROM best_scores") == []
    app.close()
