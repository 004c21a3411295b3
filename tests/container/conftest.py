"""The service built from the Dockerfile and started by docker compose, once for this folder."""

import uuid
from collections.abc import Iterator

import pytest

from tests.container import images
from tests.container.compose import Budget, ComposeProject
from tests.container.docker_engine import EngineStartFailed, NoEngine, docker_environment
from tests.container.service_client import ServiceClient, free_loopback_port
from tests.needs import lacking

# Building the image, starting it, restarting it and removing it, all together.
BUDGET_SECONDS = 300
# Probing the base image's Python and downloading the wheels for it.
WHEELHOUSE_BUDGET_SECONDS = 200


@pytest.fixture(scope="package")
def docker_env() -> dict[str, str]:
    """An environment in which docker reaches an engine; skips only where none can be had."""
    try:
        return docker_environment()
    except NoEngine as reason:
        lacking(f"{reason}: install Docker (docker and its compose plugin)")
    except EngineStartFailed as error:
        pytest.fail(str(error))


@pytest.fixture(scope="package")
def scoresvc_build_variables(docker_env, tmp_path_factory) -> Iterator[dict[str, str]]:
    """Build arguments for scoresvc's image; its wheelhouse is served while the package runs."""
    budget = Budget(WHEELHOUSE_BUDGET_SECONDS)
    wheels = tmp_path_factory.mktemp("wheels")
    with images.scoresvc_build_variables(docker_env, budget, wheels) as variables:
        yield variables


@pytest.fixture(scope="package")
def project(docker_env, scoresvc_build_variables) -> Iterator[ComposeProject]:
    """The compose project, built and up (healthy, per --wait); `down -v` afterwards."""
    port = free_loopback_port()
    env = {**docker_env, "SCORESVC_TEST_PORT": str(port)}
    project = ComposeProject(f"scoresvc-test-{uuid.uuid4().hex[:8]}", env, Budget(BUDGET_SECONDS))
    try:
        project.compose("build", at_most=240, extra_env=scoresvc_build_variables)
        project.up(wait_seconds=90)
        yield project
    finally:
        project.down()


@pytest.fixture(scope="package")
def client(project) -> ServiceClient:
    """HTTP to the service over loopback."""
    return ServiceClient(int(project.env["SCORESVC_TEST_PORT"]))
