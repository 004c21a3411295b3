"""Fixtures shared by every tier, and tier markers taken from the folder a test lives in."""

from pathlib import Path

import pytest

from tests.clock import FakeClock

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


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
