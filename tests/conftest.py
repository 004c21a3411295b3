"""Fixtures shared by every tier, and tier markers taken from the folder a test lives in."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clock import FakeClock
from tests.needs import REQUIRE_ALL_VARIABLE, everything_required
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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    # In CI (SCORESVC_TEST_REQUIRE_ALL=1) a skip, whatever its reason, is a failure: every
    # test must run there. An expected failure (xfail) stays what it is.
    report = yield
    if report.skipped and everything_required() and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under {REQUIRE_ALL_VARIABLE}=1: {reason}"
    return report


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
