"""The WSGI application: the route list, the dispatcher, and the factory that wires them."""

import logging
import time
from collections.abc import Callable, Iterable
from wsgiref.types import StartResponse, WSGIEnvironment

from scoresvc.errors import (
    DatabaseUnavailable,
    InvalidNumber,
    InvalidSessionKey,
    NoSuchSeason,
    RateLimited,
    RulesConflict,
    ScoreOutOfBounds,
    ServerWritesOnly,
    UserBanned,
)
from scoresvc.leaderboards import InvalidRules
from scoresvc.limits import Limits, TokenBuckets
from scoresvc.metrics import UNMATCHED_ROUTE, Metrics, NoMetrics
from scoresvc.sessions import SessionKeys, SignedSessionKeys, StoredSessionKeys, signing_secret
from scoresvc.settings import Settings
from scoresvc.startup import open_ready_database
from scoresvc.storage.database import Database
from scoresvc.storage.moderation import Moderation
from scoresvc.storage.repository import Repository
from scoresvc.storage.unitofwork import Changes
from scoresvc.web.accesslog import log_request
from scoresvc.web.adminviews import AdminViews, admin_token
from scoresvc.web.bearer import BearerToken
from scoresvc.web.clientaddress import ClientAddresses
from scoresvc.web.metricsview import MetricsView
from scoresvc.web.negotiation import prefers_json
from scoresvc.web.responses import (
    BadRequest,
    Conflict,
    Forbidden,
    HTTPError,
    InternalServerError,
    NotFound,
    Response,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UnprocessableContent,
)
from scoresvc.web.revalidation import none_match
from scoresvc.web.routing import Route, Router, reserved
from scoresvc.web.views import ScoreViews

logger = logging.getLogger("scoresvc")

_UNAUTHORIZED_HEADERS = (("WWW-Authenticate", 'SessionKey realm="scoresvc"'),)


def build_routes(
    views: ScoreViews,
    *,
    metrics: MetricsView | None = None,
    admin: AdminViews | None = None,
) -> list[Route]:
    """Every route of the service, in one list (/metrics and /admin only where they are on)."""
    operator = [] if metrics is None else [Route("metrics", metrics, methods=("GET",))]
    return [
        # Before the players' routes: /admin/ would be a login with a malformed number, and
        # /admin/score a score post. Every /admin path no admin route takes is unknown.
        *([] if admin is None else _admin_routes(admin)),
        reserved("admin"),
        reserved("admin/<path:rest>"),
        Route("<int:userid>/login", views.login, methods=("GET",)),
        # Some copies of the API write the login URL as /<userid>/#: clients then send /<userid>/.
        Route("<int:userid>/", views.login, methods=("GET",)),
        Route("<int:levelid>/score", views.post_score, methods=("POST",)),
        Route("<int:levelid>/highscorelist", views.highscorelist, methods=("GET",)),
        Route("<int:levelid>/rank/<int:userid>", views.rank, methods=("GET",)),
        Route("<int:levelid>/seasons", views.seasons, methods=("GET",)),
        Route("healthz", views.healthz, methods=("GET",)),
        Route("openapi.yaml", views.openapi, methods=("GET",)),
        *operator,
    ]


