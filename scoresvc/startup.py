"""Start-up: a database made ready to serve, once, before any request.

Every way of running the service comes through here: `scoresvc` with one process, the
supervisor before it forks its workers, and `waitress-serve scoresvc:app`. Making ready is
bringing the schema to the newest migration, noting when seasons began, writing the scores a
killed scoresvc 1.0 left in its journal, and making the signing secret where none is
configured; each is safe to repeat,
and servers starting together on one database do it one after another.
"""

import logging
import time
from collections.abc import Callable

from scoresvc.sessions import signing_secret
from scoresvc.settings import Settings
from scoresvc.storage.database import Database, open_database
from scoresvc.storage.leftoverjournal import leftover_records, remove_journal
from scoresvc.storage.migrate import upgrade_to_head
from scoresvc.storage.repository import Repository

logger = logging.getLogger("scoresvc")


def open_ready_database(settings: Settings, *, clock: Callable[[], float] = time.time) -> Database:
    """settings' database, opened and made ready to serve (see prepare)."""
    database = open_database(
        settings.database_url,
        synchronous=settings.sqlite_synchronous,
        clock=clock,
        query_timeout=settings.query_timeout,
    )
    try:
        prepare(database, settings)
    except BaseException:
        database.close()
        raise
    return database


def prepare(database: Database, settings: Settings) -> None:
    """Migrate database, write a 1.0 journal left beside it, make the signing secret."""
    repository = migrate(database)
    write_leftover_journal(database, repository)
    if not settings.store_tokens:
        signing_secret(settings.secret, repository)  # made and kept, if none is configured


def migrate(database: Database) -> Repository:
    """Bring database to the newest schema (`scoresvc migrate` does only this); its repository."""
    upgrade_to_head(database)
    repository = Repository(database)
    repository.begin_seasons()
    return repository


def write_leftover_journal(database: Database, repository: Repository) -> None:
    """Write the scores a killed scoresvc 1.0 left in its journal into the file, then drop it."""
    path = database.file_path
    if path is None:
        return  # only a SQLite file can have one
    records = leftover_records(path)
    if records:
        repository.record_scores_reached(records)
        logger.info("wrote %d scores left in %s's score journal", len(records), path)
    remove_journal(path)
