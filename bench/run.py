"""The benchmark suite's entry point: HTTP runs, PostgreSQL alone, in-process costs, scale,
the players' view and leaderboards at scale (bench/ranks.py), the post limit; then the report
(bench/report.py)."""

import argparse
import contextlib
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

from bench import fill, limits, postgres, ranks, report, throughput
from bench.load import WRK_THREADS, Wrk, ensure_wrk, scratch_directory
from bench.servers import PROJECT, THREADS, run_json_child, scoresvc_has_workers

RESULTS = Path(__file__).with_name("results")
SCALE_PLAYERS = (1_000, 100_000, 1_000_000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure scoresvc against a do-nothing waitress app; write bench/results/.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 rounds of 2 s, 16 connections only, fewer rounds of the ranks part",
    )
    parser.add_argument("--rounds", type=int, help="rounds per HTTP figure (default 3)")
    parser.add_argument("--seconds", type=int, help="length of one wrk run (default 3)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    parser.add_argument(
        "--ranks",
        action="store_true",
        help="only the players' view and leaderboards: rank, around, from and users on every "
        "board at up to 1M players, score POSTs, posts with rules, season starts, storage "
        "(about 10 minutes); its figures replace the ranks part of the results in --out",
    )
    parser.add_argument(
        "--ranks-sizes",
        default=",".join(str(size) for size in ranks.SIZES),
        help="players on the ranks part's levels, comma-separated (smaller for a quick check)",
    )
    parser.add_argument(
        "--ranks-boards",
        default=",".join(fill.BOARDS),
        help="the ranks part's boards, comma-separated (of " + ", ".join(fill.BOARDS) + ")",
    )
    parser.add_argument(
        "--ranks-databases",
        default=",".join(ranks.DATABASES),
        help="the ranks part's databases, comma-separated (of " + ", ".join(ranks.DATABASES) + ")",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="measure nothing: write results.md and docs/performance.md again from the "
        "results.json in --out",
    )
    parser.add_argument(
        "--limits",
        action="store_true",
        help="only score POSTs with the default post limit on against off (about 1 minute); "
        "its figures replace the limits part of the results in --out",
    )
    options = parser.parse_args(argv)
    rounds = options.rounds or (2 if options.quick else 3)
    seconds = options.seconds or (2 if options.quick else 3)
    started = time.monotonic()
    if options.report:
        report.write(json.loads((options.out / "results.json").read_text()), options.out)
        print(f"written from {options.out / 'results.json'}: results.md, {report.DOCUMENT}")
        return 0

    wrk_executable = ensure_wrk()
    if options.limits:
        results = _previous_results(options.out) or {"meta": _meta(wrk_executable, argv)}
        with scratch_directory() as scratch_name:
            scratch = Path(scratch_name)
            results["limits"] = limits.measure(
                Wrk(wrk_executable, scratch), scratch, rounds=rounds + 2, seconds=seconds
            )
        report.write(results, options.out)
        print(f"done in {time.monotonic() - started:.0f} s; results in {options.out}/")
        return 0
    if options.ranks:
        with scratch_directory() as scratch_name:
            figures = _ranks(options, Path(scratch_name), wrk_executable, argv)
        results = _previous_results(options.out) or {"meta": _meta(wrk_executable, argv)}
        results["ranks"] = figures
        report.write(results, options.out)
        print("\n".join(report.ranks_markdown(figures)))
        print(f"done in {time.monotonic() - started:.0f} s; results in {options.out}/")
        return 0
    workers = scoresvc_has_workers()
    with scratch_directory() as scratch_name, contextlib.ExitStack() as cleanup:
        scratch = Path(scratch_name)
        print("PostgreSQL: starting a throwaway server")
        pg_server, pg_missing = postgres.start_server()
        pg_pid, pgbench_url = None, ""
        if pg_server is not None:
            cleanup.callback(pg_server.close)
            pgbench_url = pg_server.create_database()  # for pgbench, after the HTTP runs
            pg_pid = postgres.postmaster_pid(pgbench_url)
        else:
            print(f"  no PostgreSQL: {pg_missing}")
        print(f"HTTP: {rounds} rounds of {seconds:g} s per server, endpoint and connection count")
        servers, missing = throughput.start_servers(
            scratch,
            workers=workers,
            postgresql=pg_server.create_database if pg_server is not None else None,
            postgresql_missing=pg_missing,
            database_pid=pg_pid,
        )
        for name, reason in missing.items():
            print(f"  not measured: {name}: {reason}")
        try:
            keys_file = scratch / "keys.txt"
            keys = throughput.seed(servers, keys_file)
            cells, checks = throughput.measure(
                Wrk(wrk_executable, scratch),
                servers,
                keys,
                keys_file,
                rounds=rounds,
                seconds=seconds,
                wide=not options.quick,
            )
        finally:
            for server in servers.values():
                server.stop()
        print("PostgreSQL on its own (pgbench)")
        if pg_server is not None:
            pg_alone = postgres.measure(pgbench_url, scratch, max(seconds, 3))
        else:
            pg_alone = {"missing": pg_missing}
        cleanup.close()  # PostgreSQL's CPU would count in what follows
        print("in-process costs")
        inprocess = run_json_child(["bench.inprocess"], scratch / "inprocess.log")
        scale = []
        for players in SCALE_PLAYERS:
            print(f"scale: {players:,} players")
            scale.append(
                run_json_child(
                    ["bench.scale", "--players", str(players)], scratch / f"scale-{players}.log"
                )
            )
        ranks_figures = _ranks(options, scratch, wrk_executable, argv)
        print("the post limit: score POSTs with it on and off")
        limits_figures = limits.measure(
            Wrk(wrk_executable, scratch), scratch, rounds=rounds + 2, seconds=seconds
        )

    results = {
        "meta": {**_meta(wrk_executable, argv), "postgresql": pg_alone.get("version")},
        "http": {
            "rounds": rounds,
            "seconds": seconds,
            "threads": THREADS,
            "wrk_threads": WRK_THREADS,
            "players": throughput.PLAYERS,
            "ceiling_get_body_bytes": throughput.CEILING_GET_BODY_BYTES,
            "scoresvc_has_workers": workers,
            "servers": {name: throughput.DESCRIPTIONS[name] for name in servers},
            "missing": missing,
            "cells": cells,
            "read_after_write": checks,
        },
        "scale_model": {"postgresql": pg_alone, "cpu_us_per_request": _cpu_per_request(cells)},
        "inprocess": inprocess,
        "scale": scale,
        "ranks": ranks_figures,
        "limits": limits_figures,
    }
    report.write(results, options.out)
    print((options.out / "results.md").read_text())
    print(f"done in {time.monotonic() - started:.0f} s; results in {options.out}/")
    return 0


