"""The views: one method per call of the contract, raising errors rather than building them."""

from importlib.resources import files

from scoresvc.errors import InvalidSessionKey
from scoresvc.numbers import parse_uint31
from scoresvc.sessions import SessionKeys
from scoresvc.storage.repository import Repository
from scoresvc.web.querystring import parameter_values
from scoresvc.web.responses import BadRequest, PayloadTooLarge, Response

# The longest body a score could need is ten digits and a line ending; anything much larger
# is refused before it is read.
MAX_SCORE_BODY_BYTES = 64

_NO_STORE = (("Cache-Control", "no-store"),)

OPENAPI_CONTENT_TYPE = "application/yaml"


def openapi_document() -> bytes:
    """The OpenAPI 3 description of the API, as shipped in the package."""
    return files("scoresvc").joinpath("openapi.yaml").read_bytes()


class ScoreViews:
    """Login, post a score, high score list, health: each takes the WSGI environ."""

    def __init__(self, repository: Repository, session_keys: SessionKeys) -> None:
        self.repository = repository
        self.session_keys = session_keys
        self._openapi = openapi_document()  # read once: it cannot change while we serve

    def login(self, environ: dict, userid: int) -> Response:
        """A new session key for userid, as the whole body."""
        key = self.session_keys.issue(userid)
        return Response(key.encode("ascii"), headers=_NO_STORE)

    def post_score(self, environ: dict, levelid: int) -> Response:
        """Record the body's score for the key's user, if it is the user's best on the level."""
        # Size first (refused unread), then who is asking, then what they sent.
        body = _read_score_body(environ)
        user_id = self.session_keys.verify(_session_key(environ))
        score = parse_uint31(_score_text(body), "score")
        self.repository.record_score(levelid, user_id, score)
        return Response()

    def highscorelist(self, environ: dict, levelid: int) -> Response:
        """The level's top 15 as userid=score pairs, comma-separated; empty if none."""
        top = self.repository.top_scores_snapshot(levelid)
        response = top.rendered.get("text")
        if response is None:
            # Rendered once per list: kept with it until a write changes the level's list.
            body = ",".join(f"{entry.user_id}={entry.score}" for entry in top.entries)
            response = top.rendered["text"] = Response(body.encode("ascii"))
        return response

    def healthz(self, environ: dict) -> Response:
        """200 'ok' when the database answers (a failure becomes 503 in the app)."""
        self.repository.check()
        return Response(b"ok", headers=_NO_STORE)

    def openapi(self, environ: dict) -> Response:
        """This API's OpenAPI 3 document (YAML)."""
        return Response(self._openapi, content_type=OPENAPI_CONTENT_TYPE)


def _session_key(environ: dict) -> str:
    keys = parameter_values(environ.get("QUERY_STRING", ""), "sessionkey")
    if not keys:
        raise InvalidSessionKey("session key missing")
    if len(keys) > 1:
        raise InvalidSessionKey("more than one session key given")
    return keys[0]


def _read_score_body(environ: dict) -> bytes:
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
