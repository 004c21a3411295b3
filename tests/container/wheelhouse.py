"""A wheelhouse of the image's dependencies, served on loopback for builds without an index."""

import configparser
import http.server
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from tests.container.docker_engine import ROOT


def requirements() -> list[str]:
    """What building and running the package needs: the build system's and install_requires."""
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    runtime = setup["options"]["install_requires"].split()
    return [*build, *runtime]


def download_wheels(directory: Path, python_version: str, timeout: float) -> None:
    """Wheels of requirements() and their dependencies, for the image's Python, into directory."""
    # Binary wheels only, for the base image's Python version (the host's may differ); the
    # project itself is built from source inside the image, so nothing here writes to the tree.
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--quiet"),
            *("--only-binary=:all:", "--python-version", python_version),
            *("--dest", str(directory)),
            *requirements(),
        ],
        check=True,
        timeout=timeout,
    )


@contextmanager
def served(directory: Path) -> Iterator[str]:
    """Serve directory's listing on 127.0.0.1 (a find-links page for pip); yield its URL."""
    handler = partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # the test's output is for the test; pip's requests are no news
