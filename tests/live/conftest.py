"""Live tests start real servers; every one they start is stopped at the end of its test."""

from collections.abc import Callable, Iterator

import pytest

from tests.live.server import LiveServer


@pytest.fixture
def start_server(tmp_path) -> Iterator[Callable[..., LiveServer]]:
    """start_server(*args, env=None): a started LiveServer, logging to tmp_path/server.log."""
    servers: list[LiveServer] = []

    def start(*args: str, env: dict[str, str] | None = None) -> LiveServer:
        server = LiveServer(tmp_path / "server.log", *args, env=env).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()
