"""The command line: `scoresvc` / `python -m scoresvc`, serving the app with waitress."""

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence

import waitress
from sqlalchemy.exc import ArgumentError

from scoresvc.application import ScoreApp, create_app
from scoresvc.errors import DatabaseUnavailable
from scoresvc.logconfig import configure_logging
from scoresvc.serving.httpchannel import use_channel
from scoresvc.settings import Settings, SettingsError
from scoresvc.storage.database import is_memory_url
from scoresvc.storage.scorejournal import JournalInUse

logger = logging.getLogger("scoresvc")

# A score body is tiny; waitress refuses anything larger than this with 413 before reading it.
MAX_REQUEST_BODY_BYTES = 1024


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
    return parser


def _help(text: str, default: object, variable: str) -> str:
    return f"{text} (default: {default}; env SCORESVC_{variable})"


def main(
    argv: Sequence[str] | None = None, *, serve: Callable[[ScoreApp, Settings], None] | None = None
) -> int:
    """Parse options over the environment, build the app and serve it until SIGINT or SIGTERM."""
    try:
        defaults = Settings.from_env()
        options = build_parser(defaults).parse_args(argv)
        settings = Settings.from_env(**vars(options))
    except SettingsError as error:
        print(f"scoresvc: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.logfile)
    try:
        app = create_app(settings)
    except (ValueError, ArgumentError, DatabaseUnavailable, JournalInUse) as error:
        print(f"scoresvc: cannot start: {error}", file=sys.stderr)
        return 1
    try:
        (serve or serve_with_waitress)(app, settings)
    finally:
        app.close()
    return 0


def serve_with_waitress(app: ScoreApp, settings: Settings) -> None:
    """Serve app until SIGINT or SIGTERM, then let running requests finish and return."""
    socket_map: dict = {}
    server = waitress.create_server(
        app,
        map=socket_map,
        host=settings.host,
        port=settings.port,
        threads=settings.threads,
        max_request_body_size=MAX_REQUEST_BODY_BYTES,
        ident="scoresvc",
    )
    use_channel(socket_map)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    logger.info("serving on http://%s:%s", _url_host(server.effective_host), server.effective_port)
    try:
        server.run()  # returns once a signal raised SystemExit inside its loop
    finally:
        server.close()
    logger.info("stopped")


def _exit_on_signal(signum, _frame) -> None:
    raise SystemExit(0)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
