"""The command line: `scoresvc` / `python -m scoresvc`, serving the app with waitress."""

import argparse
import errno
import logging
import resource
import signal
import socket
import sqlite3
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server

from scoresvc import startup
from scoresvc.application import ScoreApp, create_app
from scoresvc.errors import DatabaseUnavailable, ScoreServiceError
from scoresvc.logconfig import configure_logging
from scoresvc.serving.balancing import ConnectionShare, accept_in_turn
from scoresvc.serving.httpchannel import ConnectionGuard, use_channel
from scoresvc.serving.supervisor import Supervisor, http_url
from scoresvc.serving.worker import StopSignals
from scoresvc.settings import SETTINGS, Setting, Settings, shown_url
from scoresvc.storage.database import is_memory_url, open_database

logger = logging.getLogger("scoresvc")

# A score body is tiny; waitress refuses anything larger than this with 413 before reading it.
MAX_REQUEST_BODY_BYTES = 1024
# What a connection may hold unsent before the thread writing a streamed answer (an export)
# waits for the client. waitress's default, 16 MiB, is also how much of an answer it keeps in
# one in-memory buffer before it starts another: a fast client of an export would cost the
# process that much memory again for each thread serving one.
OUTBUF_HIGH_WATERMARK_BYTES = 1024 * 1024
# waitress stops accepting anyone once connection_limit connections are open. Its default, 100,
# is what one client address may hold (connections_per_address): one address alone would lock
# everyone else out. Room for at least this many addresses at their cap, and 1000 in all.
ADDRESSES_AT_THEIR_CAP = 10
MIN_CONNECTION_LIMIT = 1000
# Files a process keeps open besides its connections (listening sockets, waitress's trigger
# pipe, the database, its WAL and journal, the log file, metrics files), kept out of the
# open-file limit's share for connections: an accept() that fails with EMFILE leaves the
# listening socket readable, and waitress would spin on it.
FILES_BESIDES_CONNECTIONS = 64
# How long a connection may stay idle between requests (waitress's channel_timeout, 120 s by
# default). Every byte starts it again, so it does nothing against a slow request (the header
# timeout does); it frees the slots that finished clients keep without closing. A game's client
# posts again within a minute while it plays, and opens a new connection when it did not.
IDLE_CONNECTION_SECONDS = 60
# How often waitress's maintenance runs (its cleanup_interval, 30 s by default, whole seconds):
# the header timeout is checked then. Its loop wakes at least once a second too, so a slow
# request is cut off at most about two seconds late. A pass looks at each open connection once.
MAINTENANCE_INTERVAL_SECONDS = 1
# The one option `scoresvc migrate` takes after its name.
_DATABASE = next(declared for declared in SETTINGS if declared.name == "database_url")


class CannotStart(Exception):
    """The service cannot start, for the reason given: told in one line, not a trace."""


def build_parser(defaults: Settings) -> argparse.ArgumentParser:
    """The argument parser: an option for each setting with flags (see scoresvc.settings), its
    help showing its current default and variable.

    Options are kept as given, text: main() reads each as its variable is read, so that a bad
    value is told in the one line of every start-up error, naming the option.
    """
    parser = argparse.ArgumentParser(
        prog="scoresvc",
        description="A self-hosted score server for games, served by waitress.",
        epilog="Every option can also be set by its SCORESVC_* environment variable; a flag wins.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    for declared in SETTINGS:
        if declared.flags:
            _add_option(parser, declared, defaults, default=None)
    commands = parser.add_subparsers(
        dest="command",
        title="commands",
        description="without one, scoresvc serves",
        metavar="COMMAND",
    )
    migrate = commands.add_parser(
        "migrate",
        help="bring the database to the newest schema and exit, serving nothing",
        description="Bring the database to the newest schema and exit: run it as the role "
        "that owns the schema, before the service starts (a one-shot service in a cluster).",
    )
    # SUPPRESS: left out, the option keeps the value given before the command, if any.
    _add_option(migrate, _DATABASE, defaults, default=argparse.SUPPRESS)
    return parser


def _add_option(
    parser: argparse.ArgumentParser, declared: Setting, defaults: Settings, *, default: object
) -> None:
    shown = declared.shown(getattr(defaults, declared.name), str)  # str: code as plain text
    text = f"{declared.help.replace('`', '')} (default: {shown}; env {declared.variable})"
    # A switch turns its setting on; any other option takes the setting's text.
    kind = (
        {"action": "store_true"}
        if isinstance(declared.default, bool)
        else {"metavar": declared.metavar}
    )
    parser.add_argument(
        *declared.flags,
        dest=declared.name,
        default=default,
        help=text.replace("%", "%%"),  # argparse formats help with %; a path may hold one
        **kind,
    )


def version() -> str:
    """scoresvc's version, from its installed package's metadata."""
    try:
        return metadata.version("scoresvc")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed: no version)"


