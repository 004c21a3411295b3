"""What the compose files build and run on this engine: local base images where it has them."""

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.container import wheelhouse
from tests.container.compose import Budget, run
from tests.container.docker_engine import ROOT

# The sandbox engine's stand-ins for python:3.x-slim and debian:bookworm-slim.
LOCAL_PYTHON_IMAGE = "local/python:3.11-slim"
LOCAL_DEBIAN_IMAGE = "local/debian:bookworm"

# The images deploy/ builds from Debian's packages, by the variable that puts each one in place of
# its official image in docker-compose.cluster.yml. Tagged for good: later runs build from cache.
STAND_INS = {
    "POSTGRES_IMAGE": ("local/scoresvc-postgres:15", ROOT / "deploy" / "postgres"),
    "HAPROXY_IMAGE": ("local/scoresvc-haproxy:2.6", ROOT / "deploy" / "haproxy"),
}


@contextmanager
def scoresvc_build_variables(
    env: dict[str, str], budget: Budget, wheels: Path
) -> Iterator[dict[str, str]]:
    """Build arguments for scoresvc's image (the compose files read them from the environment)."""
    if not has_image(env, LOCAL_PYTHON_IMAGE):
        # An engine that can pull python:3.12-slim and reach PyPI: this host's pip settings
        # would mean nothing inside the build.
        yield {"PIP_NO_INDEX": "", "PIP_FIND_LINKS": ""}
        return
    probe = ["docker", "run", "--rm", "--network=none", LOCAL_PYTHON_IMAGE, "python", "-c"]
    version = "import sys; print('%d.%d' % sys.version_info[:2])"
    python_version = run([*probe, version], env, budget.timeout(60)).strip()
    wheelhouse.download_wheels(wheels, python_version, timeout=budget.timeout(120))
    # The build runs on the host's network, so the loopback URL reaches the wheels.
    with wheelhouse.served(wheels) as url:
        yield {"BASE_IMAGE": LOCAL_PYTHON_IMAGE, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": url}


def stand_in_images(env: dict[str, str], budget: Budget) -> dict[str, str]:
    """POSTGRES_IMAGE and HAPROXY_IMAGE built from deploy/ where the engine has no registry."""
    if not has_image(env, LOCAL_DEBIAN_IMAGE):
        return {}  # an engine that pulls the official postgres and haproxy images
    variables = {}
    for variable, (tag, context) in STAND_INS.items():
        # On the host's network, where apt reaches the Debian mirror that built the base image.
        build = ["docker", "build", "--quiet", "--network=host", "--tag", tag]
        build += ["--build-arg", f"BASE_IMAGE={LOCAL_DEBIAN_IMAGE}", str(context)]
        run(build, env, budget.timeout(300))
        variables[variable] = tag
    return variables


def has_image(env: dict[str, str], image: str) -> bool:
    """Whether the engine has image locally."""
    inspect = ["docker", "image", "inspect", image]
    return subprocess.run(inspect, env=env, capture_output=True, timeout=30).returncode == 0
