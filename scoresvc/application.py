"""The WSGI application: the route list, the dispatcher, and the factory that wires them."""

import logging
import time
from collections.abc import Callable, Iterable

from scoresvc.errors import DatabaseUnavailable, InvalidNumber, InvalidSessionKey
from scoresvc.sessions import SignedSessionKeys, StoredSessionKeys, signing_secret
from scoresvc.settings import Settings
from scoresvc.storage.database import Database, open_database
from scoresvc.storage.leftoverjournal import leftover_records, remove_journal
from scoresvc.storage.migrate import upgrade_to_head
from scoresvc.storage.repository import Repository
from scoresvc.web.accesslog import log_request
from scoresvc.web.negotiation import prefers_json
from scoresvc.web.responses import (
    BadRequest,
    HTTPError,
    InternalServerError,
    Response,
    ServiceUnavailable,
    Unauthorized,
)
from scoresvc.web.revalidation import none_match
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
        Route("<int:levelid>/rank/<int:userid>", views.rank, methods=("GET",)),
        Route("healthz", views.healthz, methods=("GET",)),
        Route("openapi.yaml", views.openapi, methods=("GET",)),
    ]


def error_response(error: Exception, *, problem_json: bool = False) -> Response:
    """The response for an error a request ended with: the one place errors become HTTP."""
    return _http_error(error).response(problem_json=problem_json)


def _http_error(error: Exception) -> HTTPError:
    """The HTTP error that stands for error."""
    if isinstance(error, HTTPError):
        return error
    if isinstance(error, InvalidNumber):
        return BadRequest(str(error))
    if isinstance(error, InvalidSessionKey):
        return Unauthorized(str(error), _UNAUTHORIZED_HEADERS)
    if isinstance(error, DatabaseUnavailable):
        logger.error("database unavailable: %s", error)
        return ServiceUnavailable("the database is not answering; try again shortly")
    logger.error("unexpected error", exc_info=error)
    return InternalServerError("internal error")


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
            # Errors are negotiated too: problem details for a client that prefers JSON.
            problem_json = prefers_json(environ.get("HTTP_ACCEPT"))
            response = error_response(error, problem_json=problem_json)
        else:
            # Lists and ranks (GET routes) carry an ETag: where If-None-Match names it, the
            # client's copy is current, and a 304 goes instead of the body.
            if response.etag is not None:
                if_none_match = environ.get("HTTP_IF_NONE_MATCH")
                if if_none_match and none_match(if_none_match, response.etag):
                    response = response.not_modified()
        start_response(response.status, list(response.header_list))
        log_request(environ, response.status, self._timer() - started)
        # HEAD is answered as GET, headers and all, without the body.
        return [] if method == "HEAD" else [response.body]

    def close(self) -> None:
        """Release the database."""
        self._on_close()


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    clock: Callable[[], float] = time.time,
) -> ScoreApp:
    """Open (and migrate) the database from settings, or the given one, and build the app."""
    settings = settings or Settings()
    database = database or open_database(
        settings.database_url, synchronous=settings.sqlite_synchronous, clock=clock
    )
    try:
        upgrade_to_head(database)
        repository = Repository(database)
        write_leftover_journal(database, repository)
        if settings.store_tokens:
            session_keys = StoredSessionKeys(
                repository, ttl_seconds=settings.session_ttl, clock=clock
            )
        else:
            secret = signing_secret(settings.secret, repository)
            session_keys = SignedSessionKeys(secret, ttl_seconds=settings.session_ttl, clock=clock)
    except BaseException:
        database.close()
        raise
    views = ScoreViews(repository, session_keys)
    return ScoreApp(Router(build_routes(views)), on_close=database.close)


def write_leftover_journal(database: Database, repository: Repository) -> None:
    """Write the scores a killed scoresvc 1.0 left in its journal into the file, then drop it."""
    path = database.file_path
    if path is None:
        return  # only a SQLite file can have one
    records = leftover_records(path)
    if records:
        repository.record_scores_reached(records)
        logger.info("wrote %d scores left in %s's score journal", len(records), path)
    remove_journal(path)
