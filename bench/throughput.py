"""Throughput and latency over HTTP: the ceilings and scoresvc's servers under the same wrk."""

import secrets
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from bench import postgres, readafterwrite
from bench.load import Run, Wrk
from bench.servers import (
    Server,
    machine_busy_seconds,
    reaped_children_cpu_seconds,
    request,
)

ENDPOINTS = ("highscorelist", "login", "score")
NARROW, WIDE = 16, 64  # wrk's connections: every figure at 16, the one-process ones also at 64
PLAYERS = 1000  # players on the high score list's level, and users whose keys the POSTs rotate
LIST_LEVEL = 1
# The ceiling's GET answers: about what scoresvc's are (80 bytes for a key, ~170 for a list).
CEILING_GET_BODY_BYTES = 100
LOGIN_TARGET_THREADS = 8  # `waitress-serve scoresvc:app` and its ceiling, for their targets
_GET_PATHS = {"login": "/4711/login", "highscorelist": f"/{LIST_LEVEL}/highscorelist"}

# What each server is, for the report.
DESCRIPTIONS = {
    "bare": "waitress, do-nothing app, empty answers; 1 process",
    "bare-2": "the same, 2 processes on one socket",
    "ceiling": f"waitress, do-nothing app, {CEILING_GET_BODY_BYTES}-byte GET answers; 1 process",
    "ceiling-2": "the same, 2 processes on one socket",
    "memory": "scoresvc, memory database, 1 worker",
    "memory-2": "scoresvc, memory database, 2 workers",
    "file": "scoresvc, SQLite file (WAL), 1 worker",
    "file-2": "scoresvc, SQLite file (WAL), 2 workers",
    "postgresql": "scoresvc, PostgreSQL, 1 worker",
    "postgresql-2": "scoresvc, PostgreSQL, 2 workers",
    "ceiling-8t": f"waitress with {LOGIN_TARGET_THREADS} threads, "
    f"{CEILING_GET_BODY_BYTES}-byte GET answers; 1 process",
    "waitress-serve-8t": f"waitress-serve scoresvc:app, {LOGIN_TARGET_THREADS} threads, "
    "memory database",
}
# The servers of each (endpoint, connections): they alternate within each round of it. POSTs
# leave out the 100-byte ceilings (a POST is answered empty there, as on the bare ones), and
# PostgreSQL's login (a signed key touches no database).
PLAN = {
    ("highscorelist", NARROW): (
        *("bare", "ceiling", "bare-2", "ceiling-2", "memory", "memory-2"),
        *("file", "file-2", "postgresql", "postgresql-2", "ceiling-8t", "waitress-serve-8t"),
    ),
    ("login", NARROW): (
        *("bare", "ceiling", "bare-2", "ceiling-2", "memory", "memory-2", "file", "file-2"),
        *("ceiling-8t", "waitress-serve-8t"),
    ),
    ("score", NARROW): (
        *("bare", "bare-2", "memory", "memory-2"),
        *("file", "file-2", "postgresql", "postgresql-2", "ceiling-8t", "waitress-serve-8t"),
    ),
    ("highscorelist", WIDE): ("bare", "ceiling", "memory", "file"),
    ("login", WIDE): ("bare", "ceiling", "memory", "file"),
}
DATA_SERVERS = ("memory", "memory-2", "file", "file-2", "postgresql", "postgresql-2")


@dataclass(frozen=True)
class Sample:
    """One wrk run of one server, and the CPU used during it (µs per request; cores)."""

    run: Run
    cpu_us: float | None  # the server's processes together
    worker_cpu_us: float | None  # all but a supervisor's own
    database_cpu_us: float | None  # PostgreSQL's processes, for a server on it
    # Every other process's (the machine's busy time less the server's, PostgreSQL's and
    # wrk's): how much the machine was shared while the figure was taken.
    other_cores: float | None


@dataclass
class Cell:
    """Every round of one server on one endpoint at one connection count."""

    samples: list[Sample] = field(default_factory=list)

    def summary(self) -> dict:
        """The rounds' medians, errors summed, and each round's rate."""
        runs = [sample.run for sample in self.samples]
        return {
            "rate": statistics.median(run.rate for run in runs),
            "p50_ms": statistics.median(run.p50_ms for run in runs),
            "p99_ms": statistics.median(run.p99_ms for run in runs),
            "cpu_us_per_request": self._median("cpu_us"),
            "worker_cpu_us_per_request": self._median("worker_cpu_us"),
            "database_cpu_us_per_request": self._median("database_cpu_us"),
            "other_cores": self._median("other_cores"),
            "errors": sum(run.status_errors + run.socket_errors for run in runs),
            "rates": [run.rate for run in runs],  # round by round, for per-round ratios
        }

    def _median(self, figure: str) -> float | None:
        values = [getattr(sample, figure) for sample in self.samples]
        values = [value for value in values if value is not None]
        return statistics.median(values) if values else None


