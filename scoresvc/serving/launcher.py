"""A server in a subprocess on 127.0.0.1 and a free port, as tests, the bench and the soak script
start one: its output goes to a log file, and its port is read from the log's "serving on" line.

It lives beside the command that writes that line (cli.py, supervisor.py), so the line and the
code that reads it change together; waitress-serve and bench/ceiling.py print the same line.
"""

import http.client
import io
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

# scoresvc and bench/ceiling.py log "serving on ..."; waitress-serve prints "Serving on ...".
LISTENING = re.compile(r"serving on http://127\.0\.0\.1:(\d+)", re.IGNORECASE)
HOST = "127.0.0.1"


def scoresvc_command(*args: str) -> list[str]:
    """`python -m scoresvc` on 127.0.0.1 and a port the system picks, with args after."""
    return [sys.executable, "-m", "scoresvc", "--host", HOST, "--port", "0", *args]


class ServerProcess:
    """One server process; its stdout and stderr appended to log_path.

    With log_through_pipe, its output is a pipe that a thread copies into the file, as a
    process manager's would be (the case where lines of several processes could mix).
    """

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        log_through_pipe: bool = False,
        name: str = "scoresvc",
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.log_through_pipe = log_through_pipe
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, timeout: float = 30.0) -> "ServerProcess":
        """Start the process and wait until it listens; RuntimeError with the log's tail if it
        exits first or does not listen within timeout (then it is killed)."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE if self.log_through_pipe else log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
        )
        if self.log_through_pipe:
            threading.Thread(target=_copy, args=(self.process.stdout, log), daemon=True).start()
        else:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = LISTENING.search(self.log_path.read_bytes()[offset:].decode(errors="replace"))
            if found:
                self.port = int(found.group(1))
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.name} did not start within {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then the exit status (subprocess.TimeoutExpired if it takes longer)."""
        assert self.process is not None, "stop() before start()"
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after timeout; nothing if it is not running."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://{HOST}:{self.port}"

    def connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        """A new keep-alive HTTP/1.1 connection to the server."""
        return http.client.HTTPConnection(HOST, self.port, timeout=timeout)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the log."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _copy(pipe: io.BufferedReader, log: io.BufferedWriter) -> None:
    with pipe, log:
        for chunk in iter(lambda: pipe.read1(65536), b""):
            log.write(chunk)
            log.flush()