def _admin_routes(admin: AdminViews) -> list[Route]:
    return [
        Route("admin", admin.console_redirect, methods=("GET",)),
        Route("admin/", admin.console, methods=("GET",)),
        Route("admin/levels", admin.levels, methods=("GET",)),
        Route("admin/levels/<int:levelid>/scores", admin.scores, methods=("GET",)),
        Route(
            "admin/levels/<int:levelid>/scores/<int:userid>",
            admin.delete_score,
            methods=("DELETE",),
        ),
        Route("admin/levels/<int:levelid>/export", admin.export, methods=("GET",)),
        Route("admin/levels/<int:levelid>/rules", admin.rules, methods=("GET",)),
        Route("admin/levels/<int:levelid>/rules", admin.change_rules, methods=("PUT",)),
        Route("admin/levels/<int:levelid>/seasons", admin.start_season, methods=("POST",)),
        Route("admin/users/<int:userid>/ban", admin.ban, methods=("PUT",)),
        Route("admin/users/<int:userid>/ban", admin.unban, methods=("DELETE",)),
        Route("admin/bans", admin.bans, methods=("GET",)),
        Route("admin/audit", admin.audit, methods=("GET",)),
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
    if isinstance(error, (UserBanned, ServerWritesOnly)):
        return Forbidden(str(error))
    if isinstance(error, InvalidRules):
        return BadRequest(str(error))
    if isinstance(error, NoSuchSeason):
        return NotFound(str(error))
    if isinstance(error, RulesConflict):
        return Conflict(str(error))
    if isinstance(error, ScoreOutOfBounds):
        return UnprocessableContent(str(error))
    if isinstance(error, RateLimited):
        retry_after = (("Retry-After", str(error.retry_after_seconds)),)
        return TooManyRequests(str(error), retry_after)
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
        metrics: Metrics | NoMetrics | None = None,
        client_addresses: ClientAddresses | None = None,
    ) -> None:
        self.router = router
        self._on_close = on_close
        self._timer = timer
        self._metrics = metrics or NoMetrics()
        self._client_addresses = client_addresses or ClientAddresses()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = self._timer()
        method = environ["REQUEST_METHOD"]
        route = UNMATCHED_ROUTE
        try:
            found, kwargs = self.router.resolve(method, environ.get("PATH_INFO") or "/")
            route = found.label
            assert found.view is not None  # resolve() never answers a reserved route
            response: Response = found.view(environ, **kwargs)
        except Exception as error:
            if isinstance(error, DatabaseUnavailable):
                self._metrics.database_error()
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
        seconds = self._timer() - started
        self._metrics.request_answered(route, response.status, seconds)
        log_request(environ, response.status, seconds, self._client_addresses)
        # HEAD is answered as GET, headers and all, without the body.
        if method == "HEAD":
            close = getattr(response.stream, "close", None)
            if close is not None:
                close()  # a stream made but never sent
            return []
        return response.body_iterable()

    def close(self) -> None:
        """Release the database."""
        self._on_close()


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    clock: Callable[[], float] = time.time,
    metrics: Metrics | NoMetrics | None = None,
    buckets: TokenBuckets | None = None,
) -> ScoreApp:
    """The app over database, wired from settings.

    database: one made ready to serve (see startup); by default settings' own, opened and
    made ready here. metrics: the series to count in (a worker's are its supervisor's
    multi-process ones); by default this app's own, or none where settings turn metrics off.
    buckets: the rate limits' table (a worker's is its supervisor's, shared by every worker);
    by default this app's own.
    """
    settings = settings or Settings()
    if metrics is None:
        metrics = Metrics() if settings.metrics else NoMetrics()
    database = database or open_ready_database(settings, clock=clock)
    try:
        repository = Repository(database)
        database.subscribe(counting_new_bests(metrics))
        session_keys: SessionKeys
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
    own_buckets = buckets is None
    buckets = buckets or TokenBuckets()
    limits = Limits(
        buckets,
        posts=settings.post_limit,
        logins=settings.login_limit,
        clock=clock,
    )
    client_addresses = ClientAddresses(settings.trusted_proxies)
    views = ScoreViews(
        repository,
        session_keys,
        limits=limits,
        metrics=metrics,
        client_addresses=client_addresses,
        writer_token=None if settings.writer_token is None else writer_token(settings.writer_token),
    )
    metrics_view = MetricsView(metrics, repository) if isinstance(metrics, Metrics) else None
    admin = None
    if settings.admin_token is not None:
        moderation = Moderation(database, repository.levels, clock=clock)
        admin = AdminViews(moderation, admin_token(settings.admin_token))
    return ScoreApp(
        Router(build_routes(views, metrics=metrics_view, admin=admin)),
        on_close=_closing(database, buckets if own_buckets else None),
        metrics=metrics,
        client_addresses=client_addresses,
    )


def writer_token(token: str) -> BearerToken:
    """The trusted writer's bearer token (the game's own server posting for its players)."""
    return BearerToken(token, realm="scoresvc writer", name="writer token")


def counting_new_bests(metrics: Metrics | NoMetrics) -> Callable[[Changes], None]:
    """A database listener that counts, in metrics, the new bests each unit of work made."""

    def count(changes: Changes) -> None:
        if changes.new_bests:
            metrics.new_bests(changes.new_bests)

    return count


def _closing(database: Database, buckets: TokenBuckets | None) -> Callable[[], None]:
    def close() -> None:
        try:
            database.close()
        finally:
            if buckets is not None:
                buckets.close()

    return close
