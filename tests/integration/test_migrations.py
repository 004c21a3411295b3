"""The Alembic migrations: they build exactly the schema the repository uses."""

import os
import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from scoresvc import create_app
from scoresvc.leaderboards import DEFAULT_RULES
from scoresvc.settings import Settings
from scoresvc.storage.database import Database, open_database
from scoresvc.storage.migrate import alembic_config, upgrade_to_head
from scoresvc.storage.moderation import Moderation
from scoresvc.storage.repository import Repository, ScoreEntry
from scoresvc.storage.schema import metadata
from tests.integration.conftest import query

ROOT = Path(__file__).resolve().parents[2]


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def table_names(database: Database) -> set[str]:
    with database.unit_of_work() as uow:
        return set(inspect(uow.connection).get_table_names())


def test_the_migrated_schema_is_the_schema_the_repository_uses(database):
    with database.unit_of_work() as uow:
        differences = compare_metadata(MigrationContext.configure(uow.connection), metadata)
    assert differences == []


def test_the_migrated_database_is_at_the_newest_revision(database):
    assert query(database, "SELECT version_num FROM alembic_version") == [(head_revision(),)]


def test_the_ranking_index_orders_scores_descending(database):
    with database.unit_of_work() as uow:
        indexes = inspect(uow.connection).get_indexes("best_scores")
    (ranking,) = [index for index in indexes if index["name"] == "ix_best_scores_ranking"]
    assert ranking["column_names"] == ["level_id", "score", "reached_at", "user_id"]
    if database.engine.dialect.name == "sqlite":  # whose reflection does not give the order
        (sql,) = query(database, "SELECT sql FROM sqlite_master WHERE name = :n", n=ranking["name"])
        assert "score DESC" in sql[0]
    else:
        assert ranking["column_sorting"] == {"score": ("desc",)}


def test_migrations_go_down_to_nothing_and_up_again(database):
    with database.unit_of_work() as uow:
        command.downgrade(alembic_config(uow.connection), "base")
    assert table_names(database) == {"alembic_version"}
    upgrade_to_head(database)
    assert {"best_scores", "session_keys", "service_settings"} <= table_names(database)


def test_upgrading_an_up_to_date_database_keeps_its_data(database):
    with database.unit_of_work() as uow:
        uow.connection.execute(text("INSERT INTO best_scores VALUES (1, 2, 3, 4)"))
    upgrade_to_head(database)
    assert query(database, "SELECT score FROM best_scores") == [(3,)]


def test_starting_the_service_migrates_a_new_file_database(tmp_path):
    url = f"sqlite:///{tmp_path}/scores.db"
    create_app(Settings(database_url=url)).close()
    database = open_database(url)
    assert {"best_scores", "session_keys", "service_settings"} <= table_names(database)
    database.close()


def test_alembic_upgrade_head_from_the_project_root_uses_the_configured_url(tmp_path):
    url = f"sqlite:///{tmp_path}/scores.db"
    env = {**os.environ, "SCORESVC_DATABASE_URL": url}
    alembic = Path(sys.executable).with_name("alembic")
    result = subprocess.run(
        [str(alembic), "upgrade", "head"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    database = open_database(url)
    assert query(database, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
    database.close()


def test_scores_from_before_seasons_become_season_1_of_their_level_with_default_rules(
    database, clock
):
    # A database as 1.x left it: ranked scores and a banned player's hidden one.
    with database.unit_of_work() as uow:
        command.downgrade(alembic_config(uow.connection), "0004")
    with database.unit_of_work() as uow:
        uow.connection.execute(
            text(
                "INSERT INTO best_scores (level_id, user_id, score, reached_at) "
                "VALUES (7, 1, 300, 10), (7, 2, 100, 11), (2147483647, 3, 5, 12)"
            )
        )
        uow.connection.execute(text("INSERT INTO hidden_scores VALUES (4, 7, 200, 13)"))
        uow.connection.execute(text("INSERT INTO banned_users VALUES (4, 14)"))
    upgrade_to_head(database)

    repository = Repository(database)
    moderation = Moderation(database, repository.levels, clock=clock)
    assert repository.top_scores(7) == [ScoreEntry(1, 300), ScoreEntry(2, 100)]
    assert repository.top_scores(7, season=1) == repository.top_scores(7)
    assert repository.top_scores(2147483647) == [ScoreEntry(3, 5)]
    assert moderation.rules(7).rules == DEFAULT_RULES
    assert moderation.rules(7).season.number == 1
    moderation.unban(4)  # the hidden score comes back into season 1, where it ranks
    assert [entry.user_id for entry in repository.top_scores(7)] == [1, 4, 2]
    # A new season starts empty, and season 1 keeps its places.
    moderation.start_season(7)
    assert repository.top_scores(7) == []
    assert [entry.user_id for entry in repository.top_scores(7, season=1)] == [1, 4, 2]