def start_servers(
    scratch: Path,
    *,
    workers: bool,
    postgresql: Callable[[], str] | None,
    postgresql_missing: str = "",
    database_pid: int | None = None,
) -> tuple[dict[str, Server], dict[str, str]]:
    """Every server of PLAN that can run here, started; and why each of the others is not.

    workers: whether scoresvc has --workers (without it, its one-worker servers run without
    the flag, as one process). postgresql: makes a fresh database and gives its URL, or None
    (then postgresql_missing says why). database_pid: PostgreSQL's postmaster, whose CPU is
    counted beside each PostgreSQL run.
    """
    # One secret for every scoresvc server, so that one set of keys works on each; a long
    # lifetime, so that keys outlast the suite however many rounds it runs. No post limit:
    # the writers post 1,000 users' scores thousands of times a second, and the default limit
    # (5/20 a user) would refuse most; what the limit costs is bench/limits.py's to say.
    env = {
        "SCORESVC_SECRET": secrets.token_urlsafe(32),
        "SCORESVC_SESSION_TTL": "86400",
        "SCORESVC_POST_LIMIT": "0",
    }
    wanted: dict[str, Server | str] = {
        # waitress's floor: a do-nothing app with empty answers (see bench/ceiling.py).
        "bare": Server.ceiling("bare", scratch / "bare.log"),
        "bare-2": Server.ceiling("bare-2", scratch / "bare-2.log", processes=2),
        "ceiling": Server.ceiling("ceiling", scratch / "ceiling.log", CEILING_GET_BODY_BYTES),
        "ceiling-2": Server.ceiling(
            "ceiling-2", scratch / "ceiling-2.log", CEILING_GET_BODY_BYTES, processes=2
        ),
        "ceiling-8t": Server.ceiling(
            "ceiling-8t",
            scratch / "ceiling-8t.log",
            CEILING_GET_BODY_BYTES,
            threads=LOGIN_TARGET_THREADS,
        ),
        "waitress-serve-8t": Server.waitress_serve(
            "waitress-serve-8t", scratch / "waitress-serve-8t.log", env, LOGIN_TARGET_THREADS
        ),
    }
    for count in (1, 2):
        suffix = "" if count == 1 else f"-{count}"
        for database in ("memory", "file", "postgresql"):
            name = database + suffix
            if count > 1 and not workers:
                wanted[name] = "scoresvc -h lists no --workers yet"
                continue
            if database == "postgresql" and postgresql is None:
                wanted[name] = postgresql_missing
                continue
            url = ""  # memory
            if database == "file":
                url = f"sqlite:///{scratch}/scores-{count}.db"
            elif database == "postgresql":
                url = postgresql()  # a database of its own: no cache sees another's writes
            server = Server.scoresvc(
                name, scratch / f"{name}.log", env, url, workers=count if workers else 0
            )
            if database == "postgresql":
                server.database_pid = database_pid
            wanted[name] = server

    servers, missing = {}, {}
    for name, server in wanted.items():
        if isinstance(server, str):
            missing[name] = server
            continue
        try:
            servers[name] = server.start()
        except RuntimeError as error:
            missing[name] = str(error).splitlines()[-1] if str(error) else "did not start"
    return servers, missing


def seed(servers: dict[str, Server], keys_file: Path) -> list[str]:
    """Log PLAYERS users in, keep their keys, and give each a score on LIST_LEVEL; the keys.

    A PostgreSQL database is analyzed after (see bench/postgres.py's analyze()).
    """
    with_data = [server for name, server in servers.items() if name in DATA_SERVERS]
    if not with_data:
        raise RuntimeError("no scoresvc server started: see the reasons above")
    connection = with_data[0].connection()
    keys = [request(connection, "GET", f"/{user}/login") for user in range(1, PLAYERS + 1)]
    connection.close()
    keys_file.write_text("\n".join(keys) + "\n")
    for server in with_data:
        connection = server.connection()
        for user, key in enumerate(keys, start=1):
            score = str(user * 7919 % 1_000_003)
            request(connection, "POST", f"/{LIST_LEVEL}/score?sessionkey={key}", score)
        connection.close()
        if server.database_url.startswith("postgresql"):
            postgres.analyze(server.database_url)  # as autovacuum would have by now
    return keys


