"""The benchmark suite's entry point: HTTP runs, in-process costs, scale; then the report."""

import argparse
import datetime
import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

from bench import report, throughput
from bench.load import WRK_THREADS, Wrk, ensure_wrk, scratch_directory
from bench.servers import PROJECT, THREADS

RESULTS = Path(__file__).with_name("results")
SCALE_PLAYERS = (1_000, 100_000, 1_000_000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure scoresvc against a do-nothing waitress app; write bench/results/.",
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s (about 2 minutes)")
    parser.add_argument("--rounds", type=int, help="rounds per HTTP figure (default 3)")
    parser.add_argument("--seconds", type=int, help="length of one wrk run (default 3)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    options = parser.parse_args(argv)
    rounds = options.rounds or (2 if options.quick else 3)
    seconds = options.seconds or (2 if options.quick else 3)
    started = time.monotonic()

    wrk_executable = ensure_wrk()
    with scratch_directory() as scratch_name:
        scratch = Path(scratch_name)
        print(f"HTTP: {rounds} rounds of {seconds:g} s per server, endpoint and connection count")
        servers = throughput.start_servers(scratch)
        try:
            keys_file = scratch / "keys.txt"
            throughput.seed(servers, keys_file)
            rows = throughput.measure(
                Wrk(wrk_executable, scratch), servers, keys_file, rounds=rounds, seconds=seconds
            )
        finally:
            for server in servers.values():
                server.stop()
        print("in-process costs")
        inprocess = _subprocess_json(["bench.inprocess"], scratch / "inprocess.log")
        scale = []
        for players in SCALE_PLAYERS:
            print(f"scale: {players:,} players")
            scale.append(
                _subprocess_json(
                    ["bench.scale", "--players", str(players)], scratch / f"scale-{players}.log"
                )
            )

    results = {
        "meta": _meta(wrk_executable, argv),
        "http": {
            "rounds": rounds,
            "seconds": seconds,
            "threads": THREADS,
            "wrk_threads": WRK_THREADS,
            "players": throughput.PLAYERS,
            "ceiling_get_body_bytes": throughput.CEILING_GET_BODY_BYTES,
            "rows": rows,
        },
        "inprocess": inprocess,
        "scale": scale,
    }
    report.write(results, options.out)
    print((options.out / "results.md").read_text())
    print(f"done in {time.monotonic() - started:.0f} s; results in {options.out}/")
    return 0


def _subprocess_json(module_args: list[str], log_path: Path) -> dict:
    # A fresh process for each: its memory is its own, and its access log goes to a file.
    with log_path.open("wb") as log:
        finished = subprocess.run(
            [sys.executable, "-m", *module_args],
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=PROJECT,
            check=False,
        )
    if finished.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(module_args)} failed:\n{tail}")
    return json.loads(finished.stdout)


def _meta(wrk_executable: str, argv: list[str] | None) -> dict:
    wrk_version = subprocess.run([wrk_executable, "-v"], capture_output=True, text=True).stdout
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{_cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "waitress": version("waitress"),
        "sqlalchemy": version("SQLAlchemy"),
        "wrk": (wrk_version.split(" [")[0] or "wrk").strip(),
        "command": " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)]),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
