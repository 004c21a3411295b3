"""A worker process, after the fork: boot its own app, then serve the inherited sockets."""

import ctypes
import logging
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack, suppress
from types import FrameType
from typing import NamedTuple, NoReturn, Protocol, TypeVar

from scoresvc.application import ScoreApp, create_app
from scoresvc.errors import DatabaseUnavailable
from scoresvc.limits import TokenBuckets
from scoresvc.logconfig import configure_logging
from scoresvc.metrics import Metrics
from scoresvc.serving.balancing import ConnectionCounts, ConnectionShare
from scoresvc.settings import Settings
from scoresvc.storage.database import Database, open_database

# The service's logger: each process's lines say whose they are ("[supervisor]", "[worker 2]").
logger = logging.getLogger("scoresvc")

# A worker's exit status when it could not start serving. Another would fail the same way, so
# the supervisor stops the service instead of replacing workers in a loop (gunicorn's rule).
WORKER_BOOT_ERROR = 3
# How often a booting worker tries again to open a database that does not answer.
_DATABASE_RETRY_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

Opened = TypeVar("Opened")


class Server(Protocol):
    """What the supervisor needs of a worker's server: waitress's run() and close()."""

    def run(self) -> None: ...

    def close(self) -> None: ...


# (app, settings, the listening sockets, the worker's share of the connections) -> its server
MakeServer = Callable[[ScoreApp, Settings, list[socket.socket], ConnectionShare | None], Server]


class WorkersDatabase(NamedTuple):
    """The database settings every worker opens, and the directory the service keeps it in."""

    settings: Settings
    directory: str | None  # a memory database's, in SHARED_MEMORY: removed when the service ends
    # Whether the supervisor's applier applies the write journal: a worker then applies it only
    # before its own reads (see applier.py).
    applier: bool = False

    def open(self) -> Database:
        """The database, made ready by the supervisor, as a process of the service opens it."""
        return open_database(
            self.settings.database_url,
            synchronous=self.settings.sqlite_synchronous,
            query_timeout=self.settings.query_timeout,
            background_apply=not self.applier,
        )


class SharedByWorkers(NamedTuple):
    """What the supervisor makes before the fork for all its workers, and removes at the end."""

    buckets: TokenBuckets | None  # the rate limits' table
    metrics_directory: str | None  # where the workers' series are kept; None: metrics off
    connections: ConnectionCounts | None = None  # each worker's open connections


class StopSignals:
    """Signals that stop a waitress server, handled safely before, during and after its loop.

    waitress's loop ends when a signal handler raises SystemExit inside it. Raised anywhere
    else (in the middle of logging a line, or of starting a thread), that exception would
    leave things half done: so a signal is only noted until run() begins the loop, and after
    the first one ends it.
    """

    def __init__(self, *signums: int) -> None:
        self._signums = signums
        self.received = False
        self._handle_with(self._note)

    def run(self, server: Server) -> None:
        """Run server's loop until one of the signals comes: at once if one already has."""
        with suppress(SystemExit):
            try:
                self._handle_with(self._end_loop)
                if not self.received:
                    server.run()  # returns once a signal raised SystemExit inside its loop
            finally:
                self._handle_with(self._note)

    def _handle_with(self, handler: Callable[[int, FrameType | None], None]) -> None:
        for signum in self._signums:
            signal.signal(signum, handler)

    def _note(self, _signum: int, _frame: object) -> None:
        self.received = True

    def _end_loop(self, signum: int, frame: object) -> None:
        self._handle_with(self._note)  # once: a second signal must not cut the stop short
        self._note(signum, frame)
        raise SystemExit(0)


