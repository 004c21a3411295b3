"""The ceiling: waitress serving a WSGI app that does nothing, with scoresvc's server settings.

`python -m bench.ceiling --port 0 --threads 4 [--get-body-bytes N] [--processes N]`; it prints
where it listens on stderr, as scoresvc does, and waitress logs as it would for any app (to
stderr).

With --get-body-bytes N, a GET is answered with N bytes instead of an empty body. waitress sends
a response's headers and its body in two socket writes (its send_bytes is 1), so a body costs
waitress a system call and a TCP segment that an empty answer does not: a ceiling that answers
GETs with about as many bytes as scoresvc does (80 for a key, about 170 for a list) charges
scoresvc with its own work only. A POST is answered empty, as scoresvc answers a score.

With --processes N, the parent binds and listens on one socket, then forks N processes that
each serve it with waitress of their own, the way a prefork server (and scoresvc's
`--workers`) does: every process accepts from the one queue. Left to the kernel, a new
connection goes to whichever process accepts first, and wrk's 16 connections, opened
together, often landed 15 to 1 or 16 to 0: that ceiling then measured one process, and moved
from 8,000 to 12,000 lists a second between rounds of one run. So the processes take
connections in turn as scoresvc's workers do (scoresvc/serving/balancing.py: one holding more
than one connection above another stops accepting until the other catches up), and the
ceiling is what 2 processes serve with the connections split evenly. SO_REUSEPORT (a socket
per process) was not used: the kernel would spread connections by a hash of their addresses,
which with 16 connections often leaves one process more than half of them, and scoresvc does
not do it that way.
"""

import argparse
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable

import waitress

from scoresvc.serving.balancing import ConnectionCounts, ConnectionShare, accept_in_turn
from scoresvc.serving.cli import MAX_REQUEST_BODY_BYTES

LISTEN_BACKLOG = 1024  # waitress's default, which scoresvc's supervisor listens with too


def do_nothing_app(get_body_bytes: int = 0) -> Callable:
    """A WSGI app that answers 200 at once: GET with get_body_bytes bytes, else empty."""
    get_body = b"x" * get_body_bytes
    get_headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(get_body))),
    ]
    other_headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "0")]

    def do_nothing(environ: dict, start_response: Callable) -> list[bytes]:
        if environ["REQUEST_METHOD"] == "GET":
            start_response("200 OK", list(get_headers))
            return [get_body]
        start_response("200 OK", list(other_headers))
        return [b""]

    return do_nothing


def bound_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, to be shared by the processes forked after it."""
    # waitress makes it non-blocking: a process that loses the race for a connection gets
    # EAGAIN from accept() and goes back to its loop.
    return socket.create_server((host, port), backlog=LISTEN_BACKLOG)


def serve(
    app: Callable, threads: int, listener: socket.socket, share: ConnectionShare | None = None
) -> None:
    """Serve app with waitress on an already listening socket until killed; with a share of
    the processes' connection counts, accepting in turn with the other processes."""
    socket_map: dict = {}  # waitress's dispatchers by descriptor
    server = waitress.create_server(
        app,
        map=socket_map,
        sockets=[listener],
        threads=threads,
        max_request_body_size=MAX_REQUEST_BODY_BYTES,
    )
    if share is not None:
        accept_in_turn(socket_map, share)
    server.run()


def serve_forked(app: Callable, threads: int, listener: socket.socket, processes: int) -> None:
    """Fork processes that each serve listener; end them all on SIGTERM or SIGINT."""
    children = []
    counts = ConnectionCounts(processes)  # made before the fork: shared by every process
    for number in range(1, processes + 1):
        pid = os.fork()
        if pid == 0:
            # The parent's handlers would end the siblings: a child dies by the default action.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                serve(app, threads, listener, counts.share(number))
            finally:
                os._exit(1)  # never back into the parent's code
        children.append(pid)

    def stop_children(signum: int, _frame) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):  # it ended already
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop_children)
    signal.signal(signal.SIGINT, stop_children)
    for child in children:
        os.waitpid(child, 0)


def main(argv: list[str] | None = None) -> None:
    """Serve the do-nothing app until killed."""
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--get-body-bytes", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1)
    options = parser.parse_args(argv)
    app = do_nothing_app(options.get_body_bytes)
    listener = bound_socket(options.host, options.port)
    port = listener.getsockname()[1]
    print(f"serving on http://{options.host}:{port}", file=sys.stderr, flush=True)
    if options.processes == 1:
        serve(app, options.threads, listener)
    else:
        serve_forked(app, options.threads, listener, options.processes)


if __name__ == "__main__":
    main()
