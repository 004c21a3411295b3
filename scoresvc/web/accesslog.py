"""The access log: one line per request, of a bounded length, with session keys hidden."""

import logging
import re
from wsgiref.types import WSGIEnvironment

from scoresvc.logconfig import line_writer_for
from scoresvc.web.clientaddress import ClientAddresses
from scoresvc.web.querystring import redact

access_logger = logging.getLogger("scoresvc.access")

# 22 characters of the key alphabet carry 132 bits: as much as a whole key is worth guessing.
# Any such run is hidden wherever it stands, since a client may put its key in the path or
# under a misspelt parameter name, where redacting `sessionkey` alone would miss it.
_KEY_SHAPED = re.compile(r"[A-Za-z0-9_-]{22,}")
_KEY_SHAPED_LENGTH = 22
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
HEALTH_PROBE_PATH = "/healthz"
# Paths that machines poll every few seconds: a health probe, and Prometheus's scrape.
PROBE_PATHS = frozenset({HEALTH_PROBE_PATH, "/metrics"})
# The most of a request's path and query string a line shows; past it, the rest is cut (a
# client may send hundreds of kilobytes of query string).
MAX_LOGGED_TARGET = 1024
_DIRECT = ClientAddresses()


def log_request(
    environ: WSGIEnvironment,
    status: str,
    duration_seconds: float,
    client_addresses: ClientAddresses = _DIRECT,
) -> None:
    """Log client address, method, path (keys redacted, cut at 1 KiB), status and duration.

    A health probe or a metrics scrape answered 200 is logged at DEBUG: load balancers,
    container engines and Prometheus ask every few seconds, and at INFO the log is for
    players' requests.
    """
    probe = status.startswith("200") and environ.get("PATH_INFO") in PROBE_PATHS
    level = logging.DEBUG if probe else logging.INFO
    if not access_logger.isEnabledFor(level):
        return
    client = client_addresses.of(environ)
    method = _printable(environ.get("REQUEST_METHOD", "-"))
    path = _printable(logged_path(environ))
    message = f"{client} {method} {path} {status[:3]} {duration_seconds * 1000:.2f}ms"
    writer = line_writer_for(access_logger)
    if writer is None or probe:
        access_logger.log(level, message)
    else:
        # The service's own log set-up, with nobody else listening: the line goes straight to
        # its writer's queue. A LogRecord would cost more than answering a cached request does.
        writer.write_message(access_logger.name, "INFO", message)


def logged_path(environ: WSGIEnvironment) -> str:
    """The request's path and query string as a log may show them: no session key in them,
    and at most MAX_LOGGED_TARGET characters of them, the cut marked."""
    path = environ.get("PATH_INFO") or "/"
    query = environ.get("QUERY_STRING")
    cut = 0
    if len(path) + len(query or "") >= MAX_LOGGED_TARGET:
        path, query, cut = _cut_target(path, query or "")
    logged = f"{path}?{redact(query, 'sessionkey')}" if query else path
    if len(logged) >= _KEY_SHAPED_LENGTH:
        logged = _KEY_SHAPED.sub("[redacted]", logged)
    return f"{logged}[...{cut} characters cut]" if cut else logged


def _cut_target(path: str, query: str) -> tuple[str, str, int]:
    # The first MAX_LOGGED_TARGET characters, less a run of key characters that the cut ends
    # in: it may be the start of a key, too short once cut to be seen as one and redacted.
    # Cut before redacting, so that a huge query string costs no more than a short one.
    whole = len(path) + len(query)
    path = path[:MAX_LOGGED_TARGET]
    query = query[: MAX_LOGGED_TARGET - len(path)]
    if query:
        query = query.rstrip(_KEY_ALPHABET)
    else:
        path = path.rstrip(_KEY_ALPHABET) or "/"
    return path, query, whole - len(path) - len(query)


def _printable(text: str) -> str:
    # Escape control and non-ASCII characters (and so backslashes) so that a request cannot
    # forge or break log lines.
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text  # nothing to escape: the common case, checked without copying
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")
