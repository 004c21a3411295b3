"""Fixtures shared by every tier, and tier markers taken from the folder a test lives in."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clock import FakeClock
from tests.pgserver import PostgresServer

TIERS = ("unit", "integration", "functional", "live")
SLOW_TIERS = ("live", "container")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `pytest -m unit` (or integration, functional, live) runs one tier.
    for item in items:
        tier = Path(item.path).parent.name
        if tier in TIERS:
            item.add_marker(tier)
        if tier in SLOW_TIERS:
            item.add_marker("slow")  # `pytest -m "not slow"`: the quick run while developing
        # postgresql_url asks for the server too, so this marks the users of either fixture.
        if "postgresql_server" in getattr(item, "fixturenames", ()):
            item.add_marker("postgresql")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole run, started when the first test asks for it."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgresql_url(postgresql_server: PostgresServer) -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database on the shared server, dropped afterwards."""
    url = postgresql_server.create_database()
    yield url
    postgresql_server.drop_database(url)