class Worker:
    """One worker process, after the fork: boot, then serve the inherited sockets until SIGTERM."""

    def __init__(
        self,
        number: int,
        sockets: list[socket.socket],
        database: WorkersDatabase,
        make_server: MakeServer,
        shared: SharedByWorkers | None = None,
    ) -> None:
        self.number = number
        self._sockets = sockets
        self._database = database
        self._shared = shared or SharedByWorkers(None, None)
        self._settings = database.settings
        self._make_server = make_server
        counts = self._shared.connections
        self._share = None if counts is None else counts.share(number)
        self._supervisor_pid = os.getpid()  # made before the fork, in the supervisor

    def run(self) -> int:
        """Serve until SIGTERM or the supervisor's death; the exit status."""
        stop_signals = settle_in(f"worker {self.number}", self._settings)
        try:
            booted = self._boot(stop_signals)
        except Exception:
            logger.exception("cannot boot")
            return WORKER_BOOT_ERROR
        if booted is None:  # stopped while it waited for the database
            return 0
        app, server = booted
        logger.info("ready, pid %d", os.getpid())
        with ExitStack() as cleanup:  # the server closes first, then the app
            cleanup.callback(app.close)
            cleanup.callback(server.close)
            if self._share is not None:
                cleanup.callback(self._share.leave)  # first: no other waits for this one
            stop_signals.run(server)
        logger.info("stopped")
        remove_what_a_killed_supervisor_left(
            self._supervisor_pid, (self._database.directory, self._shared.metrics_directory)
        )
        return 0

    def _boot(self, stop_signals: StopSignals) -> tuple[ScoreApp, Server] | None:
        """The app and its server, or None if a stop came while the database did not answer."""
        stop_when_parent_dies(self._supervisor_pid)
        app = self._app_once_the_database_answers(stop_signals)
        if app is None:
            return None
        try:
            return app, self._make_server(app, self._settings, self._sockets, self._share)
        except BaseException:
            app.close()
            raise

    def _app_once_the_database_answers(self, stop_signals: StopSignals) -> ScoreApp | None:
        directory = self._shared.metrics_directory
        metrics = None if directory is None else Metrics(directory)
        return once_the_database_answers(
            lambda: create_app(
                self._settings,
                database=self._database.open(),
                metrics=metrics,
                buckets=self._shared.buckets,
            ),
            stop_signals,
        )


def remove_what_a_killed_supervisor_left(
    supervisor_pid: int, directories: Iterable[str | None]
) -> None:
    """Remove the directories (memory database, metrics) if the supervisor died without doing so.

    A supervisor killed outright (SIGKILL, the OOM killer) cannot remove what it made; the
    processes it forked, which PR_SET_PDEATHSIG stops, can. Nothing in them outlives the
    service anyway. Each process removes them as it ends, after its own last write: one that
    removes while another still writes may leave a file behind, which the other removes.
    """
    if os.getppid() == supervisor_pid:
        return
    for directory in directories:
        if directory:
            shutil.rmtree(directory, ignore_errors=True)


def settle_in(process_name: str, settings: Settings) -> StopSignals:
    """What a process forked by the supervisor does first: its own signals and log lines."""
    # Ctrl-C in a terminal sends SIGINT to the whole process group: the supervisor turns it
    # into a SIGTERM for each of its processes, so that each stops the one graceful way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    stop_signals = StopSignals(signal.SIGTERM)
    # Blocked by the supervisor over the fork: one sent since is delivered now, to ours.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    configure_logging(settings.logfile, process_name=process_name)
    return stop_signals


def once_the_database_answers(
    make: Callable[[], Opened], stop_signals: StopSignals
) -> Opened | None:
    """make(), tried again while it raises DatabaseUnavailable; None if a stop came first.

    The database answered the supervisor's check at the start. A process replaced while it
    does not (PostgreSQL restarting) waits for it, as the serving workers do (answering 503),
    rather than fail to boot, which would stop the whole service.
    """
    waiting = False
    while not stop_signals.received:
        try:
            return make()
        except DatabaseUnavailable as error:
            if not waiting:
                logger.warning("waiting for the database: %s", error)
                waiting = True
            time.sleep(_DATABASE_RETRY_SECONDS)
    return None


def exit_after(work: Callable[[], int]) -> NoReturn:
    """Run work() in a forked child and exit with its status, whatever happens.

    The child must never return into the supervisor's frames, whose cleanup (the sockets,
    the memory database) is the supervisor's alone.
    """
    exit_code = 1
    try:
        exit_code = work()
    except BaseException:
        logger.exception("worker failed")
    finally:
        try:
            logging.shutdown()  # writes the lines still queued: os._exit skips exit hooks
        finally:
            os._exit(exit_code)


def stop_when_parent_dies(parent: int) -> None:
    """Have the kernel send this process SIGTERM when its parent dies, however it dies.

    Linux's PR_SET_PDEATHSIG needs no thread and no polling, and covers a supervisor killed
    with SIGKILL, which has no chance to stop its workers. (It fires when the thread that
    forked ends: the supervisor forks from its main thread.) Elsewhere this does nothing.
    """
    prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
    if prctl is None:
        return
    if prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # it died before the call above
        os.kill(os.getpid(), signal.SIGTERM)
