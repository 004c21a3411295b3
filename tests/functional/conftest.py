"""Functional tests drive the whole WSGI app with WebTest, over a fresh in-memory database."""

from collections.abc import Callable, Iterator

import pytest
from webtest import TestApp

from scoresvc import create_app
from scoresvc.settings import Settings


@pytest.fixture
def make_client(clock) -> Iterator[Callable[..., TestApp]]:
    """make_client(**settings): a linting WebTest client of a new app on the fake clock."""
    apps = []

    def make(**settings) -> TestApp:
        app = create_app(Settings(**settings), clock=clock)
        apps.append(app)
        return TestApp(app, lint=True)

    yield make
    for app in apps:
        app.close()


@pytest.fixture(params=[False, True], ids=["signed-keys", "stored-keys"])
def client(request, make_client) -> TestApp:
    """A client of an app in each session mode."""
    return make_client(store_tokens=request.param)


def login(client: TestApp, user_id: int) -> str:
    """Log user_id in and return the session key."""
    return client.get(f"/{user_id}/login", status=200).text


def post_score(client: TestApp, level_id: int, key: str, score: str, status: int = 200):
    """POST a score body with the key; the response must have the given status."""
    return client.post(f"/{level_id}/score?sessionkey={key}", score, status=status)
