"""Server processes for the HTTP runs: the ceilings and scoresvc, each on an ephemeral port."""

import http.client
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

PROJECT = Path(__file__).resolve().parent.parent
THREADS = 4  # waitress's worker threads, the same for every server (scoresvc's default)
# scoresvc and the ceilings log "serving on ..."; waitress-serve prints "Serving on ...".
_LISTENING = re.compile(r"serving on http://127\.0\.0\.1:(\d+)", re.IGNORECASE)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Server:
    """A server process on 127.0.0.1; its stderr (the log) goes to a file, as under a supervisor."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        env: dict | None = None,
        *,
        processes: int = 1,
        threads: int = THREADS,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        # The project's own code first, whichever scoresvc the virtualenv has installed.
        self.env = {**os.environ, "PYTHONPATH": str(PROJECT), **(env or {})}
        self.processes = processes
        self.threads = threads
        self.process: subprocess.Popen | None = None
        self.port = 0
        self.database_url = ""  # scoresvc's --database
        self.database_pid: int | None = None  # a database server's, whose CPU runs count too

    @classmethod
    def ceiling(
        cls,
        name: str,
        log_path: Path,
        get_body_bytes: int = 0,
        *,
        processes: int = 1,
        threads: int = THREADS,
    ) -> "Server":
        """waitress with the do-nothing app in processes processes on one socket."""
        argv = [sys.executable, "-m", "bench.ceiling", "--port", "0", "--threads", str(threads)]
        argv += ["--get-body-bytes", str(get_body_bytes), "--processes", str(processes)]
        return cls(name, argv, log_path, processes=processes, threads=threads)

    @classmethod
    def scoresvc(
        cls, name: str, log_path: Path, env: dict, database_url: str = "", workers: int = 0
    ) -> "Server":
        """scoresvc as its users start it, with the given database (in memory by default).

        workers 0 leaves --workers out (for a scoresvc that does not have it yet).
        """
        argv = [sys.executable, "-m", "scoresvc", "--host", "127.0.0.1", "--port", "0"]
        argv += ["--threads", str(THREADS)]
        if database_url:
            argv += ["--database", database_url]
        if workers:
            argv += ["--workers", str(workers)]
        server = cls(name, argv, log_path, env, processes=workers or 1)
        server.database_url = database_url
        return server

    @classmethod
    def waitress_serve(cls, name: str, log_path: Path, env: dict, threads: int) -> "Server":
        """`waitress-serve scoresvc:app`: stock waitress (two writes an answer), memory database."""
        argv = [sys.executable, "-m", "waitress", "--listen=127.0.0.1:0", f"--threads={threads}"]
        argv.append("scoresvc:app")
        return cls(name, argv, log_path, env, threads=threads)

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
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def connection(self) -> http.client.HTTPConnection:
        """A keep-alive connection for setting the server up."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def cpu_seconds(self) -> tuple[float, float] | None:
        """CPU time used so far by the process and all it started; and by all but the process.

        The second figure is the workers' own (for a supervisor that only waits on its
        workers), and the whole for a server of one process. None where /proc is missing.
        """
        if self.process is None:
            return None
        return process_tree_cpu_seconds(self.process.pid)

    def database_cpu_seconds(self) -> float | None:
        """CPU time used so far by the database server at database_pid, if there is one."""
        if self.database_pid is None:
            return None
        figures = process_tree_cpu_seconds(self.database_pid)
        return figures[0] if figures else None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def process_tree_cpu_seconds(root_pid: int) -> tuple[float, float] | None:
    """User plus system CPU of root_pid and its descendants; and of the descendants alone.

    A process's reaped children count in its own figure (cutime, cstime), so that a child that
    ended during a run (a PostgreSQL backend) is not lost. With no descendants, the second
    figure is the root's. None where /proc cannot be read (not Linux).
    """
    table = _process_table()
    if table is None or root_pid not in table.own:
        return None
    total = 0.0
    pending = [root_pid]
    while pending:
        pid = pending.pop()
        total += table.own.get(pid, 0.0) + table.reaped.get(pid, 0.0)
        pending += table.children.get(pid, [])
    descendants = total - table.own[root_pid] if table.children.get(root_pid) else total
    return total, descendants


def machine_busy_seconds() -> float | None:
    """CPU time the machine's cores have spent busy so far (/proc/stat), else None.

    User, system, interrupts and softirqs: a process's system time in /proc/<pid>/stat takes
    in the softirqs (loopback TCP's work) that ran on its time. Busy time is counted by the
    tick and a process's time by the scheduler's clock, so the two differ a little: on this
    kind of machine by up to a tenth of what a run used.
    """
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(value) for value in fields[:7])
    return (user + nice + system + irq + softirq) / _CLOCK_TICKS


def reaped_children_cpu_seconds() -> float:
    """User plus system CPU of this process's children that have ended and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def child_count(pid: int) -> int:
    """How many processes pid has started and not yet reaped (0 where /proc is missing)."""
    table = _process_table()
    return 0 if table is None else len(table.children.get(pid, []))


class _ProcessTable(NamedTuple):
    children: dict[int, list[int]]  # parent pid: child pids
    own: dict[int, float]  # pid: its own CPU seconds
    reaped: dict[int, float]  # pid: CPU seconds of the children it has reaped


def _process_table() -> _ProcessTable | None:
    """Every process's parent and CPU times, from /proc; None where it cannot be read."""
    table = _ProcessTable(defaultdict(list), {}, {})
    try:
        entries = [entry for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended while we looked
        pid = int(entry.name)
        table.children[int(fields[1])].append(pid)
        table.own[pid] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
        table.reaped[pid] = (int(fields[13]) + int(fields[14])) / _CLOCK_TICKS
    return table


def scoresvc_has_workers() -> bool:
    """Whether this scoresvc's command line has --workers (it is being added)."""
    finished = subprocess.run(
        [sys.executable, "-m", "scoresvc", "-h"],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
        check=False,
    )
    return "--workers" in finished.stdout


def request(connection: http.client.HTTPConnection, method: str, path: str, body=None) -> str:
    """One request on a keep-alive connection; the body of a 200 answer, else RuntimeError."""
    connection.request(method, path, body=body)
    response = connection.getresponse()
    text = response.read().decode()
    if response.status != 200:
        raise RuntimeError(f"{method} {path}: {response.status} {text}")
    return text
