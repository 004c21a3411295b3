"""The access log: one line per request, with session keys hidden."""

import logging

from scoresvc.querystring import redact

access_logger = logging.getLogger("scoresvc.access")


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
    return f"{path}?{redact(query, 'sessionkey')}" if query else path


def _printable(text: str) -> str:
    # Escape control and non-ASCII characters so a request cannot forge or break log lines.
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")
