"""A score journal left by a killed scoresvc 1.0: its scores reach the file at the next start."""

import struct
import zlib

from scoresvc.application import create_app
from scoresvc.settings import Settings
from scoresvc.storage.leftoverjournal import ScoreRecord, journal_path, leftover_records
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
