"""The access log: one line per request, with session keys hidden."""

import logging
import re

from scoresvc.logconfig import line_writer_for
from scoresvc.web.querystring import redact

access_logger = logging.getLogger("scoresvc.access")

# 22 characters of the key alphabet carry 132 bits: as much as a whole key is worth guessing.
# Any such run is hidden wherever it stands, since a client may put its key in the path or
# under a misspelt parameter name, where redacting `sessionkey` alone would miss it.
_KEY_SHAPED = re.compile(r"[A-Za-z0-9_-]{22,}")
_KEY_SHAPED_LENGTH = 22
HEALTH_PROBE_PATH = "/healthz"


def log_request(environ: dict, status: str, duration_seconds: float) -> None:
    """Log method, path (session key redacted), status code and duration of one request.

    A health probe that finds the service healthy is logged at DEBUG: load balancers and
    container engines ask every few seconds, and at INFO the log is for players' requests.
    """
    probe = status.startswith("200") and environ.get("PATH_INFO") == HEALTH_PROBE_PATH
    level = logging.DEBUG if probe else logging.INFO
    if not access_logger.isEnabledFor(level):
        return
    method = _printable(environ.get("REQUEST_METHOD", "-"))
    path = _printable(logged_path(environ))
    message = f"{method} {path} {status[:3]} {duration_seconds * 1000:.2f}ms"
    writer = line_writer_for(access_logger)
    if writer is None or probe:
        access_logger.log(level, message)
    else:
        # The service's own log set-up, with nobody else listening: the line goes straight to
        # its writer's queue. A LogRecord would cost more than answering a cached request does.
        writer.write_message(access_logger.name, "INFO", message)


def logged_path(environ: dict) -> str:
    """The request's path and query string as a log may show them: no session key in them."""
    path = environ.get("PATH_INFO") or "/"
    query = environ.get("QUERY_STRING")
    logged = f"{path}?{redact(query, 'sessionkey')}" if query else path
    if len(logged) < _KEY_SHAPED_LENGTH:
        return logged
    return _KEY_SHAPED.sub("[redacted]", logged)


def _printable(text: str) -> str:
    # Escape control and non-ASCII characters (and so backslashes) so that a request cannot
    # forge or break log lines.
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text  # nothing to escape: the common case, checked without copying
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")
