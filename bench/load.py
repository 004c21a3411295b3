"""Driving a server with wrk: timed runs, their figures read from what report.lua prints."""

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).with_name("lua")
WRK_THREADS = 1  # the machine has few cores: one wrk thread leaves the most CPU to the server


@dataclass(frozen=True)
class Run:
    """One wrk run's figures."""

    requests: int
    seconds: float
    status_errors: int
    socket_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds


def ensure_wrk() -> str:
    """The wrk executable, installed from Debian's packages first if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit("bench: wrk is missing; install it (e.g. apt-get install wrk)")
    print("bench: installing wrk with apt-get", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "wrk"],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    return shutil.which("wrk") or "wrk"


class Wrk:
    """Runs wrk against a URL, GET with a fixed path or POST from post_score.lua."""

    def __init__(self, executable: str, workdir: Path) -> None:
        self.executable = executable
        report = (LUA / "report.lua").read_text()
        self._get_script = workdir / "get.lua"
        self._get_script.write_text(report)
        self._post_script = workdir / "post_score.lua"
        self._post_script.write_text((LUA / "post_score.lua").read_text() + report)

    def get(self, url: str, connections: int, seconds: int) -> Run:
        """GET url over connections keep-alive connections for seconds."""
        return self._run(url, connections, seconds, self._get_script, [])

    def post_scores(
        self, base_url: str, connections: int, seconds: int, keys_file: Path, level: int
    ) -> Run:
        """POST rising scores to a level, rotating through the session keys in keys_file."""
        script_args = ["--", str(keys_file), str(level)]
        return self._run(base_url + "/", connections, seconds, self._post_script, script_args)

    def _run(self, url: str, connections: int, seconds: int, script: Path, args: list) -> Run:
        command = [
            self.executable,
            f"-t{WRK_THREADS}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
            *args,
        ]
        finished = subprocess.run(command, capture_output=True, text=True, check=False)
        for line in finished.stdout.splitlines():
            if line.startswith("BENCH_JSON "):
                figures = json.loads(line.removeprefix("BENCH_JSON "))
                return Run(
                    requests=figures["requests"],
                    seconds=figures["duration_us"] / 1e6,
                    status_errors=figures["status_errors"],
                    socket_errors=figures["socket_errors"],
                    p50_ms=figures["p50_us"] / 1000,
                    p99_ms=figures["p99_us"] / 1000,
                )
        raise RuntimeError(f"wrk gave no figures:\n{finished.stdout}\n{finished.stderr}")


def scratch_directory() -> tempfile.TemporaryDirectory:
    """A temporary directory for scripts, keys, databases and server logs."""
    return tempfile.TemporaryDirectory(prefix="scoresvc-bench-")
