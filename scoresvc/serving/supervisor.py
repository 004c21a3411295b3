"""The supervisor of worker processes: one set of listening sockets, N workers kept alive on it.

Modelled on gunicorn's arbiter. The sockets are bound once, before any fork, and every worker
inherits them: the kernel hands each new connection to whichever worker accepts it first, and
connections waiting in the backlog outlive a worker that dies. Signal handlers only queue the
signal (and the wakeup fd wakes the main loop); the loop does the work in ordinary code.
"""

import ctypes
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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from typing import NamedTuple, NoReturn, Protocol

from waitress.adjustments import Adjustments

from scoresvc.application import ScoreApp, create_app
from scoresvc.errors import DatabaseUnavailable
from scoresvc.logconfig import configure_logging
from scoresvc.settings import Settings
from scoresvc.storage.database import is_memory_url

# The service's logger: each process's lines say whose they are ("[supervisor]", "[worker 2]").
logger = logging.getLogger("scoresvc")

# A worker's exit status when it could not start serving. Another would fail the same way, so
# the supervisor stops the service instead of replacing workers in a loop (gunicorn's rule).
WORKER_BOOT_ERROR = 3
STOP_TIMEOUT_SECONDS = 30.0
# Where a memory database shared by several workers lives: a file system in memory.
SHARED_MEMORY = "/dev/shm"
# The longest the main loop sleeps with nothing to wake it; signals and dead workers wake it.
_IDLE_SECONDS = 1.0
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# How often a booting worker tries again to open a database that does not answer.
_DATABASE_RETRY_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class Server(Protocol):
    """What the supervisor needs of a worker's server: waitress's run() and close()."""

    def run(self) -> None: ...

    def close(self) -> None: ...


MakeServer = Callable[[ScoreApp, Settings, list[socket.socket]], Server]


class WorkersDatabase(NamedTuple):
    """The database settings every worker opens, and the directory the service keeps it in."""

    settings: Settings
    directory: str | None  # a memory database's, in SHARED_MEMORY: removed when the service ends


class EndedWorker(NamedTuple):
    """A worker process that has ended, and its exit status as subprocess spells it."""

    number: int
    pid: int
    exit_code: int  # negative: killed by that signal

    def __str__(self) -> str:
        if self.exit_code < 0:
            how = f"was killed by {signal.Signals(-self.exit_code).name}"
        else:
            how = f"exited with status {self.exit_code}"
        return f"worker {self.number} (pid {self.pid}) {how}"


