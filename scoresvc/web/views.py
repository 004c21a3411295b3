"""The views: one method per call of the contract, raising errors rather than building them."""

import json
import re
from collections.abc import Iterable
from importlib.resources import files
from typing import Any
from wsgiref.types import WSGIEnvironment

from scoresvc.errors import InvalidSessionKey, ScoreRejected, UserBanned
from scoresvc.leaderboards import iso_utc
from scoresvc.limits import Limits
from scoresvc.metrics import Metrics, NoMetrics
from scoresvc.numbers import parse_uint31
from scoresvc.sessions import SessionKeys
from scoresvc.storage.repository import FRIENDS_LIMIT, RankedEntry, Repository, Window
from scoresvc.web.bearer import BearerToken
from scoresvc.web.clientaddress import ClientAddresses
from scoresvc.web.negotiation import prefers_json
from scoresvc.web.querystring import parameter_values
from scoresvc.web.responses import (
    JSON,
    PLAIN_TEXT,
    BadRequest,
    NotFound,
    PayloadTooLarge,
    Response,
    Unauthorized,
)
from scoresvc.web.revalidation import entity_tag

# The longest body a score could need is ten digits and a line ending; anything much larger
# is refused before it is read.
MAX_SCORE_BODY_BYTES = 64

_NO_STORE = (("Cache-Control", "no-store"),)
# A score post's answer, 200 with no body: made once (a Response costs a µs to make), as
# every post answered 200 gets the same one.
_RECORDED = Response()
# Lists and ranks change with every score: a cache may keep one, but asks (ETag) before use.
_REVALIDATE = (("Cache-Control", "no-cache"), ("Vary", "Accept"))

OPENAPI_CONTENT_TYPE = "application/yaml"
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


def openapi_document() -> bytes:
    """The OpenAPI 3 description of the API, as shipped in the package."""
    return files("scoresvc").joinpath("openapi.yaml").read_bytes()


