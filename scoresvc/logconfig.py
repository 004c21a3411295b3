"""Where the service's log lines go: stderr, and a log file when one is configured."""

import logging
import sys

_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"
_LOGGERS = ("scoresvc", "waitress")


def configure_logging(logfile: str | None = None) -> None:
    """Send scoresvc's and waitress's logs (INFO and up) to stderr and to logfile if given."""
    formatter = logging.Formatter(_FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if logfile:
        handlers.append(logging.FileHandler(logfile, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "_scoresvc", False)]:
            logger.removeHandler(old)
            old.close()
        for handler in handlers:
            handler._scoresvc = True  # ours: replaced, not stacked, when configured again
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
