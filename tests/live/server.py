"""Real scoresvc servers for live tests: `python -m scoresvc` in a subprocess, over a socket."""

import http.client
import os
import re
import subprocess
import time
from pathlib import Path

from scoresvc.serving.launcher import ServerProcess, scoresvc_command
from tests.httpclient import request

_WORKER_STARTED = re.compile(r"\[supervisor\] worker (\d+) started, pid (\d+)")
_STARTED = re.compile(r"\[supervisor\] (?:worker \d+|applier) started, pid (\d+)")


class LiveServer:
    """One scoresvc process on 127.0.0.1 and an ephemeral port, its log in a file.

    With log_through_pipe, its stderr is a pipe that the test copies into the file, as a
    process manager's would be (the case where lines of several processes could mix).
    """

    def __init__(
        self,
        log_path: Path,
        *args: str,
        env: dict[str, str] | None = None,
        log_through_pipe: bool = False,
    ) -> None:
        # The live tests' clients post far faster than the score post limit allows a user:
        # off, unless a test sets it (the limit's own tests do; an empty value is its default).
        self._server = ServerProcess(
            scoresvc_command(*args),
            log_path,
            env={**os.environ, "SCORESVC_POST_LIMIT": "0", **(env or {})},
            log_through_pipe=log_through_pipe,
        )
        self.log_path = log_path

    @property
    def process(self) -> subprocess.Popen | None:
        """The server's process, once started."""
        return self._server.process

    @process.setter
    def process(self, process: subprocess.Popen) -> None:
        self._server.process = process  # a server started elsewhere (waitress-serve), adopted

    @property
    def port(self) -> int:
        """The port it listens on, once started."""
        return self._server.port

    @port.setter
    def port(self, port: int) -> None:
        self._server.port = port

    def start(self, timeout: float = 20.0) -> "LiveServer":
        """Start the process and wait until it listens."""
        try:
            self._server.start(timeout)
        except RuntimeError as error:
            raise RuntimeError(f"{str(error).splitlines()[0]}\n{self.log_text()}") from None
        return self

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then wait for the exit status."""
        return self._server.stop(timeout)

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        self._server.kill()

    def connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        """A new keep-alive HTTP/1.1 connection to the server."""
        return self._server.connection(timeout)

    def request(self, method: str, path: str, body: bytes | str | None = None) -> tuple[int, str]:
        """One request on its own connection: (status, body text)."""
        return request(self.port, method, path, body)

    def worker_pids(self) -> dict[int, int]:
        """Each worker's number and the pid of its latest process, from the supervisor's log."""
        return {int(number): int(pid) for number, pid in _WORKER_STARTED.findall(self.log_text())}

    def started_pids(self) -> list[int]:
        """Every process the supervisor started, workers and the applier, from its log."""
        return [int(pid) for pid in _STARTED.findall(self.log_text())]

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match:
        """The first match of pattern in the log, waiting up to timeout for it to appear."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.log_path.read_text(errors="replace"))
            if found or time.monotonic() > deadline:
                assert found, f"no {pattern!r} in the log within {timeout}s:\n{self.log_text()}"
                return found
            time.sleep(0.01)

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
