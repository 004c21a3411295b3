"""The ceiling: waitress serving a WSGI app that does nothing, with scoresvc's server settings.

`python -m bench.ceiling --port 0 --threads 4`; it prints where it listens on stderr, as scoresvc
does, and waitress logs as it would for any app (its warnings go to stderr).
"""

import argparse
import sys

import waitress

from scoresvc.cli import MAX_REQUEST_BODY_BYTES

_HEADERS = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "0")]


def do_nothing(environ: dict, start_response) -> list[bytes]:
    """Answer 200 with an empty body, whatever the request."""
    start_response("200 OK", list(_HEADERS))
    return [b""]


def main(argv: list[str] | None = None) -> None:
    """Serve do_nothing until killed."""
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=4)
    options = parser.parse_args(argv)
    server = waitress.create_server(
        do_nothing,
        host=options.host,
        port=options.port,
        threads=options.threads,
        max_request_body_size=MAX_REQUEST_BODY_BYTES,
    )
    print(f"serving on http://{options.host}:{server.effective_port}", file=sys.stderr, flush=True)
    server.run()


if __name__ == "__main__":
    main()
