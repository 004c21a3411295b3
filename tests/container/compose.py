"""A Compose project of the repository's docker-compose.yml, run under a time budget."""

import subprocess
import time
from pathlib import Path

from tests.container.docker_engine import ROOT

OVERRIDE = Path(__file__).with_name("compose.test.yml")


class Budget:
    """A deadline shared by every command of a test run, so the whole run stays bounded."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def timeout(self, at_most: float) -> float:
        """Seconds a command may take: at_most, or less if the budget is nearly spent."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the container test ran out of its time budget")
        return min(at_most, left)


class ComposeProject:
    """`docker compose -p <name>` over docker-compose.yml and the test override."""

    def __init__(self, name: str, env: dict[str, str], budget: Budget) -> None:
        self.name = name
        self.env = env
        self.budget = budget

    def compose(self, *args: str, at_most: float = 60, extra_env: dict | None = None) -> str:
        """Run one compose command and return its stdout; fail with its output on error."""
        env = {**self.env, **(extra_env or {})}
        return run([*self._command, *args], env, timeout=self.budget.timeout(at_most))

    def down(self) -> None:
        """Remove the containers, the volume and the image, whatever the budget says."""
        run([*self._command, "down", "-v", "--rmi", "local", "-t", "10"], self.env, 120, False)

    @property
    def _command(self) -> list[str]:
        files = ["-f", str(ROOT / "docker-compose.yml"), "-f", str(OVERRIDE)]
        return ["docker", "compose", "-p", self.name, *files]

    def inspect(self, template: str) -> str:
        """`docker inspect --format template` of the scoresvc container (running or stopped)."""
        container = self.compose("ps", "--all", "--quiet", "scoresvc").strip()
        command = ["docker", "inspect", "--format", template, container]
        return run(command, self.env, timeout=self.budget.timeout(30)).strip()


def run(command: list[str], env: dict[str, str], timeout: float, check: bool = True) -> str:
    """Run command; its stdout, or an AssertionError carrying its output when it fails."""
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}"
            f"\n{done.stderr[-4000:]}"
        )
    return done.stdout
