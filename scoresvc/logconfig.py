"""Where the service's log lines go: stderr, and a log file when one is configured."""

import logging
import os
import sys
import threading
import time
from typing import TextIO

_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"
_LOGGERS = ("scoresvc", "waitress")


class LineFormatter(logging.Formatter):
    """The service's line: `2026-11-23 19:56:08,045 INFO [scoresvc.access] message`."""

    def __init__(self) -> None:
        super().__init__(_FORMAT)
        self._second: tuple[int, str] = (-1, "")  # one tuple: threads replace it whole

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self._timestamp(int(record.created), int(record.msecs))

    def line(self, created: float, level_name: str, logger_name: str, message: str) -> str:
        """The line format(record) gives for a record with these fields (no exception)."""
        second = int(created)
        stamp = self._timestamp(second, int((created - second) * 1000))
        return f"{stamp} {level_name} [{logger_name}] {message}"  # _FORMAT, spelled out

    def _timestamp(self, second: int, milliseconds: int) -> str:
        # The date and time of day change once a second: strftime once a second, not per line.
        cached_second, text = self._second
        if second != cached_second:
            text = time.strftime(self.default_time_format, self.converter(second))
            self._second = (second, text)
        return f"{text},{milliseconds:03d}"


class LineWriter(logging.Handler):
    """Writes each record as one line to every output: one write() per output, no buffering.

    A line is formatted once, whatever the number of outputs. Callers that make their own
    lines (the access log) can hand them over with write_message(), with no LogRecord at all.
    """

    def __init__(self, streams: list[TextIO], paths: list[str]) -> None:
        super().__init__()
        self.setFormatter(LineFormatter())
        self._write_lock = threading.Lock()
        self._descriptors: list[int] = []
        self._streams: list[TextIO] = []  # outputs with no file descriptor (tests' captures)
        for stream in streams:
            try:
                stream.flush()
                self._descriptors.append(stream.fileno())
            except (AttributeError, OSError, ValueError):
                self._streams.append(stream)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        self._own = [os.open(path, flags, 0o666) for path in paths]
        self._descriptors += self._own

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write_line(self.format(record))
        except Exception:
            self.handleError(record)

    def write_message(self, logger_name: str, level_name: str, message: str) -> None:
        """Write message as the line a record of that logger and level, made now, would give."""
        line = self.formatter.line(time.time(), level_name, logger_name, message)
        try:
            self.write_line(line)
        except OSError:
            self.handleError(logging.makeLogRecord({"name": logger_name, "msg": message}))

    def write_line(self, line: str) -> None:
        """Write line and a line feed to every output."""
        data = (line + "\n").encode("utf-8", "backslashreplace")
        # One write() per output under the lock: lines from many threads never interleave, and
        # the lock is held for the system calls only, never while a line is being formatted.
        with self._write_lock:
            for descriptor in self._descriptors:
                written = os.write(descriptor, data)
                while written < len(data):  # a write cut short (a signal, a full pipe)
                    written += os.write(descriptor, data[written:])
            for stream in self._streams:
                stream.write(line + "\n")
                stream.flush()

    def close(self) -> None:
        with self._write_lock:
            for descriptor in self._own:
                os.close(descriptor)
            self._descriptors = [d for d in self._descriptors if d not in self._own]
            self._own = []
        super().close()


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


def configure_logging(logfile: str | None = None) -> None:
    """Send scoresvc's and waitress's logs (INFO and up) to stderr and to logfile if given."""
    writer = LineWriter([sys.stderr], [logfile] if logfile else [])
    writer._scoresvc = True  # ours: replaced, not stacked, when configured again
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "_scoresvc", False)]:
            logger.removeHandler(old)
            old.close()
        logger.addHandler(writer)
        logger.setLevel(logging.INFO)
        logger.propagate = False
