"""A Compose project of one of the repository's compose files, run under a time budget."""

import subprocess
import time
from pathlib import Path

from tests.container.docker_engine import ROOT

# Each compose file of the repository, with the test's override laid over it.
SINGLE_FILES = (ROOT / "docker-compose.yml", Path(__file__).with_name("compose.test.yml"))
CLUSTER_FILES = (ROOT / "docker-compose.cluster.yml", Path(__file__).with_name("cluster.test.yml"))


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
    """`docker compose -p <name>` over a compose file and its test override."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        budget: Budget,
        files: tuple[Path, ...] = SINGLE_FILES,
    ) -> None:
        self.name = name
        self.env = env
        self.budget = budget
        self.files = files

    def compose(self, *args: str, at_most: float = 60, extra_env: dict | None = None) -> str:
        """Run one compose command and return its stdout; fail with its output on error."""
        env = {**self.env, **(extra_env or {})}
        return run([*self._command, *args], env, timeout=self.budget.timeout(at_most))

    def up(self, wait_seconds: int) -> None:
        """`up --detach --wait`; if a service does not become healthy, fail with its logs."""
        wait = ("--wait", "--wait-timeout", str(wait_seconds))
        try:
            self.compose("up", "--detach", *wait, at_most=wait_seconds + 30)
        except AssertionError as error:
            logs = run([*self._command, "logs", "--no-color", "--tail", "40"], self.env, 30, False)
            raise AssertionError(f"{error}\nThe services' last log lines:\n{logs}") from None

    def down(self) -> None:
        """Remove the containers, the volume and the image, whatever the budget says."""
        run([*self._command, "down", "-v", "--rmi", "local", "-t", "10"], self.env, 120, False)

    @property
    def _command(self) -> list[str]:
        files = [argument for path in self.files for argument in ("-f", str(path))]
        return ["docker", "compose", "-p", self.name, *files]

    def inspect(self, template: str) -> str:
        """`docker inspect --format template` of the scoresvc container (running or stopped)."""
        container = self.compose("ps", "--all", "--quiet", "scoresvc").strip()
        command = ["docker", "inspect", "--format", template, container]
        return run(command, self.env, timeout=self.budget.timeout(30)).strip()

    def container(self, service: str, replica: int) -> str:
        """The name Compose gives replica (1, 2, ...) of service."""
        return f"{self.name}-{service}-{replica}"

    def published_port(self, service: str, replica: int, port: int) -> int:
        """The loopback port at which replica (1, 2, ...) of service publishes port."""
        address = self.compose("port", "--index", str(replica), service, str(port))
        return int(address.strip().rsplit(":", 1)[1])

    def docker(self, *args: str, at_most: float = 60) -> str:
        """Run one plain docker command (kill, logs, ...) on this engine; its stdout."""
        return run(["docker", *args], self.env, timeout=self.budget.timeout(at_most))


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
