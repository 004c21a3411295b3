"""The supervisor of worker processes: one set of listening sockets, N workers kept alive on it.

Modelled on gunicorn's arbiter. The sockets are bound once, before any fork, and every worker
inherits them: the kernel hands each new connection to whichever worker accepts it first, and
connections waiting in the backlog outlive a worker that dies. Signal handlers only queue the
signal (and the wakeup fd wakes the main loop); the loop does the work in ordinary code.
"""

import dataclasses
import logging
import os
import select
import shutil
import signal
import socket
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from typing import Any, NamedTuple, Protocol, cast

from waitress.adjustments import Adjustments

from scoresvc.limits import TokenBuckets
from scoresvc.metrics import mark_process_dead
from scoresvc.serving.applier import Applier
from scoresvc.serving.balancing import ConnectionCounts
from scoresvc.serving.worker import (
    WORKER_BOOT_ERROR,
    MakeServer,
    SharedByWorkers,
    Worker,
    WorkersDatabase,
    exit_after,
)
from scoresvc.settings import Settings
from scoresvc.startup import open_ready_database
from scoresvc.storage.database import is_memory_url

# The service's logger: each process's lines say whose they are ("[supervisor]", "[worker 2]").
logger = logging.getLogger("scoresvc")

STOP_TIMEOUT_SECONDS = 30.0
# Where a memory database shared by several workers lives: a file system in memory.
SHARED_MEMORY = "/dev/shm"
# The longest the main loop sleeps with nothing to wake it; signals and dead workers wake it.
_IDLE_SECONDS = 1.0
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# The name of the process that applies the write journal, beside the workers (see applier.py).
APPLIER = "applier"


class Child(Protocol):
    """A process of the service's, after the fork: a worker or the applier."""

    def run(self) -> int:
        """Do its work until SIGTERM; the exit status."""


class EndedProcess(NamedTuple):
    """A process of the service's that has ended, and its exit status as subprocess spells it."""

    name: str  # as the log names it: "worker 2", "applier"
    pid: int
    exit_code: int  # negative: killed by that signal

    def __str__(self) -> str:
        if self.exit_code < 0:
            how = f"was killed by {signal.Signals(-self.exit_code).name}"
        else:
            how = f"exited with status {self.exit_code}"
        return f"{self.name} (pid {self.pid}) {how}"


