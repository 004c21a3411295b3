"""The access log: one line per request, with session keys hidden."""

import logging
import re

from scoresvc.querystring import redact

access_logger = logging.getLogger("scoresvc.access")

# 22 characters of the key alphabet carry 132 bits: as much as a whole key is worth guessing.
# Any such run is hidden wherever it stands, since a client may put its key in the path or
# under a misspelt parameter name, where redacting `sessionkey` alone would miss it.
_KEY_SHAPED = re.compile(r"[A-Za-z0-9_-]{22,}")
_KEY_SHAPED_LENGTH = 22


def log_request(environ: dict, status: str, duration_seconds: float) -> None:
    """Log method, path (session key redacted), status code and duration of one request."""
    if access_logger.isEnabledFor(logging.INFO):
        access_logger.info(
            "%s %s %s %.2fms",
            _printable(environ.get("REQUEST_METHOD", "-")),
            _printable(logged_path(environ)),
            status[:3],
            duration_seconds * 1000,
        )


def logged_path(environ: dict) -> str:
    """The request's path and query string as a log may show them: no session key in them."""
    path = environ.get("PATH_INFO") or "/"
    query = environ.get("QUERY_STRING")
    logged = f"{path}?{redact(query, 'sessionkey')}" if query else path
    if len(logged) < _KEY_SHAPED_LENGTH:
        return logged
    return _KEY_SHAPED.sub("[redacted]", logged)


def _printable(text: str) -> str:
    # Escape control and non-ASCII characters so a request cannot forge or break log lines.
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")