def settings_from(options: dict[str, object]) -> Settings:
    """The settings: the environment's, with the options given (text) read over them."""
    overrides: dict[str, Any] = {}
    for declared in SETTINGS:
        value = options.get(declared.name)
        if isinstance(value, str):
            value = declared.read(value, source=declared.option)
        overrides[declared.name] = value
    return Settings.from_env(**overrides)


def main(
    argv: Sequence[str] | None = None,
    *,
    serve: Callable[[ScoreApp, Settings], None] | None = None,
    supervise: Callable[[Settings], int] | None = None,
    migrate: Callable[[Settings], None] | None = None,
) -> int:
    """Parse options over the environment, then serve until SIGINT or SIGTERM; the exit status.

    With one worker the app is built and served in this process (serve); with more,
    supervise(settings) runs them as worker processes. `scoresvc migrate` runs migrate(settings)
    instead, and exits.
    """
    settings = command = None
    try:
        options = vars(build_parser(Settings.from_env()).parse_args(argv))
        command = options.pop("command", None)
        settings = settings_from(options)
        if command == "migrate":
            configure_logging(settings.logfile)
            (migrate or migrate_database)(settings)
            return 0
        supervised = settings.workers > 1
        configure_logging(settings.logfile, process_name="supervisor" if supervised else None)
        if supervised:
            return (supervise or supervise_workers)(settings)
        app = create_app(settings)
    except Exception as error:  # whatever stops the start, told in one line
        return _cannot(command or "start", error, settings)
    try:
        (serve or serve_with_waitress)(app, settings)
    except CannotStart as error:
        return _cannot("start", error, settings)
    finally:
        app.close()
    return 0


def _cannot(what: str, error: Exception, settings: Settings | None) -> int:
    print(f"scoresvc: cannot {what}: {startup_error_reason(error, settings)}", file=sys.stderr)
    return 1


def startup_error_reason(error: Exception, settings: Settings | None) -> str:
    """What stopped the start, in one line a user can act on, with no password in it."""
    if isinstance(error, DBAPIError) and error.orig is not None:
        reason = str(error.orig)  # SQLAlchemy's own text adds the statement and a link
    elif isinstance(error, SQLAlchemyError) and error.args:
        reason = str(error.args[0])
    elif isinstance(error, ScoreServiceError | CannotStart | ValueError | OSError):
        reason = str(error)
    else:
        reason = f"{type(error).__name__}: {error}"
    if isinstance(error, OSError) and _is_about_listening(error) and settings is not None:
        reason = _cannot_listen(error, settings)  # as the supervisor binds
    if settings is not None:
        if isinstance(error, DatabaseUnavailable | SQLAlchemyError | sqlite3.Error):
            reason = f"{reason} (database {shown_url(settings.database_url)})"
        reason = _without_password(reason, settings.database_url)
    return " ".join(reason.split()) or type(error).__name__  # a driver's text may span lines


def _is_about_listening(error: OSError) -> bool:
    return error.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL) or (
        error.errno == errno.EACCES and error.filename is None
    )


def _cannot_listen(error: OSError, settings: Settings) -> str:
    return f"cannot listen on {http_url(settings.host, settings.port)}: {error.strerror or error}"


def _without_password(text: str, database_url: str) -> str:
    try:
        password = make_url(database_url).password
    except (ValueError, SQLAlchemyError):
        return text  # a URL that does not parse stopped the start before any driver saw it
    return text.replace(password, "***") if password else text


def migrate_database(settings: Settings) -> None:
    """Bring settings' database to the newest schema (`scoresvc migrate`), and close it."""
    if is_memory_url(settings.database_url):
        raise CannotStart(
            "a database in memory has nothing to migrate: give its URL (--database URL or "
            "SCORESVC_DATABASE_URL)"
        )
    database = open_database(settings.database_url, synchronous=settings.sqlite_synchronous)
    try:
        startup.migrate(database)
    finally:
        database.close()
    logger.info("%s is at the newest schema", shown_url(settings.database_url))


