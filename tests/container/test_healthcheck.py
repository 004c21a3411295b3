"""The image's HEALTHCHECK command, run on this host against stand-in servers (no Docker)."""

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.container.docker_engine import ROOT

pytestmark = pytest.mark.container


def healthcheck_command() -> list[str]:
    """The exec-form command of the Dockerfile's HEALTHCHECK instruction."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    instruction = next(line for line in text.splitlines() if line.startswith("HEALTHCHECK "))
    return json.loads(instruction.split(" CMD ", 1)[1])


def run_healthcheck(port: int) -> int:
    """The command's exit status with SCORESVC_PORT=port, using this host's Python."""
    program, *args = healthcheck_command()
    assert program == "python"
    env = {**os.environ, "SCORESVC_PORT": str(port)}
    return subprocess.run([sys.executable, *args], env=env, timeout=30, check=False).returncode


@contextmanager
def health_server(status: int) -> Iterator[int]:
    """A loopback server whose /healthz answers status; yields its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/healthz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def test_healthy_when_healthz_answers_200():
    with health_server(200) as port:
        assert run_healthcheck(port) == 0


def test_unhealthy_when_the_database_does_not_answer():
    with health_server(503) as port:
        assert run_healthcheck(port) != 0


def test_unhealthy_when_nothing_listens():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        assert run_healthcheck(port) != 0
