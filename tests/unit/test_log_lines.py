"""The service's log lines: one format whether a line comes from a record or straight from the
access log, whole lines whatever the number of threads or processes, records whenever someone
else listens."""

import io
import logging
import os
import re
import select
import signal
import stat
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from scoresvc.logconfig import (
    LineFormatter,
    LineWriter,
    OncePerSecond,
    configure_logging,
    line_writer_for,
)
from scoresvc.web.accesslog import access_logger, log_request

LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO \[scoresvc\.access\] (.*)")
PIPE_BUF = select.PIPE_BUF
_OURS = ("scoresvc", "waitress", "scoresvc.access", "waitress.queue")


class CapturedStderr(io.StringIO):
    """stderr as the service's log writer writes it; reading it waits for queued lines."""

    def getvalue(self) -> str:
        written()
        return super().getvalue()


def written() -> None:
    """Wait until the service's log writer has written every line queued so far."""
    for handler in logging.getLogger("scoresvc").handlers:
        handler.flush()


@pytest.fixture
def configure() -> Callable[..., io.StringIO]:
    """configure(logfile=None, process_name=None): configure_logging with a StringIO for stderr,
    which it returns.

    The loggers start with no handlers or filters, and are put back as they were afterwards.
    """
    saved = [
        (
            logger,
            list(logger.handlers),
            list(logger.filters),
            logger.level,
            logger.propagate,
            logger.disabled,
        )
        for logger in map(logging.getLogger, _OURS)
    ]
    # Whatever earlier tests left, this one starts from logging's defaults. (pytest attaches its
    # capture handlers to non-propagating loggers as each test phase starts.)
    for logger, *_ in saved:
        logger.handlers, logger.filters, logger.propagate = [], [], True
    stream = CapturedStderr()

    def configure_with_stream(
        logfile: str | None = None, process_name: str | None = None
    ) -> io.StringIO:
        # Patched here, not in a fixture: pytest's capture sets sys.stderr again for the test.
        real, sys.stderr = sys.stderr, stream
        try:
            configure_logging(logfile, process_name=process_name)
        finally:
            sys.stderr = real
        return stream

    yield configure_with_stream
    for logger, handlers, filters, level, propagate, disabled in saved:
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.handlers = handlers
        logger.filters = filters
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


def request(path: str, query: str = "", method: str = "GET") -> dict:
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "REMOTE_ADDR": "192.0.2.1",
    }


def in_child_process(work: Callable[[], None]) -> int:
    """Start work() in a forked child, which exits 0 if it returns and 1 if it raises; its pid."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            work()
            status = 0
        finally:
            os._exit(status)
    return pid


def exit_status(pid: int, timeout: float = 10) -> int:
    """A child's exit status, or -9 once it has been killed for running past timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -9


@pytest.mark.parametrize("created", [1_800_000_000.0, 1_800_000_000.999, 1_800_000_001.0456])
def test_a_line_made_without_a_record_reads_as_a_records_line(created):
    record = logging.makeLogRecord(
        {
            "name": "scoresvc.access",
            "levelname": "INFO",
            "levelno": logging.INFO,
            "msg": "GET /1/highscorelist 200 0.05ms",
            "created": created,
            "msecs": int((created - int(created)) * 1000),
        }
    )
    standard = logging.Formatter("%(asctime)s %(levelname)s [%(name)s] %(message)s")
    ours = LineFormatter()
    expected = standard.format(record)
    assert ours.format(record) == expected
    assert ours.line(created, "INFO", "scoresvc.access", "GET /1/highscorelist 200 0.05ms") == (
        expected
    )


def test_a_workers_line_says_which_worker_wrote_it_with_or_without_a_record():
    fields = {"name": "scoresvc", "levelname": "INFO", "msg": "ready"}
    record = logging.makeLogRecord({**fields, "created": 1_800_000_000.25, "msecs": 250})
    worker = LineFormatter("worker 2")
    assert worker.format(record).endswith(",250 INFO [scoresvc] [worker 2] ready")
    assert worker.line(1_800_000_000.25, "INFO", "scoresvc", "ready") == worker.format(record)
    assert LineFormatter().format(record).endswith(",250 INFO [scoresvc] ready")


