"""Server processes for the HTTP runs: the ceiling and scoresvc, each on an ephemeral port."""

import http.client
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
THREADS = 4  # waitress's worker threads, the same for every server (scoresvc's default)
_LISTENING = re.compile(r"serving on http://127\.0\.0\.1:(\d+)")


class Server:
    """A server process on 127.0.0.1; its stderr (the log) goes to a file, as under a supervisor."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None
        self.port = 0

    @classmethod
    def ceiling(cls, name: str, log_path: Path, get_body_bytes: int = 0) -> "Server":
        """waitress with the do-nothing app, answering GETs with get_body_bytes bytes."""
        argv = [sys.executable, "-m", "bench.ceiling", "--port", "0", "--threads", str(THREADS)]
        argv += ["--get-body-bytes", str(get_body_bytes)]
        return cls(name, argv, log_path)

    @classmethod
    def scoresvc(cls, name: str, log_path: Path, env: dict, database_url: str = "") -> "Server":
        """scoresvc as its users start it, with the given database (in memory by default)."""
        argv = [sys.executable, "-m", "scoresvc", "--host", "127.0.0.1", "--port", "0"]
        argv += ["--threads", str(THREADS)]
        if database_url:
            argv += ["--database", database_url]
        return cls(name, argv, log_path, env)

    def start(self, timeout: float = 30.0) -> "Server":
        """Start the process and wait until it listens."""
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=PROJECT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = _LISTENING.search(self.log_path.read_text(errors="replace"))
            if found:
                self.port = int(found.group(1))
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not start within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not ended within 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connection(self) -> http.client.HTTPConnection:
        """A keep-alive connection for setting the server up."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def cpu_seconds(self) -> float | None:
        """User plus system CPU time the process has used so far (Linux), else None."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def request(connection: http.client.HTTPConnection, method: str, path: str, body=None) -> str:
    """One request on a keep-alive connection; the body of a 200 answer, else RuntimeError."""
    connection.request(method, path, body=body)
    response = connection.getresponse()
    text = response.read().decode()
    if response.status != 200:
        raise RuntimeError(f"{method} {path}: {response.status} {text}")
    return text