class ScoreViews:
    """Login, post a score, lists and ranks, seasons, health: each takes the WSGI environ."""

    def __init__(
        self,
        repository: Repository,
        session_keys: SessionKeys,
        *,
        limits: Limits | None = None,
        metrics: Metrics | NoMetrics | None = None,
        client_addresses: ClientAddresses | None = None,
        writer_token: BearerToken | None = None,
    ) -> None:
        self.repository = repository
        self.session_keys = session_keys
        self.writer_token = writer_token
        self.limits = limits
        self.metrics = metrics or NoMetrics()
        self.client_addresses = client_addresses or ClientAddresses()
        self._openapi = openapi_document()  # read once: it cannot change while we serve

    def login(self, environ: WSGIEnvironment, userid: int) -> Response:
        """A new session key for userid, as the whole body; 403 for a banned user."""
        # The limit first: an address over it costs no database work (on PostgreSQL the ban
        # look-up is a round trip). HEAD does that look-up as GET does, so it takes a token too.
        if self.limits is not None:
            self.limits.check_login(self.client_addresses.of(environ))
        if self.repository.is_banned(userid):
            raise UserBanned(userid)
        if environ["REQUEST_METHOD"] == "HEAD":
            # HEAD is safe: GET's headers, but no key issued (in stored mode, issuing one would
            # end the user's previous key).
            return Response(headers=_NO_STORE, content_length=self.session_keys.key_length)
        key = self.session_keys.issue(userid)
        self.metrics.logged_in()
        return Response(key.encode("ascii"), headers=_NO_STORE)

    def post_score(self, environ: WSGIEnvironment, levelid: int) -> Response:
        """Record the body's score for the key's user (or, from the trusted writer, for the
        user= given), as the level's rules keep it."""
        # Size first (refused unread), then who is asking, then what they sent, then whether
        # they may post again so soon: only a post that would be recorded takes a token.
        body = _read_score_body(environ)
        query = environ.get("QUERY_STRING", "")
        # Only the trusted writer names a user: a query with no "user" in it, spelt out or
        # escaped, names none, and is not read for one.
        for_user = parameter_values(query, "user") if "user" in query or "%" in query else []
        if for_user:
            user_id = self._trusted_writers_user(environ, for_user)
        else:
            user_id = self.session_keys.verify(_session_key(query))
        score = parse_uint31(_score_text(body), "score")
        idempotency_key = _idempotency_key(environ)
        if idempotency_key is not None and self.repository.answered_before(
            levelid, user_id, idempotency_key
        ):
            # A retry of a post that was recorded: answered as it was, whatever the limits and
            # the level's rules say now, and nothing changes.
            self.metrics.score_received()
            return _RECORDED
        if self.limits is not None and not for_user:  # the game's server is not limited
            self.limits.check_post(user_id, self.client_addresses.of(environ))
        try:
            self.repository.record_score(
                levelid,
                user_id,
                score,
                by_server=bool(for_user),
                idempotency_key=idempotency_key,
            )
        except ScoreRejected as rejected:
            self.metrics.score_rejected(rejected.reason)
            raise
        self.metrics.score_received()
        return _RECORDED

    def _trusted_writers_user(self, environ: WSGIEnvironment, for_user: list[str]) -> int:
        # user= is the trusted writer's: without its token, nobody's.
        if self.writer_token is None:
            raise Unauthorized("trusted writes are off: post with a session key")
        self.writer_token.check(environ)
        if len(for_user) > 1:
            raise BadRequest("give user once")
        return parse_uint31(for_user[0], "user")

    def highscorelist(self, environ: WSGIEnvironment, levelid: int) -> Response:
        """15 places of the level: the top, around a user or from a rank, or the places of
        the users named; in the level's order."""
        as_json = prefers_json(environ.get("HTTP_ACCEPT"))
        query = environ.get("QUERY_STRING")
        season = _season(query) if query else None
        window = self._window(levelid, query, season) if query else None
        if window is not None:
            return _list_response(levelid, window.entries, window.players, as_json)
        top = self.repository.top_scores_snapshot(levelid, season)
        variant = "json" if as_json else "text"
        response = top.rendered.get(variant)
        if response is None:
            # Rendered once per list and variant: kept until a write changes the level's list.
            entries = (
                RankedEntry(rank, entry.user_id, entry.score)
                for rank, entry in enumerate(top.entries, 1)
            )
            response = _list_response(levelid, entries, top.players, as_json)
            top.rendered[variant] = response
        return response

    def rank(self, environ: WSGIEnvironment, levelid: int, userid: int) -> Response:
        """The user's place in the level's whole ordering; 404 without a score there."""
        as_json = prefers_json(environ.get("HTTP_ACCEPT"))
        found = self.repository.rank(levelid, userid, _season(environ.get("QUERY_STRING")))
        if found is None:
            raise NotFound(f"user {userid} has no score on level {levelid}")
        if not as_json:
            return _revalidatable(str(found.rank).encode("ascii"), as_json=False)
        rank = {
            "level": levelid,
            "user": userid,
            "rank": found.rank,
            "score": found.score,
            "players": found.players,
        }
        return _revalidatable(_json(rank), as_json=True)

    def seasons(self, environ: WSGIEnvironment, levelid: int) -> Response:
        """The level's seasons: their numbers (text), or each with its times and players."""
        state = self.repository.levels.state(levelid)
        seasons = self.repository.levels.seasons(state)
        if not prefers_json(environ.get("HTTP_ACCEPT")):
            body = ",".join(str(season.number) for season, _ in seasons)
            return _revalidatable(body.encode("ascii"), as_json=False)
        listing = {
            "level": levelid,
            "current": seasons[-1][0].number,
            "seasons": [
                {
                    "season": season.number,
                    "started": iso_utc(season.started_us),
                    "ended": None if number == len(seasons) else iso_utc(season.ended_us),
                    "players": players,
                }
                for number, (season, players) in enumerate(seasons, start=1)
            ],
        }
        return _revalidatable(_json(listing), as_json=True)

    def _window(self, levelid: int, query: str, season: int | None) -> Window | None:
        # The places ?around=<userid>, ?from=<rank> or ?users=<ids> asks for; None for the top.
        around = parameter_values(query, "around")
        first = parameter_values(query, "from")
        users = parameter_values(query, "users")
        if sum(map(bool, (around, first, users))) > 1:
            raise BadRequest("give one of around, from and users")
        if len(around) > 1 or len(first) > 1 or len(users) > 1:
            raise BadRequest("give around, from or users once")
        if around:
            userid = parse_uint31(around[0], "around")
            window = self.repository.window_around(levelid, userid, season)
            if window is None:
                raise NotFound(f"user {userid} has no score on level {levelid}")
            return window
        if first:
            rank = parse_uint31(first[0], "from")
            if rank == 0:
                raise BadRequest("from must be a rank: 1 or more")
            if rank > 1:  # from=1 is the top 15, kept rendered
                return self.repository.window_from(levelid, rank, season)
        if users:
            return self.repository.entries_of_users(levelid, _user_ids(users[0]), season)
        return None

    def healthz(self, environ: WSGIEnvironment) -> Response:
        """200 'ok' when the database answers (a failure becomes 503 in the app)."""
        self.repository.check()
        return Response(b"ok", headers=_NO_STORE)

    def openapi(self, environ: WSGIEnvironment) -> Response:
        """This API's OpenAPI 3 document (YAML)."""
        return Response(self._openapi, content_type=OPENAPI_CONTENT_TYPE)


