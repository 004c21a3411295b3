#!/usr/bin/env python3
"""Soak test: a steady mixed load (half the measured peak) for ten minutes, watching the server.

Starts its own `python -m scoresvc` on 127.0.0.1 (or attaches to one with --url and --pid),
measures the peak request rate in a short burst unless --rate is given, then holds half of it
for --duration seconds. Reports the server's RSS at the start and the end (and every minute),
every answer that is not 200, and latency percentiles. Exits 1 if any answer was not 200.

    .venv/bin/python scripts/soak.py                       # 10 minutes at half the peak
    .venv/bin/python scripts/soak.py --duration 60 --rate 300 -- --store-tokens
"""

import argparse
import http.client
import random
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from scoresvc.serving.launcher import HOST, ServerProcess, scoresvc_command

USERS = 1_000
LEVELS = 50


@dataclass
class Tally:
    """What the clients saw, shared between them under a lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    non_200: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def record(self, started: float, outcome: str | None) -> None:
        with self.lock:
            self.sent += 1
            self.latencies.append(time.monotonic() - started)
            if outcome is not None:
                self.non_200.append(outcome)
                print(f"  non-200: {outcome}", flush=True)


class Client:
    """One player on a keep-alive connection, sending a mix of logins, posts and reads."""

    def __init__(self, host: str, port: int, seed: int, tally: Tally) -> None:
        self.host, self.port, self.tally = host, port, tally
        self.rng = random.Random(seed)
        self.user_id = self.rng.randrange(USERS)
        self.connection: http.client.HTTPConnection | None = None
        self.key = ""

    def step(self) -> None:
        roll = self.rng.random()
        if not self.key or roll < 0.05:
            self.key = self._call("GET", f"/{self.user_id}/login") or self.key
        elif roll < 0.55:
            level, score = self.rng.randrange(LEVELS), self.rng.randrange(1_000_000)
            self._call("POST", f"/{level}/score?sessionkey={self.key}", str(score))
        elif roll < 0.95:
            self._call("GET", f"/{self.rng.randrange(LEVELS)}/highscorelist")
        else:
            self._call("GET", "/healthz")

    def _call(self, method: str, path: str, body: str | None = None) -> str:
        started = time.monotonic()
        shown = path.split("?")[0]
        try:
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
            self.connection.request(method, path, body=body)
            response = self.connection.getresponse()
            text = response.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as error:
            self.close()
            self.tally.record(started, f"{method} {shown}: {error!r}")
            return ""
        outcome = None if response.status == 200 else f"{method} {shown}: {response.status}"
        self.tally.record(started, outcome)
        return text if response.status == 200 else ""

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def run_load(host: str, port: int, clients: int, seconds: float, rate: float | None) -> Tally:
    """Drive clients for seconds; each paced to rate/clients per second, or flat out if None."""
    tally = Tally()
    deadline = time.monotonic() + seconds

    def drive(seed: int) -> None:
        client = Client(host, port, seed, tally)
        interval = clients / rate if rate else 0.0
        next_at = time.monotonic() + random.Random(seed).random() * interval
        try:
            while time.monotonic() < deadline:
                if interval:
                    pause = next_at - time.monotonic()
                    if pause > 0:
                        time.sleep(min(pause, deadline - time.monotonic(), 1.0))
                        continue
                    next_at += interval
                client.step()
        finally:
            client.close()

    threads = [threading.Thread(target=drive, args=(seed,), daemon=True) for seed in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    return tally


def rss_kib(pid: int) -> int:
    """The resident set size of a process, from /proc (Linux)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1))


def start_server(server_args: list[str], log_dir: Path) -> ServerProcess:
    """`python -m scoresvc` on 127.0.0.1 and a free port.

    Its score post limit is off (server_args may set one): each client is one user posting
    many times a second, far above what the limit lets one player do.
    """
    server = ServerProcess(
        scoresvc_command("--post-limit", "0", *server_args), log_dir / "server.log"
    )
    try:
        return server.start()
    except RuntimeError as error:
        raise SystemExit(str(error)) from None


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def soak(host: str, port: int, pid: int, options: argparse.Namespace) -> int:
    rate = options.rate
    if rate is None:
        burst = run_load(host, port, options.clients, options.burst, rate=None)
        peak = burst.sent / options.burst
        rate = peak / 2
        print(f"peak: {peak:.0f} requests/s over {options.burst:g}s; soaking at {rate:.0f}/s")
    start_rss = rss_kib(pid)
    print(f"RSS at start: {start_rss / 1024:.1f} MiB; {options.duration:g}s at {rate:.0f}/s")
    done = threading.Event()

    def report_rss() -> None:
        while not done.wait(60):
            print(f"  RSS: {rss_kib(pid) / 1024:.1f} MiB", flush=True)

    threading.Thread(target=report_rss, daemon=True).start()
    started = time.monotonic()
    tally = run_load(host, port, options.clients, options.duration, rate)
    elapsed = time.monotonic() - started
    done.set()
    end_rss = rss_kib(pid)
    print(
        f"RSS at end: {end_rss / 1024:.1f} MiB ({(end_rss - start_rss) / 1024:+.1f} MiB)\n"
        f"requests: {tally.sent} in {elapsed:.0f}s ({tally.sent / elapsed:.0f}/s); "
        f"latency p50 {percentile(tally.latencies, 0.5) * 1000:.1f}ms, "
        f"p99 {percentile(tally.latencies, 0.99) * 1000:.1f}ms, "
        f"max {max(tally.latencies, default=0) * 1000:.1f}ms\n"
        f"non-200 answers: {len(tally.non_200)}"
    )
    return 1 if tally.non_200 else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds (default: 600)")
    parser.add_argument("--rate", type=float, help="requests/s (default: half the peak)")
    parser.add_argument("--burst", type=float, default=10, help="peak burst seconds (default 10)")
    parser.add_argument("--clients", type=int, default=32, help="connections (default: 32)")
    parser.add_argument("--url", help="a running server (with --pid) instead of starting one")
    parser.add_argument("--pid", type=int, help="the process id of the server at --url")
    parser.add_argument("server_args", nargs="*", help="after --: options for the started server")
    options = parser.parse_args(argv)
    if options.url:
        if options.pid is None:
            parser.error("--url needs --pid, to read the server's RSS")
        url = urlsplit(options.url)
        return soak(url.hostname, url.port or 80, options.pid, options)
    with tempfile.TemporaryDirectory(prefix="soak-") as log_dir:
        server = start_server(options.server_args, Path(log_dir))
        try:
            return soak(HOST, server.port, server.process.pid, options)
        finally:
            server.close(30)


if __name__ == "__main__":
    sys.exit(main())
