"""The ceiling: waitress serving a WSGI app that does nothing, with scoresvc's server settings.

`python -m bench.ceiling --port 0 --threads 4 [--get-body-bytes N]`; it prints where it listens
on stderr, as scoresvc does, and waitress logs as it would for any app (to stderr).

With --get-body-bytes N, a GET is answered with N bytes instead of an empty body. waitress sends
a response's headers and its body in two socket writes (its send_bytes is 1), so a body costs
waitress a system call and a TCP segment that an empty answer does not: a ceiling that answers
GETs with about as many bytes as scoresvc does (80 for a key, about 170 for a list) charges
scoresvc with its own work only. A POST is answered empty, as scoresvc answers a score.
"""

import argparse
import sys
from collections.abc import Callable

import waitress

from scoresvc.serving.cli import MAX_REQUEST_BODY_BYTES


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


def main(argv: list[str] | None = None) -> None:
    """Serve the do-nothing app until killed."""
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--get-body-bytes", type=int, default=0)
    options = parser.parse_args(argv)
    server = waitress.create_server(
        do_nothing_app(options.get_body_bytes),
        host=options.host,
        port=options.port,
        threads=options.threads,
        max_request_body_size=MAX_REQUEST_BODY_BYTES,
    )
    print(f"serving on http://{options.host}:{server.effective_port}", file=sys.stderr, flush=True)
    server.run()


if __name__ == "__main__":
    main()
