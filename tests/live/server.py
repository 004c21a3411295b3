"""Real scoresvc servers for live tests: `python -m scoresvc` in a subprocess, over a socket."""

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.httpclient import request

_LISTENING = re.compile(r"serving on http://127\.0\.0\.1:(\d+)")
_WORKER_STARTED = re.compile(r"\[supervisor\] worker (\d+) started, pid (\d+)")


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
        self.log_path = log_path
        self.args = ["--host", "127.0.0.1", "--port", "0", *args]
        # The live tests' clients post far faster than the score post limit allows a user:
        # off, unless a test sets it (the limit's own tests do; an empty value is its default).
        self.env = {**os.environ, "SCORESVC_POST_LIMIT": "0", **(env or {})}
        self.log_through_pipe = log_through_pipe
        self.process: subprocess.Popen | None = None
        self.port = 0

    def start(self, timeout: float = 20.0) -> "LiveServer":
        """Start the process and wait until it listens."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scoresvc", *self.args],
            stdout=subprocess.PIPE if self.log_through_pipe else log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        if self.log_through_pipe:
            threading.Thread(target=_copy, args=(self.process.stdout, log), daemon=True).start()
        else:
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

    def worker_pids(self) -> dict[int, int]:
        """Each worker's number and the pid of its latest process, from the supervisor's log."""
        return {int(number): int(pid) for number, pid in _WORKER_STARTED.findall(self.log_text())}

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


def _copy(pipe, log) -> None:
    with pipe, log:
        for chunk in iter(lambda: pipe.read1(65536), b""):
            log.write(chunk)
            log.flush()


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
