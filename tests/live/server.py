"""Real scoresvc servers for live tests: `python -m scoresvc` in a subprocess, over a socket."""

import http.client
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.httpclient import request

_LISTENING = re.compile(r"serving on http://127\.0\.0\.1:(\d+)")


class LiveServer:
    """One scoresvc process on 127.0.0.1 and an ephemeral port, its log in a file."""

    def __init__(self, log_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self.args = ["--host", "127.0.0.1", "--port", "0", *args]
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None
        self.port = 0

    def start(self, timeout: float = 20.0) -> "LiveServer":
        """Start the process and wait until it listens."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scoresvc", *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = _LISTENING.search(self.log_path.read_bytes()[offset:].decode(errors="replace"))
            if found:
                self.port = int(found.group(1))
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"scoresvc exited at start:\n{self.log_text()}")
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"scoresvc did not start within {timeout}s:\n{self.log_text()}")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then wait for the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        """A new keep-alive HTTP/1.1 connection to the server."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | str | None = None) -> tuple[int, str]:
        """One request on its own connection: (status, body text)."""
        return request(self.port, method, path, body)

    def log_text(self) -> str:
        """The log so far. A running server writes a line a few ms after its request: the log
        is read once it has stopped growing, so it holds the line of every request answered."""
        if not self.log_path.exists():
            return ""
        if self.process is not None and self.process.poll() is None:
            _wait_until_unchanged(self.log_path, quiet_seconds=0.1, timeout=5)
        return self.log_path.read_text(errors="replace")


def _wait_until_unchanged(path: Path, *, quiet_seconds: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    size, unchanged_since = path.stat().st_size, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.01)
        now_size = path.stat().st_size
        if now_size != size:
            size, unchanged_since = now_size, time.monotonic()
        elif time.monotonic() - unchanged_since >= quiet_seconds:
            return