def test_every_line_of_a_worker_process_names_it(configure):
    stderr = configure(process_name="worker 2")
    log_request(request("/1/highscorelist"), "200 OK", 0.001)
    logging.getLogger("scoresvc").info("ready, pid %d", 42)
    logging.getLogger("waitress").warning("Task %s", "done")
    assert [line.split(" ", 2)[2] for line in stderr.getvalue().splitlines()] == [
        "INFO [scoresvc.access] [worker 2] 192.0.2.1 GET /1/highscorelist 200 1.00ms",
        "INFO [scoresvc] [worker 2] ready, pid 42",
        "WARNING [waitress] [worker 2] Task done",
    ]


def test_access_lines_go_straight_to_stderr_and_the_log_file(configure, tmp_path):
    logfile = tmp_path / "access.log"
    stderr = configure(str(logfile))
    assert line_writer_for(access_logger) is not None
    log_request(request("/1/score", "sessionkey=" + "k" * 80, "POST"), "200 OK", 0.00265)
    log_request(request("/1/highscorelist"), "200 OK", 0.001)
    written()
    in_file = logfile.read_text().splitlines()
    assert stderr.getvalue().splitlines() == in_file
    assert [LINE.fullmatch(line)[1] for line in in_file] == [
        "192.0.2.1 POST /1/score?sessionkey=[redacted] 200 2.65ms",
        "192.0.2.1 GET /1/highscorelist 200 1.00ms",
    ]


def test_a_log_file_every_user_may_read_is_warned_about_and_left_as_it_is(configure, tmp_path):
    logfile = tmp_path / "scoresvc.log"
    logfile.touch()
    logfile.chmod(0o644)  # as earlier versions made it under umask 022
    stderr = configure(str(logfile))
    (warning,) = stderr.getvalue().splitlines()
    assert warning.endswith(
        f"WARNING [scoresvc] the log file {logfile} is open to every user (mode 644): "
        "chmod o-rw it unless meant"
    )
    assert logfile.read_text().splitlines() == [warning]
    assert stat.S_IMODE(logfile.stat().st_mode) == 0o644


def test_a_log_file_of_the_owner_or_its_group_is_not_warned_about(configure, tmp_path):
    made, grouped = tmp_path / "made.log", tmp_path / "grouped.log"
    grouped.touch()
    grouped.chmod(0o640)
    assert configure(str(made)).getvalue() == ""
    assert configure(str(grouped)).getvalue() == ""


def test_access_lines_are_records_again_when_someone_else_listens(configure):
    stderr = configure()
    heard: list[logging.LogRecord] = []
    listener = logging.Handler()
    listener.emit = heard.append
    access_logger.addHandler(listener)
    try:
        assert line_writer_for(access_logger) is None
        log_request(request("/2/highscorelist"), "200 OK", 0.001)
    finally:
        access_logger.removeHandler(listener)
    line = "192.0.2.1 GET /2/highscorelist 200 1.00ms"
    assert [record.getMessage() for record in heard] == [line]
    assert LINE.fullmatch(stderr.getvalue().strip())[1] == line


def test_a_filter_on_the_writer_also_brings_records_back(configure):
    stderr = configure()
    writer = line_writer_for(access_logger)
    writer.addFilter(lambda record: "secret" not in record.getMessage())
    assert line_writer_for(access_logger) is None
    log_request(request("/secret"), "404 Not Found", 0.001)
    log_request(request("/open"), "404 Not Found", 0.001)
    lines = stderr.getvalue().splitlines()
    assert [LINE.fullmatch(line)[1] for line in lines] == ["192.0.2.1 GET /open 404 1.00ms"]