class Supervisor:
    """Runs settings.workers worker processes on one port until SIGTERM or SIGINT.

    Where the workers' writes wait in a write journal (SQLite), one more process, the
    applier, applies it for all of them. A process that dies is replaced at once, under the
    same name; one that cannot boot stops the service. Each process opens its own database
    after the fork, so no database connection, lock or thread crosses a fork.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        make_server: MakeServer,
        stop_timeout: float = STOP_TIMEOUT_SECONDS,
    ) -> None:
        self._settings = settings
        self._make_server = make_server
        self._stop_timeout = stop_timeout
        self._sockets: list[socket.socket] = []
        self._database = WorkersDatabase(settings, None)
        self._shared = SharedByWorkers(None, None)
        self._children: dict[int, str] = {}  # pid: its name in the log, "worker 2" or APPLIER
        self._signals: deque[int] = deque()
        self._wakeup_pipe = (-1, -1)  # (read, write): signal.set_wakeup_fd writes to it

    def run(self) -> int:
        """Bind, check the database, start the workers and keep them; the exit status.

        Raises what opening the sockets or the database raises, before any worker starts.
        """
        with ExitStack() as cleanup:
            # Bound first: a port in use stops the start before anything else is made or said.
            self._sockets = listening_sockets(self._settings.host, self._settings.port)
            for sock in self._sockets:
                cleanup.callback(sock.close)
            self._database = cleanup.enter_context(database_for_workers(self._settings))
            # Make the database ready once, here, so that workers do not race to; and fail
            # now, with a message, if it cannot be opened at all.
            database = open_ready_database(self._database.settings)
            try:
                applier = database.writes_journaled
            finally:
                database.close()
            self._database = self._database._replace(applier=applier)
            self._shared = cleanup.enter_context(shared_by_workers(self._settings))
            cleanup.enter_context(self._signals_queued())
            self._start_missing_processes()
            for sock in self._sockets:
                logger.info("serving on %s", http_url(*sock.getsockname()[:2]))
            return self._supervise()

    def _supervise(self) -> int:
        while True:
            self._sleep(_IDLE_SECONDS)
            stop = any(signum in _STOP_SIGNALS for signum in self._take_signals())
            ended = self._reap_children()
            for process in ended:
                logger.warning("%s", process)
            booting = [process for process in ended if process.exit_code == WORKER_BOOT_ERROR]
            if booting:
                logger.error("%s could not boot: the service stops", booting[0].name)
                self._stop_children()
                return 1
            if stop:
                self._stop_children()
                return 0
            self._start_missing_processes()

    def _start_missing_processes(self) -> None:
        running = set(self._children.values())
        for number in range(1, self._settings.workers + 1):
            if f"worker {number}" not in running:
                worker = Worker(
                    number, self._sockets, self._database, self._make_server, self._shared
                )
                self._start(f"worker {number}", worker, serving=True)
        if self._database.applier and APPLIER not in running:
            self._start(
                APPLIER, Applier(self._database, self._shared.metrics_directory), serving=False
            )

    def _start(self, name: str, child: Child, *, serving: bool) -> None:
        # A stop signal that reached the child before it had handlers of its own would run the
        # supervisor's, queueing it for a loop the child never runs: the signals are blocked
        # over the fork, and the child unblocks them once its handlers are in place.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                exit_after(lambda: self._hand_over_to(child, serving=serving))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self._children[pid] = name
        logger.info("%s started, pid %d", name, pid)

    def _hand_over_to(self, child: Child, *, serving: bool) -> int:
        # In the child: the supervisor's wakeup pipe is none of its business, nor are the
        # listening sockets of one that does not serve.
        signal.set_wakeup_fd(-1)
        for end in self._wakeup_pipe:
            os.close(end)
        if not serving:
            for sock in self._sockets:
                sock.close()
        return child.run()

    def _reap_children(self) -> list[EndedProcess]:
        """Collect every process of the service's that has ended since the last call."""
        ended = []
        while self._children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in self._children:
                name = self._children.pop(pid)
                ended.append(EndedProcess(name, pid, os.waitstatus_to_exitcode(status)))
                self._forget(pid)
        return ended

    def _forget(self, pid: int) -> None:
        # A worker's connections count no more, and its live gauge goes (it no longer serves);
        # what it counted stays in the totals.
        if self._shared.connections is not None:
            self._shared.connections.forget(pid)
        if self._shared.metrics_directory is not None:
            mark_process_dead(pid, self._shared.metrics_directory)

    def _stop_children(self) -> None:
        """SIGTERM to every process; wait up to the stop timeout, then SIGKILL what is left."""
        if self._children:
            logger.info("stopping %s", ", ".join(sorted(self._children.values())))
        self._signal_children(signal.SIGTERM)
        deadline = time.monotonic() + self._stop_timeout
        while self._children and time.monotonic() < deadline:
            self._sleep(deadline - time.monotonic())
            self._take_signals()  # a second SIGTERM or SIGINT changes nothing: already stopping
            for process in self._reap_children():
                logger.info("%s", process)
        if self._children:
            logger.warning(
                "%d processes still running after %gs: killing them",
                len(self._children),
                self._stop_timeout,
            )
            self._signal_children(signal.SIGKILL)
            for pid, name in list(self._children.items()):
                _, status = os.waitpid(pid, 0)
                del self._children[pid]
                self._forget(pid)
                logger.info("%s", EndedProcess(name, pid, os.waitstatus_to_exitcode(status)))
        logger.info("stopped")

    def _signal_children(self, signum: int) -> None:
        for pid in self._children:
            with suppress(ProcessLookupError):  # ended, though not yet reaped
                os.kill(pid, signum)

    @contextmanager
    def _signals_queued(self) -> Iterator[None]:
        """While inside, SIGTERM, SIGINT and SIGCHLD are queued and wake _sleep()."""
        read_end, write_end = self._wakeup_pipe = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        handled = (*_STOP_SIGNALS, signal.SIGCHLD)
        previous = {signum: signal.signal(signum, self._queue_signal) for signum in handled}
        previous_wakeup = signal.set_wakeup_fd(write_end)
        try:
            yield
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(read_end)
            os.close(write_end)

    def _queue_signal(self, signum: int, _frame: object) -> None:
        # All a handler does: the wakeup fd has already written a byte that ends _sleep().
        self._signals.append(signum)

    def _take_signals(self) -> list[int]:
        return [self._signals.popleft() for _ in range(len(self._signals))]

    def _sleep(self, seconds: float) -> None:
        """Wait up to seconds, or until a signal arrives."""
        wakeup = self._wakeup_pipe[0]
        if not self._signals:
            select.select([wakeup], [], [], max(seconds, 0))
        with suppress(BlockingIOError):
            while os.read(wakeup, 512):
                pass