def _ranks(options, scratch: Path, wrk_executable: str, argv: list[str] | None) -> dict:
    """The ranks part (bench/ranks.py), with when, on what code and by which command."""
    sizes = tuple(sorted(int(size) for size in options.ranks_sizes.split(",")))
    figures = ranks.measure(
        scratch,
        Wrk(wrk_executable, scratch),
        sizes=sizes,
        boards=tuple(options.ranks_boards.split(",")),
        databases=tuple(options.ranks_databases.split(",")),
        rounds=3 if options.quick else ranks.ROUNDS,
        http_rounds=1 if options.quick else ranks.HTTP_ROUNDS,
    )
    meta = _meta(wrk_executable, argv)
    return {"meta": {name: meta[name] for name in ("date", "code", "commit", "command")}, **figures}


def _previous_results(directory: Path) -> dict | None:
    """The results a whole run left in directory, if any: the ranks part alone replaces its own."""
    try:
        results = json.loads((directory / "results.json").read_text())
    except (OSError, ValueError):
        return None
    return results if "http" in results else None


def _cpu_per_request(cells: list[dict]) -> dict:
    """Each scoresvc server's worker and PostgreSQL CPU per request at 16 connections, µs."""
    figures: dict = {}
    for cell in cells:
        if cell["connections"] != throughput.NARROW:
            continue
        for name, summary in cell["servers"].items():
            if name in throughput.DATA_SERVERS:
                figures.setdefault(name, {})[cell["endpoint"]] = {
                    "worker": summary["worker_cpu_us_per_request"],
                    "postgresql": summary["database_cpu_us_per_request"],
                }
    return figures


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
        "code": _code_version(),
        "commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=PROJECT
        ).stdout.strip(),
    }


def _code_version() -> str:
    """The commit measured, and whether the service's code had changes not yet committed."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=PROJECT
    ).stdout.strip()
    if not commit:
        return "not a git checkout"
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--", "scoresvc", "migrations"],
        capture_output=True,
        text=True,
        cwd=PROJECT,
    ).stdout.strip()
    return f"{commit} with uncommitted changes to the service" if changed else commit


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
