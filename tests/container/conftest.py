"""The service built from the Dockerfile and started by docker compose, once for this folder."""

import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.container import wheelhouse
from tests.container.compose import Budget, ComposeProject, run
from tests.container.docker_engine import EngineStartFailed, NoEngine, docker_environment
from tests.container.service_client import ServiceClient

# Building the image, starting it, restarting it and removing it, all together.
BUDGET_SECONDS = 300
# The stand-in for python:3.x-slim that the sandbox engine provides.
LOCAL_BASE_IMAGE = "local/python:3.11-slim"


@pytest.fixture(scope="package")
def docker_env() -> dict[str, str]:
    """An environment in which docker reaches an engine; skips only where none can be had."""
    try:
        return docker_environment()
    except NoEngine as reason:
        pytest.skip(str(reason))
    except EngineStartFailed as error:
        pytest.fail(str(error))


@pytest.fixture(scope="package")
def project(docker_env, tmp_path_factory) -> Iterator[ComposeProject]:
    """The compose project, built and up (healthy, per --wait); `down -v` afterwards."""
    port = _free_loopback_port()
    env = {**docker_env, "SCORESVC_TEST_PORT": str(port)}
    project = ComposeProject(f"scoresvc-test-{uuid.uuid4().hex[:8]}", env, Budget(BUDGET_SECONDS))
    try:
        with _build_variables(project, tmp_path_factory.mktemp("wheels")) as variables:
            project.compose("build", at_most=240, extra_env=variables)
        project.compose("up", "--detach", "--wait", "--wait-timeout", "90", at_most=120)
        yield project
    finally:
        project.down()


@pytest.fixture(scope="package")
def client(project) -> ServiceClient:
    """HTTP to the service over loopback."""
    return ServiceClient(int(project.env["SCORESVC_TEST_PORT"]))


@contextmanager
def _build_variables(project: ComposeProject, wheels: Path) -> Iterator[dict[str, str]]:
    """Build arguments (docker-compose.yml reads them from the environment) for this engine."""
    if not _has_image(project.env, LOCAL_BASE_IMAGE):
        # An engine that can pull python:3.12-slim and reach PyPI: this host's pip settings
        # would mean nothing inside the build.
        yield {"PIP_NO_INDEX": "", "PIP_FIND_LINKS": ""}
        return
    probe = ["docker", "run", "--rm", "--network=none", LOCAL_BASE_IMAGE, "python", "-c"]
    version = "import sys; print('%d.%d' % sys.version_info[:2])"
    python_version = run([*probe, version], project.env, project.budget.timeout(60)).strip()
    wheelhouse.download_wheels(wheels, python_version, timeout=project.budget.timeout(120))
    # The build runs on the host's network, so the loopback URL reaches the wheels.
    with wheelhouse.served(wheels) as url:
        yield {"BASE_IMAGE": LOCAL_BASE_IMAGE, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": url}


def _has_image(env: dict[str, str], image: str) -> bool:
    inspect = ["docker", "image", "inspect", image]
    return subprocess.run(inspect, env=env, capture_output=True, timeout=30).returncode == 0


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