def measure(
    wrk: Wrk,
    servers: dict[str, Server],
    keys: list[str],
    keys_file: Path,
    *,
    rounds: int,
    seconds: int,
    wide: bool = True,
    progress: Callable[[str], None] = print,
) -> tuple[list[dict], dict[str, dict]]:
    """Every cell of PLAN, servers alternating within each round; and the read-after-write checks.

    wide: also the 64-connection cells. The checks (bench/readafterwrite.py) follow every POST
    run on a scoresvc server: for each server, how many ran and what they found wrong.
    """
    levels = iter(range(1_000_000, 2_000_000))  # a fresh level per POST run: real inserts
    checked_levels = iter(range(3_000_000, 4_000_000))  # and per exact check
    checks = {name: {"checks": 0, "problems": []} for name in servers if name in DATA_SERVERS}

    def run(server: Server, endpoint: str, connections: int, duration: float) -> Sample:
        before = _CpuReading.take(server)
        if endpoint == "score":
            level = next(levels)
            result = wrk.post_scores(server.url, connections, duration, keys_file, level)
        else:
            result = wrk.get(server.url + _GET_PATHS[endpoint], connections, duration)
        sample = _CpuReading.take(server).sample_since(before, result)
        if endpoint == "score" and server.name in checks:
            answered = result.requests - result.status_errors
            problems = readafterwrite.after_post_run(server, level, answered, PLAYERS)
            problems += readafterwrite.exact(server, keys, next(checked_levels))
            checks[server.name]["checks"] += 2
            checks[server.name]["problems"] += problems
            for problem in problems:
                progress(f"  read after write, {server.name}: {problem}")
        return sample

    plan = {cell: names for cell, names in PLAN.items() if wide or cell[1] != WIDE}
    for name, server in servers.items():  # warm up every path of every server
        for endpoint in ENDPOINTS:
            if any(name in names and cell[0] == endpoint for cell, names in plan.items()):
                run(server, endpoint, NARROW, 1)

    cells = []
    for (endpoint, connections), names in plan.items():
        present = [name for name in names if name in servers]
        cell_runs = {name: Cell() for name in present}
        for round_number in range(1, rounds + 1):
            for name in present:
                sample = run(servers[name], endpoint, connections, seconds)
                cell_runs[name].samples.append(sample)
                others = "" if sample.other_cores is None else f"{sample.other_cores:.2f}"
                progress(
                    f"  {endpoint:<13} c={connections:<3} round {round_number} "
                    f"{name:<17} {sample.run.rate:8.0f} req/s  p50 {sample.run.p50_ms:5.2f} ms"
                    f"  others {others} cores"
                )
        cells.append(
            {
                "endpoint": endpoint,
                "connections": connections,
                "servers": {name: cell.summary() for name, cell in cell_runs.items()},
            }
        )
    for entry in checks.values():
        entry["problems"] = entry["problems"][:5]
    return cells, checks


class _CpuReading(NamedTuple):
    """CPU seconds used so far: by a server, its database, the machine, our reaped children."""

    server: tuple[float, float] | None  # all its processes, and all but a supervisor's own
    database: float | None
    machine: float | None
    reaped_children: float  # wrk's, once it has ended

    @classmethod
    def take(cls, server: Server) -> "_CpuReading":
        """The figures now."""
        return cls(
            server.cpu_seconds(),
            server.database_cpu_seconds(),
            machine_busy_seconds(),
            reaped_children_cpu_seconds(),
        )

    def sample_since(self, before: "_CpuReading", result: Run) -> Sample:
        """The run's Sample: CPU per request from before to this reading, and others' cores."""
        per_request = 1e6 / max(result.requests, 1)
        cpu = worker_cpu = database_cpu = other_cores = None
        server = database = 0.0
        if before.server is not None and self.server is not None:
            server = self.server[0] - before.server[0]
            cpu = server * per_request
            worker_cpu = (self.server[1] - before.server[1]) * per_request
        if before.database is not None and self.database is not None:
            database = self.database - before.database
            database_cpu = database * per_request
        if before.machine is not None and self.machine is not None:
            wrk = self.reaped_children - before.reaped_children
            others = self.machine - before.machine - server - database - wrk
            other_cores = max(others, 0.0) / result.seconds
        return Sample(result, cpu, worker_cpu, database_cpu, other_cores)
