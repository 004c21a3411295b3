"""The WSGI application: the route list, the dispatcher, and the factory that wires them."""

import logging
import time
from collections.abc import Callable, Iterable

from sqlalchemy import Engine

from scoresvc.errors import DatabaseUnavailable, InvalidNumber, InvalidSessionKey
from scoresvc.sessions import SignedSessionKeys, StoredSessionKeys, signing_secret
from scoresvc.settings import Settings
from scoresvc.storage.database import Database, create_database_engine
from scoresvc.storage.migrate import upgrade_to_head
from scoresvc.storage.repository import Repository
from scoresvc.storage.scorejournal import JOURNAL_SUFFIX, ScoreJournal
from scoresvc.web.accesslog import log_request
from scoresvc.web.responses import (
    BadRequest,
    HTTPError,
    InternalServerError,
    Response,
    ServiceUnavailable,
    Unauthorized,
)
from scoresvc.web.routing import Route, Router
from scoresvc.web.views import ScoreViews

logger = logging.getLogger("scoresvc")

_UNAUTHORIZED_HEADERS = (("WWW-Authenticate", 'SessionKey realm="scoresvc"'),)


def build_routes(views: ScoreViews) -> list[Route]:
    """Every route of the service, in one list."""
    return [
        Route("<int:userid>/login", views.login, methods=("GET",)),
        # Some copies of the API write the login URL as /<userid>/#: clients then send /<userid>/.
        Route("<int:userid>/", views.login, methods=("GET",)),
        Route("<int:levelid>/score", views.post_score, methods=("POST",)),
        Route("<int:levelid>/highscorelist", views.highscorelist, methods=("GET",)),
        Route("healthz", views.healthz, methods=("GET",)),
        Route("openapi.yaml", views.openapi, methods=("GET",)),
    ]


def error_response(error: Exception) -> Response:
    """The response for an error a request ended with: the one place errors become HTTP."""
    if isinstance(error, HTTPError):
        return error.response()
    if isinstance(error, InvalidNumber):
        return BadRequest(str(error)).response()
    if isinstance(error, InvalidSessionKey):
        return Unauthorized(str(error), _UNAUTHORIZED_HEADERS).response()
    if isinstance(error, DatabaseUnavailable):
        logger.error("database unavailable: %s", error)
        return ServiceUnavailable("the database is not answering; try again shortly").response()
    logger.error("unexpected error", exc_info=error)
    return InternalServerError("internal error").response()


class ScoreApp:
    """A WSGI callable that routes each request to its view and turns errors into responses."""

    def __init__(
        self,
        router: Router,
        *,
        on_close: Callable[[], None] = lambda: None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.router = router
        self._on_close = on_close
        self._timer = timer

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = self._timer()
        method = environ["REQUEST_METHOD"]
        try:
            view, kwargs = self.router.match(method, environ.get("PATH_INFO") or "/")
            response = view(environ, **kwargs)
        except Exception as error:
            response = error_response(error)
        start_response(
            response.status,
            [
                ("Content-Type", response.content_type),
                ("Content-Length", str(len(response.body))),
                *response.headers,
            ],
        )
        log_request(environ, response.status, self._timer() - started)
        # HEAD is answered as GET, headers and all, without the body.
        return [] if method == "HEAD" else [response.body]

    def close(self) -> None:
        """Release the database."""
        self._on_close()


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    clock: Callable[[], float] = time.time,
) -> ScoreApp:
    """Open (and migrate) the database from settings, or the given engine, and build the app."""
    settings = settings or Settings()
    database = Database(
        engine
        or create_database_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    )
    upgrade_to_head(database)
    journal = score_journal_for(database, settings.sqlite_synchronous)
    repository = Repository(database, clock=clock, journal=journal)
    if settings.store_tokens:
        session_keys = StoredSessionKeys(repository, ttl_seconds=settings.session_ttl, clock=clock)
    else:
        secret = signing_secret(settings.secret, repository)
        session_keys = SignedSessionKeys(secret, ttl_seconds=settings.session_ttl, clock=clock)
    views = ScoreViews(repository, session_keys)

    def close() -> None:
        try:
            database.close()  # runs the deferred writes, or raises
            if journal is not None:
                journal.clear()  # every record is in the file now
        finally:
            if journal is not None:
                journal.close()

    return ScoreApp(Router(build_routes(views)), on_close=close)


def score_journal_for(database: Database, synchronous: str) -> ScoreJournal | None:
    """The journal that lets score writes to a database file be deferred, where that is safe.

    A mapped file outlives the process, not a power cut: it is used where the file's own
    promise is the same (synchronous OFF or NORMAL). Under FULL and EXTRA each score is
    committed, and synced, before it is answered. A memory database needs no journal.
    """
    if database.ends_with_process or synchronous.upper() not in ("OFF", "NORMAL"):
        return None
    return ScoreJournal(f"{database.engine.url.database}{JOURNAL_SUFFIX}")
