"""Server processes for the HTTP runs (the ceilings and scoresvc, each on an ephemeral port, by
scoresvc.serving.launcher), and the CPU time they use, from /proc."""

import http.client
import json
import os
import resource
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

from scoresvc.serving.launcher import ServerProcess, scoresvc_command

PROJECT = Path(__file__).resolve().parent.parent
THREADS = 4  # waitress's worker threads, the same for every server (scoresvc's default)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Server(ServerProcess):
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
        # The project's own code first, whichever scoresvc the virtualenv has installed.
        env = {**os.environ, "PYTHONPATH": str(PROJECT), **(env or {})}
        super().__init__(argv, log_path, env=env, cwd=PROJECT, name=name)
        self.processes = processes
        self.threads = threads
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
        argv = scoresvc_command("--threads", str(THREADS))
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
        """Start it afresh (the log of an earlier start dropped) and wait until it listens."""
        self.log_path.unlink(missing_ok=True)
        super().start(timeout)
        return self

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not ended within 10 s."""
        self.close(10)

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


def run_json_child(module_args: list[str], log_path: Path) -> dict:
    """`python -m <module_args>` in a fresh process (its memory its own, its log a file's):
    the JSON object it prints."""
    with log_path.open("wb") as log:
        finished = subprocess.run(
            [sys.executable, "-m", *module_args],
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=PROJECT,
            env={**os.environ, "PYTHONPATH": str(PROJECT)},
            check=False,
        )
    if finished.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(module_args)} failed:\n{tail}")
    return json.loads(finished.stdout)


def print_json(figures: dict) -> None:
    """A child's answer to run_json_child()."""
    json.dump(figures, sys.stdout)


def rss_bytes(pid: int | str = "self") -> int:
    """A process's resident set size (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def tree_rss_bytes(pid: int) -> int:
    """The resident set size of a process and its children (a supervisor's workers)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            total += rss_bytes(current)
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (OSError, RuntimeError):
            continue
        pending += [int(child) for child in children]
    return total


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