def test_waitress_warnings_go_to_the_same_outputs(configure):
    stderr = configure()
    logging.getLogger("waitress").warning("Task %s", "done")
    logging.getLogger("waitress.queue").warning("Task queue depth is %d", 3)
    lines = stderr.getvalue().splitlines()
    assert lines[0].endswith(" WARNING [waitress] Task done")
    assert lines[1].endswith(" WARNING [waitress.queue] Task queue depth is 3")


def test_waitress_queue_warnings_are_logged_at_most_once_a_second(configure):
    stderr = configure()
    queue = logging.getLogger("waitress.queue")
    for depth in range(1, 100):
        queue.warning("Task queue depth is %d", depth)
    assert stderr.getvalue().count("Task queue depth") == 1
    assert queue.disabled  # not even a record is made for the others


def test_a_logger_turned_off_for_a_while_comes_back(configure):
    stderr = configure()
    logger = logging.getLogger("scoresvc.access")
    logger.addFilter(OncePerSecond(logger, seconds=0.05))
    logger.warning("first")
    logger.warning("dropped")
    deadline = time.monotonic() + 10
    while logger.disabled and time.monotonic() < deadline:
        time.sleep(0.01)
    logger.warning("second")
    assert [line.rsplit("] ", 1)[1] for line in stderr.getvalue().splitlines()] == [
        "first",
        "second",
    ]


