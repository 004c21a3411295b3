"""Where the service's log lines go: stderr, and a log file when one is configured."""

import errno
import logging
import os
import select
import stat
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from typing import TextIO

from scoresvc.batchthread import BatchThread

_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"
_LOGGERS = ("scoresvc", "waitress")
_QUEUE_WARNINGS = "waitress.queue"  # waitress's logger for 'Task queue depth is N'
# After a write, the writer thread lets lines gather this long: under load, one write() and
# one hand-over of the GIL then serve a few dozen requests. A line is at most this late.
_GATHER_SECONDS = 0.005
# Lines queued beyond this are written by the thread that logs them: memory stays bounded.
_MAX_QUEUED_LINES = 10_000
# A pipe takes a write of up to PIPE_BUF bytes whole, so lines that several processes write to
# one pipe (workers sharing the supervisor's stderr) never mix if no line is longer.
_PIPE_BUF = getattr(select, "PIPE_BUF", 512)  # POSIX promises at least 512
_CUT_MARKER = " [...{cut} characters cut...] "
# The log file is opened for appends only, and never through a symbolic link: whoever may
# write its directory could otherwise point the service's lines at any file it may write.
_LOG_FILE_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC


class LogFileRefused(ValueError):
    """A log file path the service will not write to: a symbolic link stands there."""