def _list_response(
    level_id: int, entries: Iterable[RankedEntry], players: int, as_json: bool
) -> Response:
    if not as_json:
        body = ",".join(f"{entry.user_id}={entry.score}" for entry in entries)
        return _revalidatable(body.encode("ascii"), as_json=False)
    places = [{"rank": e.rank, "user": e.user_id, "score": e.score} for e in entries]
    listing = {"level": level_id, "players": players, "entries": places}
    return _revalidatable(_json(listing), as_json=True)


def _revalidatable(body: bytes, *, as_json: bool) -> Response:
    # A list or rank: negotiated, and tagged so that a client can ask whether it changed.
    variant, content_type = ("json", JSON) if as_json else ("text", PLAIN_TEXT)
    return Response(
        body, headers=_REVALIDATE, content_type=content_type, etag=entity_tag(body, variant)
    )


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode("ascii")


def _season(query: str | None) -> int | None:
    # season=<n>: that season's board rather than the current one (0 is no season: 404).
    seasons = parameter_values(query, "season") if query else []
    if not seasons:
        return None
    if len(seasons) > 1:
        raise BadRequest("give season once")
    return parse_uint31(seasons[0], "season")


def _user_ids(text: str) -> list[int]:
    ids = dict.fromkeys(parse_uint31(user, "users") for user in text.split(","))
    if len(ids) > FRIENDS_LIMIT:
        raise BadRequest(f"users names at most {FRIENDS_LIMIT} users")
    return list(ids)


def _idempotency_key(environ: WSGIEnvironment) -> str | None:
    key: str | None = environ.get("HTTP_IDEMPOTENCY_KEY")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.match(key):
        raise BadRequest("an Idempotency-Key is 1 to 64 of A-Z a-z 0-9 - _")
    return key


def _session_key(query: str) -> str:
    keys = parameter_values(query, "sessionkey")
    if not keys:
        raise InvalidSessionKey("session key missing")
    if len(keys) > 1:
        raise InvalidSessionKey("more than one session key given")
    return keys[0]


def _read_score_body(environ: WSGIEnvironment) -> bytes:
    raw_length = (environ.get("CONTENT_LENGTH") or "0").lstrip("0") or "0"
    if not raw_length.isascii() or not raw_length.isdigit():
        raise BadRequest("invalid Content-Length")
    if len(raw_length) > 3 or int(raw_length) > MAX_SCORE_BODY_BYTES:
        raise PayloadTooLarge(f"a score body is at most {MAX_SCORE_BODY_BYTES} bytes")
    length = int(raw_length)
    return environ["wsgi.input"].read(length) if length else b""


def _score_text(body: bytes) -> str:
    # One line ending is allowed: `echo 1500 | curl --data-binary @-` sends one.
    body = body.removesuffix(b"\n").removesuffix(b"\r") if body.endswith(b"\n") else body
    if not body:
        raise BadRequest("score missing: send it as the request body")
    return body.decode("latin-1")
