"""A reachable Docker engine for the container tests: the one configured, or the sandbox's."""

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Where no public registry can be reached, this script starts a private engine with a local
# Python base image (local/python:3.11-slim) and Compose v2.
SANDBOX_SCRIPT = ROOT.parent / "shared" / "tools" / "container-sandbox.sh"
SANDBOX_START_SECONDS = 900  # the first start installs Docker and debootstraps a Debian root


class NoEngine(Exception):
    """No Docker engine is reachable and none can be started here."""


class EngineStartFailed(Exception):
    """The sandbox script is there but could not start its engine."""


def docker_environment() -> dict[str, str]:
    """The environment under which `docker` and `docker compose` reach an engine."""
    env = dict(os.environ)
    if _engine_answers(env):
        return env
    if not SANDBOX_SCRIPT.is_file():
        raise NoEngine(
            f"no Docker engine answers `docker info`, and there is no {SANDBOX_SCRIPT} to start one"
        )
    started = subprocess.run(
        ["bash", str(SANDBOX_SCRIPT), "up"],
        capture_output=True,
        text=True,
        timeout=SANDBOX_START_SECONDS,
        check=False,
    )
    if started.returncode != 0:
        raise EngineStartFailed(
            f"{SANDBOX_SCRIPT} up failed ({started.returncode}):\n{started.stderr[-3000:]}"
        )
    env.update(parse_exports(started.stdout))
    if not _engine_answers(env):
        raise EngineStartFailed(f"{SANDBOX_SCRIPT} up succeeded but `docker info` still fails")
    return env


def parse_exports(text: str) -> dict[str, str]:
    """The variables of `export A=1 B=2` lines (what the sandbox prints for eval)."""
    variables = {}
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["export"]:
            variables.update(word.split("=", 1) for word in words[1:] if "=" in word)
    return variables


def _engine_answers(env: dict[str, str]) -> bool:
    if shutil.which("docker", path=env.get("PATH")) is None:
        return False
    try:
        info = subprocess.run(
            ["docker", "info"], env=env, capture_output=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        return False
    return info.returncode == 0