def listening_sockets(host: str, port: int) -> list[socket.socket]:
    """Sockets listening on host and port, bound as waitress binds them, for workers to share."""
    # waitress's own resolution of host and port into addresses, so that a worker listens
    # where a one-process server would.
    adjustments = Adjustments(host=host, port=port)
    # getaddrinfo()'s (family, type, protocol, address) for each: types-waitress says list[str].
    addresses = cast(list[tuple[int, int, int, tuple[Any, ...]]], adjustments.listen)
    sockets: list[socket.socket] = []
    try:
        for family, kind, protocol, address in addresses:
            sock = socket.socket(family, kind, protocol)
            sockets.append(sock)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(adjustments.backlog)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


@contextmanager
def database_for_workers(settings: Settings) -> Iterator[WorkersDatabase]:
    """settings' database, made one that every worker can open while inside.

    A memory database is one process's: for several, it becomes a file in a private
    directory in SHARED_MEMORY (memory too, so nothing reaches a disk), removed on the way out.
    """
    if not is_memory_url(settings.database_url):
        yield WorkersDatabase(settings, None)
        return
    if not os.path.isdir(SHARED_MEMORY):
        raise FileNotFoundError(
            f"a memory database shared by several workers lives in {SHARED_MEMORY}, which this "
            "system lacks: give a database file (--database sqlite:////path/scores.db) or run "
            "one worker"
        )
    directory = tempfile.mkdtemp(prefix="scoresvc-", dir=SHARED_MEMORY)  # mode 0700
    try:
        logger.info("memory database for the workers in %s", directory)
        # synchronous OFF: syncing a file in memory buys nothing and costs every write.
        in_memory = f"sqlite:///{directory}/scores.db"
        yield WorkersDatabase(
            dataclasses.replace(settings, database_url=in_memory, sqlite_synchronous="OFF"),
            directory,
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def shared_by_workers(settings: Settings) -> Iterator[SharedByWorkers]:
    """The rate limits' table, the workers' connection counts, and a fresh metrics directory
    (if metrics are on), while inside.

    All are made before any fork, so that every worker, and every worker that replaces one,
    shares them; the directory is in SHARED_MEMORY where there is one (its files are written
    on every request), and is removed on the way out.
    """
    buckets = TokenBuckets(shared=True)
    connections = ConnectionCounts(settings.workers)
    directory = None
    try:
        if settings.metrics:
            memory = SHARED_MEMORY if os.path.isdir(SHARED_MEMORY) else None
            directory = tempfile.mkdtemp(prefix="scoresvc-metrics-", dir=memory)  # mode 0700
            logger.info("metrics of the workers in %s", directory)
        yield SharedByWorkers(buckets, directory, connections)
    finally:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        connections.close()
        buckets.close()


def http_url(host: str, port: int) -> str:
    """The URL of a server listening on host (a name, an IPv4 or an IPv6 address) and port."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
