"""The database's files are the service's alone, and no player's query holds the database long."""

import os
import stat
import time
from collections.abc import Iterator

import pytest

from scoresvc.errors import DatabaseUnavailable
from scoresvc.serving.supervisor import database_for_workers
from scoresvc.settings import Settings
from scoresvc.storage.database import open_database
from scoresvc.storage.migrate import upgrade_to_head
from scoresvc.storage.repository import Repository
from scoresvc.storage.sqlite import FILES_BESIDE

# A query that would run for ever: counting without end.
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
ENDLESS_POSTGRESQL = "SELECT pg_sleep(30)"


@pytest.fixture
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def write_and_keep_open(url: str) -> Repository:
    database = open_database(url)
    upgrade_to_head(database)
    repository = Repository(database)
    repository.record_score(1, 1, 1)  # the WAL and shared memory exist while it is open
    return repository


def test_a_file_database_and_everything_beside_it_are_owner_only(tmp_path, usual_umask):
    path = f"{tmp_path}/scores.db"
    repository = write_and_keep_open(f"sqlite:///{path}")
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-levels"):
        assert mode(name) == 0o600, name
    repository.database.close()


def test_the_workers_memory_database_is_owner_only(usual_umask):
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm on this system")
    with database_for_workers(Settings(workers=2)) as shared:
        directory = shared.directory
        assert mode(directory) == 0o700
        repository = write_and_keep_open(shared.settings.database_url)
        for name in os.listdir(directory):
            assert mode(f"{directory}/{name}") == 0o600, name
        repository.database.close()
    assert not os.path.exists(directory)


@pytest.mark.parametrize("suffix", ["", *FILES_BESIDE])
def test_a_symbolic_link_in_place_of_a_database_file_is_refused(tmp_path, suffix):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    path = tmp_path / "scores.db"
    (tmp_path / f"scores.db{suffix}").symlink_to(target)
    with pytest.raises(DatabaseUnavailable, match="symbolic link"):
        open_database(f"sqlite:///{path}")
    assert target.read_bytes() == b""


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_a_players_query_is_interrupted_past_the_query_timeout(kind, tmp_path):
    url = "sqlite://" if kind == "memory" else f"sqlite:///{tmp_path}/scores.db"
    database = open_database(url, query_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match=r"ran past 0\.2 s"), database.read() as cursor:
        cursor.execute(ENDLESS).fetchone()
    assert time.monotonic() - started < 2
    with database.read() as cursor:  # the next one runs as usual
        assert cursor.execute("SELECT 1").fetchone() == (1,)
    database.close()


def test_a_transaction_is_not_bounded_by_the_query_timeout(tmp_path):
    # The admin API's changes and the migrations run to the end.
    database = open_database(f"sqlite:///{tmp_path}/scores.db", query_timeout=0.05)
    slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
    with database.unit_of_work() as uow:
        started = time.monotonic()
        uow.connection.exec_driver_sql(slow + "SELECT count(*) FROM c").fetchone()
        assert time.monotonic() - started > 0.05  # longer than the bound, and not interrupted
    database.close()


def test_a_players_query_on_postgresql_is_cancelled_past_the_query_timeout(postgresql_url):
    database = open_database(postgresql_url, query_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="statement timeout"), database.read() as cursor:
        cursor.execute(ENDLESS_POSTGRESQL)
    assert time.monotonic() - started < 5
    with database.unit_of_work() as uow:  # not bounded, on whichever pooled connection
        uow.connection.exec_driver_sql("SELECT pg_sleep(0.3)")
    with database.read() as cursor:
        assert cursor.execute("SELECT 1").fetchone() == (1,)
    database.close()