def test_lines_from_many_threads_come_out_whole(tmp_path):
    path = tmp_path / "lines.log"
    writer = LineWriter([], [str(path)])
    # Long lines too: up to what a pipe takes in one piece.
    texts = [f"{n}:" + "x" * (n * 997 % 4000) for n in range(8)]

    def write(text: str) -> None:
        for _ in range(200):
            writer.write_message("scoresvc.access", "INFO", text)

    threads = [threading.Thread(target=write, args=(text,)) for text in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    writer.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 8 * 200
    assert sorted({LINE.fullmatch(line)[1] for line in lines}) == sorted(texts)


@pytest.mark.parametrize("character", ["x", "é", "€", "😀"])
def test_a_line_too_long_for_one_pipe_write_loses_its_middle_and_says_how_much(character):
    output = io.StringIO()
    writer = LineWriter([output], [])
    message = f"GET /{character * 10_000} 404 0.05ms"
    writer.write_message("scoresvc.access", "INFO", message)
    writer.close()
    line = output.getvalue()
    assert len(line.encode()) <= PIPE_BUF
    logged = LINE.fullmatch(line.removesuffix("\n"))[1]
    head, cut, tail = re.fullmatch(
        r"(.*) \[\.\.\.(\d+) characters cut\.\.\.\] (.*)", logged
    ).groups()
    assert logged.startswith(f"GET /{character}") and logged.endswith(f"{character} 404 0.05ms")
    assert len(head) + int(cut) + len(tail) == len(message)
    assert len(line.encode()) > PIPE_BUF - 8  # cut no more than it must


def test_a_line_that_fits_a_pipe_write_is_left_whole():
    output = io.StringIO()
    writer = LineWriter([output], [])
    writer.write_line("x" * (PIPE_BUF - 1))
    writer.close()
    assert output.getvalue() == "x" * (PIPE_BUF - 1) + "\n"


def test_lines_of_several_processes_on_one_pipe_never_mix():
    read_end, write_end = os.pipe()
    texts = ["a" * 3000, "b" * 4000, "c" * 9000]  # the last one is cut to fit

    def write_lines(text: str) -> None:
        os.close(read_end)
        with open(write_end, "wb", buffering=0) as pipe:
            writer = LineWriter([pipe], [])
            for _ in range(300):
                writer.write_message("scoresvc.access", "INFO", text)
            writer.close()

    children = [in_child_process(lambda text=text: write_lines(text)) for text in texts]
    os.close(write_end)
    with open(read_end, "rb") as pipe:
        lines = pipe.read().decode().splitlines()
    assert [exit_status(pid) for pid in children] == [0, 0, 0]
    assert len(lines) == 3 * 300
    assert [line[:80] for line in lines if not LINE.fullmatch(line)] == []
    messages = Counter(LINE.fullmatch(line)[1] for line in lines)
    assert messages[texts[0]] == messages[texts[1]] == 300
    (cut,) = set(messages) - set(texts)
    assert messages[cut] == 300 and "characters cut" in cut


def test_a_forked_child_writes_its_own_lines_and_leaves_the_parents_queued_ones(tmp_path):
    path = tmp_path / "lines.log"
    writer = LineWriter([], [str(path)])
    with writer._write_lock:  # as if the writer thread were writing when the fork came
        writer.write_line("the parent's")

        def write_in_child() -> None:
            writer.write_line("the child's")  # would wait for ever on the parent's lock
            writer.close()

        assert exit_status(in_child_process(write_in_child)) == 0
    writer.close()
    assert sorted(path.read_text().splitlines()) == ["the child's", "the parent's"]


def test_logging_never_waits_for_a_write_and_lines_keep_their_order():
    writing, release = threading.Event(), threading.Event()

    class SlowOutput(io.StringIO):
        def write(self, text: str) -> int:
            writing.set()
            assert release.wait(10)
            return super().write(text)

    output = SlowOutput()
    writer = LineWriter([output], [])
    writer.write_line("first")
    assert writing.wait(10)  # the writer thread is stuck in a write
    started = time.monotonic()
    for n in range(100):
        writer.write_line(f"line {n}")
    assert time.monotonic() - started < 1  # queued, not waiting for the output
    assert output.getvalue() == ""
    release.set()
    writer.close()
    assert output.getvalue().splitlines() == ["first"] + [f"line {n}" for n in range(100)]


def test_a_line_is_written_without_anyone_flushing():
    output = io.StringIO()
    writer = LineWriter([output], [])
    writer.write_line("alone")
    deadline = time.monotonic() + 10
    while not output.getvalue() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert output.getvalue() == "alone\n"
    writer.close()


def test_a_failed_write_is_reported_and_does_not_stop_later_lines(capsys):
    class FullOnce(io.StringIO):
        failed = False

        def write(self, text: str) -> int:
            if not self.failed:
                self.failed = True
                raise OSError(28, "No space left on device")
            return super().write(text)

    output = FullOnce()
    writer = LineWriter([output], [])
    writer.write_line("lost")
    writer.flush()
    writer.write_line("kept")
    writer.close()
    assert output.getvalue() == "kept\n"
    assert "No space left on device" in capsys.readouterr().err


def test_a_line_after_close_is_still_written():
    output = io.StringIO()
    writer = LineWriter([output], [])
    writer.close()
    writer.write_line("late")
    assert output.getvalue() == "late\n"


def test_configuring_again_replaces_the_writer_and_closes_its_file(configure, tmp_path):
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    configure(str(first))
    configure(str(second))
    assert logging.getLogger("scoresvc").handlers == [line_writer_for(access_logger)]
    log_request(request("/1/login"), "200 OK", 0.001)
    written()
    assert first.read_text() == ""
    assert LINE.fullmatch(second.read_text().strip())[1] == "192.0.2.1 GET /1/login 200 1.00ms"


def test_when_the_output_cannot_keep_up_loggers_wait_instead_of_queueing_without_bound():
    release = threading.Event()

    class StuckOutput(io.StringIO):
        def write(self, text: str) -> int:
            assert release.wait(10)  # a pipe nobody reads, until released
            return super().write(text)

    output = StuckOutput()
    writer = LineWriter([output], [])
    logger = threading.Thread(target=lambda: [writer.write_line(f"{n}") for n in range(20_000)])
    logger.start()
    logger.join(timeout=1)
    assert logger.is_alive()  # waiting for the output
    assert len(writer._queued) <= 10_001
    release.set()
    logger.join(timeout=10)
    writer.close()
    assert output.getvalue().splitlines() == [f"{n}" for n in range(20_000)]