def supervise_workers(settings: Settings) -> int:
    """Serve with settings.workers processes, each its own waitress server; the exit status."""
    return Supervisor(settings, make_server=waitress_server).run()


def waitress_server(
    app: ScoreApp,
    settings: Settings,
    sockets: list[socket.socket] | None = None,
    share: ConnectionShare | None = None,
) -> BaseWSGIServer | MultiSocketServer:
    """A waitress server for app with scoresvc's channel and limits, made but not yet running.

    It listens on sockets if given (a worker's, made by its supervisor), else binds settings'
    host and port; with a worker's share of the connections, it accepts in turn with the other
    workers (see balancing.py). Each process counts its own connections: with workers, an
    address may hold connections_per_address in each.
    """
    where = {"sockets": sockets} if sockets else {"host": settings.host, "port": settings.port}
    socket_map: dict[int, Any] = {}  # waitress's dispatchers by descriptor
    server = create_server(
        app,
        map=socket_map,
        threads=settings.threads,
        max_request_body_size=MAX_REQUEST_BODY_BYTES,
        outbuf_high_watermark=OUTBUF_HIGH_WATERMARK_BYTES,
        ident="scoresvc",
        # X-Forwarded-For is the app's to read, from the proxies it trusts (see clientaddress):
        # waitress would remove it from every request, in a middleware of its own.
        clear_untrusted_proxy_headers=False,
        connection_limit=connection_limit(settings.connections_per_address),
        channel_timeout=max(IDLE_CONNECTION_SECONDS, int(settings.header_timeout)),
        cleanup_interval=MAINTENANCE_INTERVAL_SECONDS,
        # poll(), not select(): select() cannot watch a descriptor numbered 1024 or more, and
        # a thousand connections take descriptors past it.
        asyncore_use_poll=True,
        **where,
    )
    guard = ConnectionGuard(
        header_timeout=settings.header_timeout,
        connections_per_address=settings.connections_per_address,
        uncapped=settings.trusted_proxies,
    )
    use_channel(socket_map, guard)
    if share is not None:
        accept_in_turn(socket_map, share)
    return server


def connection_limit(connections_per_address: int) -> int:
    """waitress's limit on open connections: room for ADDRESSES_AT_THEIR_CAP at their cap.

    The process's open-file limit is raised to fit it where the hard limit allows (a service
    manager's soft limit is often 1024); where it does not, the limit is what fits, said in a
    warning.
    """
    wanted = max(MIN_CONNECTION_LIMIT, ADDRESSES_AT_THEIR_CAP * connections_per_address)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + FILES_BESIDES_CONNECTIONS
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass  # kept as it is: the limit below is what it allows
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    fits = max(1, soft - FILES_BESIDES_CONNECTIONS)
    logger.warning(
        "the open-file limit (%d) leaves room for %d connections, not %d: one client address "
        "may hold %d of them; raise it (ulimit -n, LimitNOFILE=) for others to be served",
        soft,
        fits,
        wanted,
        connections_per_address,
    )
    return fits


def listening_on(server: BaseWSGIServer | MultiSocketServer) -> Sequence[tuple[str, int]]:
    """(host, port) of each socket server listens on: a name with several addresses (localhost,
    where it is ::1 too) makes waitress listen on each, through a MultiSocketServer."""
    if isinstance(server, MultiSocketServer):
        return server.effective_listen
    # Where a bound TcpWSGIServer listens (types-waitress leaves the two attributes out).
    return [(server.effective_host, server.effective_port)]  # type: ignore[attr-defined]


def serve_with_waitress(app: ScoreApp, settings: Settings) -> None:
    """Serve app until SIGINT or SIGTERM, then let running requests finish and return."""
    stop_signals = StopSignals(signal.SIGTERM, signal.SIGINT)
    try:
        server = waitress_server(app, settings)
    except OSError as error:
        raise CannotStart(_cannot_listen(error, settings)) from error
    for host, port in listening_on(server):
        logger.info("serving on %s", http_url(host, port))
    try:
        stop_signals.run(server)
    finally:
        server.close()
    logger.info("stopped")
