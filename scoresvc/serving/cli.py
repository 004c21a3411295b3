"""The command line: `scoresvc` / `python -m scoresvc`, serving the app with waitress."""

import argparse
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence

import waitress
from sqlalchemy.exc import ArgumentError
from waitress.server import BaseWSGIServer, MultiSocketServer

from scoresvc.application import ScoreApp, create_app
from scoresvc.errors import DatabaseUnavailable
from scoresvc.limits import rate_limit
from scoresvc.logconfig import configure_logging
from scoresvc.serving.httpchannel import use_channel
from scoresvc.serving.supervisor import Supervisor, http_url
from scoresvc.serving.worker import StopSignals
from scoresvc.settings import Settings, SettingsError, worker_count
from scoresvc.storage.database import is_memory_url
from scoresvc.web.clientaddress import trusted_networks

logger = logging.getLogger("scoresvc")

# A score body is tiny; waitress refuses anything larger than this with 413 before reading it.
MAX_REQUEST_BODY_BYTES = 1024
# What a connection may hold unsent before the thread writing a streamed answer (an export)
# waits for the client. waitress's default, 16 MiB, is also how much of an answer it keeps in
# one in-memory buffer before it starts another: a fast client of an export would cost the
# process that much memory again for each thread serving one.
OUTBUF_HIGH_WATERMARK_BYTES = 1024 * 1024
# What opening the database, or a supervisor's listening sockets, raises when the service
# cannot start: answered with a message and exit status 1, not a trace.
STARTUP_ERRORS = (ValueError, ArgumentError, DatabaseUnavailable, OSError)


def build_parser(defaults: Settings) -> argparse.ArgumentParser:
    """The argument parser; each option's help shows its current default and variable."""
    parser = argparse.ArgumentParser(
        prog="scoresvc",
        description="A self-hosted score server for games, served by waitress.",
        epilog="Every option can also be set by its SCORESVC_* environment variable; a flag wins.",
    )
    add = parser.add_argument
    add("-p", "--port", type=int, help=_help("TCP port, 0 for any free one", defaults.port, "PORT"))
    add("--host", help=_help("interface to listen on", defaults.host, "HOST"))
    add("--threads", type=int, help=_help("worker threads", defaults.threads, "THREADS"))
    add("--logfile", help=_help("also log to this file", defaults.logfile or "none", "LOGFILE"))
    add(
        "--store-tokens",
        "--store_tokens",
        action="store_true",
        default=None,
        help=_help(
            "keep session keys in the database, only each user's newest one valid",
            "on" if defaults.store_tokens else "off: signed keys",
            "STORE_TOKENS",
        ),
    )
    add(
        "--database",
        dest="database_url",
        metavar="URL",
        help=_help(
            "SQLAlchemy URL of the database, e.g. sqlite:////var/lib/scoresvc/scores.db",
            f"{defaults.database_url}, in memory"
            if is_memory_url(defaults.database_url)
            else defaults.database_url,
            "DATABASE_URL",
        ),
    )
    add(
        "--session-ttl",
        type=float,
        metavar="SECONDS",
        help=_help("how long a session key is valid", f"{defaults.session_ttl:g}", "SESSION_TTL"),
    )
    add(
        "--workers",
        "--max-proc",
        "--max_proc",  # the original server's spelling
        dest="workers",
        type=_worker_count,
        metavar="N",
        help=_help(
            "worker processes on the one port, --threads threads each; auto: one per CPU",
            defaults.workers,
            "WORKERS",
        ),
    )
    add(
        "--post-limit",
        type=_parsed_by(rate_limit),
        metavar="RATE/BURST",
        help=_help(
            "score posts per user: RATE a second, BURST at once; over it, 429; 0: no limit",
            defaults.post_limit if defaults.post_limit.enabled else "0, no limit",
            "POST_LIMIT",
        ),
    )
    add(
        "--login-limit",
        type=_parsed_by(rate_limit),
        metavar="RATE/BURST",
        help=_help(
            "logins per client address, e.g. 10/50 for a service exposed directly; 0: no limit",
            defaults.login_limit if defaults.login_limit.enabled else "0, no limit",
            "LOGIN_LIMIT",
        ),
    )
    add(
        "--trusted-proxies",
        type=_parsed_by(trusted_networks),
        metavar="LIST",
        help=_help(
            "addresses or CIDR networks, separated by commas, of the proxies whose "
            "X-Forwarded-For names the client",
            ", ".join(map(str, defaults.trusted_proxies)) or "none",
            "TRUSTED_PROXIES",
        ),
    )
    return parser


def _help(text: str, default: object, variable: str) -> str:
    return f"{text} (default: {default}; env SCORESVC_{variable})"


def _parsed_by(parse: Callable[[str], object]) -> Callable[[str], object]:
    def parse_option(raw: str) -> object:
        try:
            return parse(raw)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse_option


def _worker_count(raw: str) -> int:
    try:
        return worker_count(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is neither a whole number nor auto") from None


def main(
    argv: Sequence[str] | None = None,
    *,
    serve: Callable[[ScoreApp, Settings], None] | None = None,
    supervise: Callable[[Settings], int] | None = None,
) -> int:
    """Parse options over the environment, then serve until SIGINT or SIGTERM; the exit status.

    With one worker the app is built and served in this process (serve); with more,
    supervise(settings) runs them as worker processes.
    """
    try:
        defaults = Settings.from_env()
        options = build_parser(defaults).parse_args(argv)
        settings = Settings.from_env(**vars(options))
    except SettingsError as error:
        print(f"scoresvc: {error}", file=sys.stderr)
        return 2
    supervised = settings.workers > 1
    configure_logging(settings.logfile, process_name="supervisor" if supervised else None)
    try:
        if supervised:
            return (supervise or supervise_workers)(settings)
        app = create_app(settings)
    except STARTUP_ERRORS as error:
        print(f"scoresvc: cannot start: {error}", file=sys.stderr)
        return 1
    try:
        (serve or serve_with_waitress)(app, settings)
    finally:
        app.close()
    return 0


def supervise_workers(settings: Settings) -> int:
    """Serve with settings.workers processes, each its own waitress server; the exit status."""
    return Supervisor(settings, make_server=waitress_server).run()


def waitress_server(
    app: ScoreApp, settings: Settings, sockets: list[socket.socket] | None = None
) -> BaseWSGIServer | MultiSocketServer:
    """A waitress server for app with scoresvc's channel and limits, made but not yet running.

    It listens on sockets if given (a worker's, made by its supervisor), else binds settings'
    host and port.
    """
    where = {"sockets": sockets} if sockets else {"host": settings.host, "port": settings.port}
    socket_map: dict = {}
    server = waitress.create_server(
        app,
        map=socket_map,
        threads=settings.threads,
        max_request_body_size=MAX_REQUEST_BODY_BYTES,
        outbuf_high_watermark=OUTBUF_HIGH_WATERMARK_BYTES,
        ident="scoresvc",
        # X-Forwarded-For is the app's to read, from the proxies it trusts (see clientaddress):
        # waitress would remove it from every request, in a middleware of its own.
        clear_untrusted_proxy_headers=False,
        **where,
    )
    use_channel(socket_map)
    return server


def serve_with_waitress(app: ScoreApp, settings: Settings) -> None:
    """Serve app until SIGINT or SIGTERM, then let running requests finish and return."""
    stop_signals = StopSignals(signal.SIGTERM, signal.SIGINT)
    server = waitress_server(app, settings)
    logger.info("serving on %s", http_url(server.effective_host, server.effective_port))
    try:
        stop_signals.run(server)
    finally:
        server.close()
    logger.info("stopped")