def open_log_file(path: str) -> int:
    """path opened for appending; made owner-only (0600) whatever the umask, if it is new."""
    # A file that exists keeps the mode its owner gave it: a log reader's group may be let in
    # on purpose (logrotate's `create 0640 scoresvc adm`). configure_logging warns about one
    # that every user may read: the lines carry user ids and client addresses.
    while True:
        try:
            descriptor = os.open(path, _LOG_FILE_FLAGS | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # (a symbolic link too, even a dangling one: refused below)
        except OSError as error:
            _refuse_a_link(path, error)
            raise
        else:
            os.fchmod(descriptor, 0o600)  # the umask may have taken the owner's bits too
            return descriptor
        try:
            return os.open(path, _LOG_FILE_FLAGS)
        except FileNotFoundError:
            continue  # removed since (rotated): made afresh
        except OSError as error:
            _refuse_a_link(path, error)
            raise


def _refuse_a_link(path: str, error: OSError) -> None:
    # O_NOFOLLOW answers ELOOP for a link, as it does for a loop of links among directories.
    if error.errno == errno.ELOOP and os.path.islink(path):
        message = f"the log file {path} is a symbolic link: give the path of the file itself"
        raise LogFileRefused(message) from error


class LineFormatter(logging.Formatter):
    """The service's line: `2026-11-23 19:56:08,045 INFO [scoresvc.access] message`.

    Given the name of the process that writes it (one of a service's several processes), the
    line says which it is: `2026-11-23 19:56:08,045 INFO [scoresvc.access] [worker 2] message`.
    """

    def __init__(self, process_name: str | None = None) -> None:
        self._tag = f"[{process_name}] " if process_name else ""
        super().__init__(
            _FORMAT.replace("%(message)s", self._tag.replace("%", "%%") + "%(message)s")
        )
        self._second: tuple[int, str] = (-1, "")  # one tuple: threads replace it whole

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self._timestamp(int(record.created), int(record.msecs))

    def line(self, created: float, level_name: str, logger_name: str, message: str) -> str:
        """The line format(record) gives for a record with these fields (no exception)."""
        second = int(created)
        stamp = self._timestamp(second, int((created - second) * 1000))
        return f"{stamp} {level_name} [{logger_name}] {self._tag}{message}"  # _FORMAT, spelled out

    def _timestamp(self, second: int, milliseconds: int) -> str:
        # The date and time of day change once a second: strftime once a second, not per line.
        cached_second, text = self._second
        if second != cached_second:
            text = time.strftime(self.default_time_format, self.converter(second))
            self._second = (second, text)
        return f"{text},{milliseconds:03d}"


class LineWriter(logging.Handler):
    """Writes each record as one line to every output, from a thread of its own.

    A line is formatted once, whatever the number of outputs. Callers that make their own
    lines (the access log) can hand them over with write_message(), with no LogRecord at all.
    No line is written longer than PIPE_BUF bytes (see _capped), and each goes out in one
    write(), so the lines of processes sharing an output never tear or interleave.
    """

    formatter: LineFormatter  # set once, in __init__
    _scoresvc: bool  # True on the one configure_logging() installs

    def __init__(
        self, streams: list[TextIO], paths: list[str], *, process_name: str | None = None
    ) -> None:
        own = [open_log_file(path) for path in paths]  # first: a path refused leaves nothing
        super().__init__()
        self.setFormatter(LineFormatter(process_name))
        self._queued: deque[bytes] = deque()  # appends and pops are atomic: no lock needed
        self._write_lock = threading.Lock()  # one writer at a time, so lines keep their order
        self._writer = _writer_thread(self.flush)
        _line_writers.add(self)
        self._descriptors: list[int] = []
        self._streams: list[TextIO] = []  # outputs with no file descriptor (tests' captures)
        for stream in streams:
            try:
                stream.flush()
                self._descriptors.append(stream.fileno())
            except (AttributeError, OSError, ValueError):
                self._streams.append(stream)
        self._own = own
        self._descriptors += own

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write_line(self.format(record))
        except Exception:
            self.handleError(record)

    def write_message(self, logger_name: str, level_name: str, message: str) -> None:
        """Write message as the line a record of that logger and level, made now, would give."""
        self.write_line(self.formatter.line(time.time(), level_name, logger_name, message))

    def write_line(self, line: str) -> None:
        """Queue line for the writer thread, which writes it at once or with the write under way.

        The caller never waits for a write() nor makes a system call, which would hand the
        GIL to another thread and wait to get it back: on a busy server that costs a request
        more than answering it does. Alone, a line is written as soon as the writer thread
        wakes; under load, the lines that queue during one write share the next.
        """
        self._queued.append(_capped(f"{line}\n".encode("utf-8", "backslashreplace")))
        if self._writer.closing or len(self._queued) > _MAX_QUEUED_LINES:
            # After close() no writer thread is left to write it; and if the output cannot
            # keep up (a slow pipe), callers wait for it rather than queue without bound.
            self.flush()
        else:
            self._writer.wake()

    def flush(self) -> None:
        """Write every line queued so far, in order, before returning."""
        with self._write_lock:
            lines = [self._queued.popleft() for _ in range(len(self._queued))]
            try:
                for piece in _pieces(lines):
                    self._write_everywhere(piece)
            except (OSError, ValueError):
                # Lost (a full disk, a closed pipe or stream); later lines are still tried.
                lost = {"msg": "%d log lines not written", "args": (len(lines),)}
                self.handleError(logging.makeLogRecord(lost))

    def _write_everywhere(self, lines: bytes) -> None:
        for descriptor in self._descriptors:
            written = os.write(descriptor, lines)
            while written < len(lines):  # a write cut short (a signal, a full pipe)
                written += os.write(descriptor, lines[written:])
        for stream in self._streams:
            stream.write(lines.decode("utf-8"))
            stream.flush()

    def close(self) -> None:
        """Write what is queued, stop the writer thread and close the log files it opened."""
        self._writer.close()
        self.flush()
        with self._write_lock:
            for descriptor in self._own:
                os.close(descriptor)
            self._descriptors = [d for d in self._descriptors if d not in self._own]
            self._own = []
        super().close()

    def _start_afresh_in_child(self) -> None:
        # A forked child has only the thread that forked: the writer thread is not there, and
        # the lock may be held by it for good. What was queued is the parent's to write.
        self._queued.clear()
        self._write_lock = threading.Lock()
        self._writer = _writer_thread(self.flush)


def _writer_thread(flush: Callable[[], None]) -> BatchThread:
    return BatchThread(flush, name="scoresvc-log-writer", gather_seconds=_GATHER_SECONDS)


# Every LineWriter alive, so that a forked child can start each afresh (as logging itself
# re-creates its handlers' locks in a child).
_line_writers: "weakref.WeakSet[LineWriter]" = weakref.WeakSet()


def _start_line_writers_afresh() -> None:
    for writer in list(_line_writers):
        writer._start_afresh_in_child()


os.register_at_fork(after_in_child=_start_line_writers_afresh)


def _capped(line: bytes) -> bytes:
    """line (ending with its newline) as is, or cut in the middle to PIPE_BUF bytes in all.

    The start (time, level, logger) and the end (a status and duration, or a traceback's
    exception) are what a reader needs; the marker says how many characters went between.
    """
    if len(line) <= _PIPE_BUF:
        return line
    text = line.decode("utf-8")
    # The marker's length grows with the number it shows, which is less than the line's length.
    keep = (_PIPE_BUF - len(_CUT_MARKER.format(cut=len(text)).encode())) // 2
    head = line[:keep].decode("utf-8", "ignore")  # "ignore": a character cut in two is left out
    tail = line[-keep:].decode("utf-8", "ignore")
    marker = _CUT_MARKER.format(cut=len(text) - len(head) - len(tail))
    return f"{head}{marker}{tail}".encode()


def _pieces(lines: list[bytes]) -> Iterator[bytes]:
    # Lines joined up to PIPE_BUF bytes a piece: a pipe (a supervisor's stderr) takes a write
    # that size whole, so lines never mix with another process's on it. No line is longer.
    piece: list[bytes] = []
    size = 0
    for line in lines:
        if piece and size + len(line) > _PIPE_BUF:
            yield b"".join(piece)
            piece, size = [], 0
        piece.append(line)
        size += len(line)
    if piece:
        yield b"".join(piece)


def line_writer_for(logger: logging.Logger) -> LineWriter | None:
    """The LineWriter that alone gets logger's records (as configure_logging sets up), or None.

    Whoever holds it may write finished lines to it directly: nothing else would see a record.
    """
    while not logger.handlers and not logger.filters and logger.propagate and logger.parent:
        logger = logger.parent
    if len(logger.handlers) == 1 and not logger.filters and not logger.propagate:
        handler = logger.handlers[0]
        if type(handler) is LineWriter and not handler.filters and handler.level <= logging.INFO:
            return handler
    return None


class OncePerSecond(logging.Filter):
    """Lets a record through, then turns its logger off for a second: at most one line a second.

    Meant for waitress's 'Task queue depth is N' warning, which it logs for every request that
    finds all threads busy: under sustained load, one line per request, each a log record and
    a write. The first of each second says as much; while the logger is off, none is even made.
    """

    _scoresvc: bool  # True on the one configure_logging() installs

    def __init__(self, logger: logging.Logger, seconds: float = 1.0) -> None:
        super().__init__()
        self._logger = logger
        self._seconds = seconds

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._logger.disabled:
            self._logger.disabled = True
            timer = threading.Timer(self._seconds, self._turn_on)
            timer.daemon = True
            timer.start()
        return True

    def _turn_on(self) -> None:
        self._logger.disabled = False


def configure_logging(logfile: str | None = None, *, process_name: str | None = None) -> None:
    """Send scoresvc's and waitress's logs (INFO and up) to stderr and to logfile if given.

    process_name, where the service runs as several processes, is the one whose lines these
    are ("supervisor", "worker 2"); every line then says so. waitress's queue-depth warning is
    logged at most once a second (see OncePerSecond).
    """
    writer = LineWriter([sys.stderr], [logfile] if logfile else [], process_name=process_name)
    writer._scoresvc = True  # ours: replaced, not stacked, when configured again
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "_scoresvc", False)]:
            logger.removeHandler(old)
            old.close()
        logger.addHandler(writer)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    queue = logging.getLogger(_QUEUE_WARNINGS)
    for old_filter in [f for f in queue.filters if getattr(f, "_scoresvc", False)]:
        queue.removeFilter(old_filter)
    limit = OncePerSecond(queue)
    limit._scoresvc = True
    queue.addFilter(limit)
    for descriptor in writer._own:
        mode = stat.S_IMODE(os.fstat(descriptor).st_mode)
        if mode & 0o006:
            logging.getLogger("scoresvc").warning(
                "the log file %s is open to every user (mode %03o): chmod o-rw it unless meant",
                logfile,
                mode,
            )
