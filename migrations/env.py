"""Alembic's entry point: runs migrations on the service's connection, or on the configured URL."""

from logging.config import fileConfig

from alembic import context

from scoresvc.settings import Settings
from scoresvc.storage.database import open_database
from scoresvc.storage.schema import metadata

config = context.config


def run_migrations(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    # Called by the service (scoresvc.storage.migrate): use its connection, inside its transaction.
    run_migrations(connection)
else:
    # Called as `alembic upgrade head`: open the database the service would open.
    if config.config_file_name is not None:
        fileConfig(config.config_file_name)
    settings = Settings.from_env()
    database = open_database(settings.database_url, synchronous=settings.sqlite_synchronous)
    try:
        with database.unit_of_work() as uow:
            uow.lock_schema()
            run_migrations(uow.connection)
    finally:
        database.close()
