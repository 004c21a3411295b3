"""Bringing a database to the newest schema with the Alembic migrations in migrations/."""

from importlib.resources import files

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from scoresvc.storage.database import Database


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for the packaged migrations, optionally bound to a connection."""
    config = Config()
    config.set_main_option("script_location", str(files("scoresvc.migrations")))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade_to_head(database: Database) -> None:
    """Apply every migration the database has not had yet."""
    with database.unit_of_work() as uow:
        uow.lock_schema()  # servers starting together migrate one after another
        command.upgrade(alembic_config(uow.connection), "head")
