"""Throughput and latency over HTTP: the ceiling and scoresvc (memory, file) under the same wrk."""

import secrets
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.load import Run, Wrk
from bench.servers import Server, request

ENDPOINTS = ("login", "score", "highscorelist")
CONNECTIONS = (16, 64)
PLAYERS = 1000  # players on the high score list's level, and users whose keys the POSTs rotate
LIST_LEVEL = 1
# The ceiling's GET answers: about what scoresvc's are (80 bytes for a key, ~170 for a list).
CEILING_GET_BODY_BYTES = 100
_GET_PATHS = {"login": "/4711/login", "highscorelist": f"/{LIST_LEVEL}/highscorelist"}


@dataclass
class Cell:
    """Every round of one server on one endpoint at one connection count."""

    runs: list[Run] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "rate": statistics.median(run.rate for run in self.runs),
            "p50_ms": statistics.median(run.p50_ms for run in self.runs),
            "p99_ms": statistics.median(run.p99_ms for run in self.runs),
            "cpu_us_per_request": statistics.median(self.cpu_us) if self.cpu_us else None,
            "errors": sum(run.status_errors + run.socket_errors for run in self.runs),
            "rounds": [round(run.rate) for run in self.runs],
        }


def start_servers(scratch: Path) -> dict[str, Server]:
    """Both ceilings, scoresvc in memory and scoresvc on a file, all started."""
    # One secret for both scoresvc servers, so that one set of keys works on each; a long
    # lifetime, so that keys outlast the suite however many rounds it runs.
    env = {"SCORESVC_SECRET": secrets.token_urlsafe(32), "SCORESVC_SESSION_TTL": "86400"}
    servers = {
        # waitress's floor: a do-nothing app with empty answers (see bench/ceiling.py).
        "bare": Server.ceiling("bare", scratch / "bare.log"),
        "ceiling": Server.ceiling("ceiling", scratch / "ceiling.log", CEILING_GET_BODY_BYTES),
        "memory": Server.scoresvc("memory", scratch / "memory.log", env),
        "durable": Server.scoresvc(
            "durable", scratch / "durable.log", env, f"sqlite:///{scratch}/scores.db"
        ),
    }
    for server in servers.values():
        server.start()
    return servers


def seed(servers: dict[str, Server], keys_file: Path) -> None:
    """Log PLAYERS users in, keep their keys, and give each a score on LIST_LEVEL."""
    with_data = [servers["memory"], servers["durable"]]
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


def measure(
    wrk: Wrk,
    servers: dict[str, Server],
    keys_file: Path,
    *,
    rounds: int,
    seconds: int,
    progress: Callable[[str], None] = print,
) -> list[dict]:
    """Every endpoint at every connection count, servers alternating within each round."""
    levels = iter(range(1_000_000, 2_000_000))  # a fresh level per POST run: real inserts

    def run(server: Server, endpoint: str, connections: int, duration: float) -> tuple:
        before = server.cpu_seconds()
        if endpoint == "score":
            result = wrk.post_scores(server.url, connections, duration, keys_file, next(levels))
        else:
            result = wrk.get(server.url + _GET_PATHS[endpoint], connections, duration)
        after = server.cpu_seconds()
        cpu = None if before is None or after is None else (after - before) / result.requests
        return result, cpu

    for server in servers.values():  # warm up every path of every server
        for endpoint in ENDPOINTS:
            run(server, endpoint, CONNECTIONS[0], 1)

    rows = []
    for endpoint in ENDPOINTS:
        for connections in CONNECTIONS:
            cells = {name: Cell() for name in servers}
            for round_number in range(1, rounds + 1):
                for name, server in servers.items():
                    result, cpu = run(server, endpoint, connections, seconds)
                    cells[name].runs.append(result)
                    if cpu is not None:
                        cells[name].cpu_us.append(cpu * 1e6)
                    progress(
                        f"  {endpoint:<13} c={connections:<3} round {round_number} "
                        f"{name:<8} {result.rate:8.0f} req/s  p50 {result.p50_ms:.2f} ms"
                    )
            rows.append(_row(endpoint, connections, cells))
    return rows


def _row(endpoint: str, connections: int, cells: dict[str, Cell]) -> dict:
    def ratio(name: str, base: str) -> float:
        pairs = zip(cells[name].runs, cells[base].runs, strict=True)
        return statistics.median(run.rate / base_run.rate for run, base_run in pairs)

    return {
        "endpoint": endpoint,
        "connections": connections,
        "servers": {name: cell.summary() for name, cell in cells.items()},
        "memory_to_ceiling": ratio("memory", "ceiling"),
        "memory_to_bare": ratio("memory", "bare"),
        "ceiling_to_bare": ratio("ceiling", "bare"),
        "durable_to_memory": ratio("durable", "memory"),
    }
