"""The applier's loop over a real SQLite file: what it says when the database fails, and after."""

import logging
import sqlite3
import threading
import time
from types import SimpleNamespace

from scoresvc.serving.applier import apply_until_stopped
from scoresvc.storage.database import open_database
from tests.integration.test_write_journal import add_one, count, path  # noqa: F401 (a fixture)


def rename_table(file: str, old: str, new: str) -> None:
    with sqlite3.connect(file) as side:
        side.execute(f"ALTER TABLE {old} RENAME TO {new}")
    side.close()


def test_a_streak_of_failures_is_said_once_and_its_end_too(path, caplog):  # noqa: F811
    database = open_database(f"sqlite:///{path}", background_apply=False)
    rename_table(path, "counter", "counter_away")  # what the journal's write updates is gone
    assert add_one(database) is None  # accepted, for the applier
    stop_signals = SimpleNamespace(received=False)
    loop = threading.Thread(target=apply_until_stopped, args=(database, stop_signals))
    with caplog.at_level(logging.INFO, logger="scoresvc"):
        loop.start()
        time.sleep(1.5)  # two tries, a second apart
        rename_table(path, "counter_away", "counter")
        deadline = time.monotonic() + 5
        while database.writes_waiting() and time.monotonic() < deadline:
            time.sleep(0.05)
        stop_signals.received = True
        loop.join(5)
    said = [record.getMessage() for record in caplog.records]
    assert len([line for line in said if line.startswith("cannot apply the write journal")]) == 1
    assert "no such table: counter" in next(line for line in said if "cannot apply" in line)
    assert said.count("the write journal is applied again") == 1
    # The journal says the driver's error once a streak too, not at every try.
    assert len([line for line in said if line.startswith("journaled writes wait")]) == 1
    assert count(database) == 1
    database.close()