class Supervisor:
    """Runs settings.workers worker processes on one port until SIGTERM or SIGINT.

    A worker that dies is replaced at once, under the same number; one that cannot boot
    stops the service. Each worker builds its own app after the fork, so no database
    connection, lock or thread crosses a fork.
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
        self._workers: dict[int, int] = {}  # pid: worker number
        self._signals: deque[int] = deque()
        self._wakeup_pipe = (-1, -1)  # (read, write): signal.set_wakeup_fd writes to it

    def run(self) -> int:
        """Bind, check the database, start the workers and keep them; the exit status.

        Raises what opening the sockets or the database raises, before any worker starts.
        """
        with ExitStack() as cleanup:
            self._database = cleanup.enter_context(database_for_workers(self._settings))
            self._sockets = listening_sockets(self._settings.host, self._settings.port)
            for sock in self._sockets:
                cleanup.callback(sock.close)
            # Migrate the database and make the signing secret once, here, so that workers
            # do not race to; and fail now, with a message, if it cannot be opened at all.
            create_app(self._database.settings).close()
            cleanup.enter_context(self._signals_queued())
            self._start_missing_workers()
            for sock in self._sockets:
                logger.info("serving on %s", http_url(*sock.getsockname()[:2]))
            return self._supervise()

    def _supervise(self) -> int:
        while True:
            self._sleep(_IDLE_SECONDS)
            stop = any(signum in _STOP_SIGNALS for signum in self._take_signals())
            ended = self._reap_workers()
            for worker in ended:
                logger.warning("%s", worker)
            if any(worker.exit_code == WORKER_BOOT_ERROR for worker in ended):
                logger.error("a worker could not boot: the service stops")
                self._stop_workers()
                return 1
            if stop:
                self._stop_workers()
                return 0
            self._start_missing_workers()

    def _start_missing_workers(self) -> None:
        running = set(self._workers.values())
        for number in range(1, self._settings.workers + 1):
            if number not in running:
                self._start_worker(number)

    def _start_worker(self, number: int) -> None:
        worker = Worker(number, self._sockets, self._database, self._make_server)
        pid = os.fork()
        if pid == 0:
            _exit_after(lambda: self._hand_over_to(worker))
        self._workers[pid] = number
        logger.info("worker %d started, pid %d", number, pid)

    def _hand_over_to(self, worker: "Worker") -> int:
        # In the child: the supervisor's wakeup pipe is none of the worker's business.
        signal.set_wakeup_fd(-1)
        for end in self._wakeup_pipe:
            os.close(end)
        return worker.run()

    def _reap_workers(self) -> list[EndedWorker]:
        """Collect every worker that has ended since the last call."""
        ended = []
        while self._workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in self._workers:
                number = self._workers.pop(pid)
                ended.append(EndedWorker(number, pid, os.waitstatus_to_exitcode(status)))
        return ended

    def _stop_workers(self) -> None:
        """SIGTERM to every worker; wait up to the stop timeout, then SIGKILL what is left."""
        if self._workers:
            numbers = ", ".join(map(str, sorted(self._workers.values())))
            logger.info("stopping workers %s", numbers)
        self._signal_workers(signal.SIGTERM)
        deadline = time.monotonic() + self._stop_timeout
        while self._workers and time.monotonic() < deadline:
            self._sleep(deadline - time.monotonic())
            self._take_signals()  # a second SIGTERM or SIGINT changes nothing: already stopping
            for worker in self._reap_workers():
                logger.info("%s", worker)
        if self._workers:
            logger.warning(
                "%d workers still running after %gs: killing them",
                len(self._workers),
                self._stop_timeout,
            )
            self._signal_workers(signal.SIGKILL)
            for pid, number in list(self._workers.items()):
                _, status = os.waitpid(pid, 0)
                del self._workers[pid]
                logger.info("%s", EndedWorker(number, pid, os.waitstatus_to_exitcode(status)))
        logger.info("stopped")

    def _signal_workers(self, signum: int) -> None:
        for pid in self._workers:
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

    def _handle_with(self, handler: Callable) -> None:
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
    ) -> None:
        self.number = number
        self._sockets = sockets
        self._database = database
        self._settings = database.settings
        self._make_server = make_server
        self._supervisor_pid = os.getpid()  # made before the fork, in the supervisor

    def run(self) -> int:
        """Serve until SIGTERM or the supervisor's death; the exit status."""
        # Ctrl-C in a terminal sends SIGINT to the whole process group: the supervisor turns
        # it into a SIGTERM for each worker, so that every worker stops the one graceful way.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        stop_signals = StopSignals(signal.SIGTERM)
        configure_logging(self._settings.logfile, process_name=f"worker {self.number}")
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
            stop_signals.run(server)
        logger.info("stopped")
        self._remove_what_a_killed_supervisor_left()
        return 0

    def _remove_what_a_killed_supervisor_left(self) -> None:
        # A supervisor killed outright (SIGKILL, the OOM killer) cannot remove the memory
        # database it made; its workers, which PR_SET_PDEATHSIG stops, can. Nothing in it
        # outlives the service anyway.
        if self._database.directory and os.getppid() != self._supervisor_pid:
            shutil.rmtree(self._database.directory, ignore_errors=True)

    def _boot(self, stop_signals: StopSignals) -> tuple[ScoreApp, Server] | None:
        """The app and its server, or None if a stop came while the database did not answer."""
        stop_when_parent_dies(self._supervisor_pid)
        app = self._app_once_the_database_answers(stop_signals)
        if app is None:
            return None
        try:
            return app, self._make_server(app, self._settings, self._sockets)
        except BaseException:
            app.close()
            raise

    def _app_once_the_database_answers(self, stop_signals: StopSignals) -> ScoreApp | None:
        # The database answered the supervisor's check at the start. A worker replaced while it
        # does not (PostgreSQL restarting) waits for it, as the serving workers do (answering
        # 503), rather than fail to boot, which would stop the whole service.
        waiting = False
        while not stop_signals.received:
            try:
                return create_app(self._settings)
            except DatabaseUnavailable as error:
                if not waiting:
                    logger.warning("waiting for the database: %s", error)
                    waiting = True
                time.sleep(_DATABASE_RETRY_SECONDS)
        return None


def _exit_after(work: Callable[[], int]) -> NoReturn:
    # A forked child runs work() and exits with its status, whatever happens: it must never
    # return into the supervisor's frames, whose cleanup (the sockets, the memory database)
    # is the supervisor's alone.
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


def listening_sockets(host: str, port: int) -> list[socket.socket]:
    """Sockets listening on host and port, bound as waitress binds them, for workers to share."""
    # waitress's own resolution of host and port into addresses, so that a worker listens
    # where a one-process server would.
    adjustments = Adjustments(host=host, port=port)
    sockets: list[socket.socket] = []
    try:
        for family, kind, protocol, address in adjustments.listen:
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


def http_url(host: str, port: int) -> str:
    """The URL of a server listening on host (a name, an IPv4 or an IPv6 address) and port."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
