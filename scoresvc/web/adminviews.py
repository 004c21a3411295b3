"""The admin API and its console: levels, a level's ordering and export, removals and bans."""

import dataclasses
import functools
import hashlib
import json
import logging
import re
import time
from base64 import b64encode
from collections.abc import Callable, Generator, Iterable
from importlib.resources import files
from itertools import chain
from typing import Any, overload
from wsgiref.types import WSGIEnvironment

from scoresvc.errors import DatabaseUnavailable
from scoresvc.leaderboards import iso_utc as iso_second
from scoresvc.numbers import parse_uint31
from scoresvc.storage.moderation import PAGE_SIZE, AdminEntry, Moderation, RulesAndSeason
from scoresvc.web.bearer import BearerToken
from scoresvc.web.querystring import parameter_values
from scoresvc.web.responses import JSON, BadRequest, NotFound, PayloadTooLarge, Response

logger = logging.getLogger("scoresvc")

CSV = "text/csv; charset=utf-8"
HTML = "text/html; charset=utf-8"
CSV_HEADER = b"rank,userid,score,reached_at\n"
# A rules object is a few fields; the server refuses bodies over 1 KiB before reading them.
RULES_BODY_BYTES = 1024

_NO_STORE = (("Cache-Control", "no-store"),)


def admin_token(token: str) -> BearerToken:
    """The admin API's bearer token."""
    return BearerToken(token, realm="scoresvc admin", name="admin token")


def _requires_token(view: Callable[..., Response]) -> Callable[..., Response]:
    # The token is checked before the query string is read or the database asked, so that a
    # caller without it learns nothing of either. (A malformed number in the path is a 400
    # before this, from the router: it tells nothing.)
    @functools.wraps(view)
    def checked(self: "AdminViews", environ: WSGIEnvironment, **arguments: int) -> Response:
        self.token.check(environ)
        return view(self, environ, **arguments)

    return checked


class AdminViews:
    """The admin API's calls (JSON, behind the token) and the console page that uses them."""

    def __init__(self, moderation: Moderation, token: BearerToken) -> None:
        self.moderation = moderation
        self.token = token
        self._console = console_response()  # read once: it cannot change while we serve

    def console(self, environ: WSGIEnvironment) -> Response:
        """The admin console: one HTML page that asks for the token and calls the API."""
        return self._console

    def console_redirect(self, environ: WSGIEnvironment) -> Response:
        """/admin, as people type it: the console is at /admin/."""
        return Response(
            b"the admin console is at /admin/\n",
            "308 Permanent Redirect",
            headers=(("Location", "/admin/"),),
        )

    @_requires_token
    def levels(self, environ: WSGIEnvironment) -> Response:
        """Levels with players, by id, 100 from after the level `after`."""
        after = _number_parameter(environ, "after", default=-1)
        levels = self.moderation.levels(after)
        return _json_response(
            {
                "levels": [{"level": lv.level_id, "players": lv.players} for lv in levels],
                "next": levels[-1].level_id if len(levels) == PAGE_SIZE else None,
            }
        )

    @_requires_token
    def scores(self, environ: WSGIEnvironment, levelid: int) -> Response:
        """100 places of the level's ordering from the rank `from` (1 if not given)."""
        first = _number_parameter(environ, "from", default=1)
        if first == 0:
            raise BadRequest("from must be a rank: 1 or more")
        season = _number_parameter(environ, "season", default=None)
        page = self.moderation.scores_from(levelid, first, season)
        return _json_response(
            {
                "level": levelid,
                "players": page.players,
                "from": first,
                "entries": [_entry(entry) for entry in page.entries],
                "next": first + PAGE_SIZE if first + PAGE_SIZE <= page.players else None,
            }
        )

    @_requires_token
    def export(self, environ: WSGIEnvironment, levelid: int) -> Response:
        """The level's whole ordering as CSV, streamed from one snapshot whatever its size."""
        headers = (
            ("Content-Disposition", f'attachment; filename="level-{levelid}.csv"'),
            *_NO_STORE,
        )
        season = _number_parameter(environ, "season", default=None)
        batches = self.moderation.export(levelid, season)  # NoSuchSeason before the answer
        if environ["REQUEST_METHOD"] == "HEAD":
            batches.close()
            return Response(headers=headers, content_type=CSV, stream=())
        # The snapshot is opened here, before the answer starts: a database that cannot answer
        # is a 503, not a 200 that breaks off.
        first = next(batches, [])
        return Response(
            headers=headers, content_type=CSV, stream=_csv_lines(levelid, first, batches)
        )

    @_requires_token
    def delete_score(self, environ: WSGIEnvironment, levelid: int, userid: int) -> Response:
        """Remove the user's best score on the level; 404 if there is none."""
        deleted = self.moderation.delete_score(levelid, userid)
        if deleted is None:
            raise NotFound(f"user {userid} has no score on level {levelid}")
        return _json_response(
            {
                "level": levelid,
                "user": userid,
                "deleted": True,
                "score": deleted.score,
                "reached_at": iso_utc(deleted.reached_at_us),
                "hidden": deleted.hidden,
            }
        )

    @_requires_token
    def rules(self, environ: WSGIEnvironment, levelid: int) -> Response:
        """The level's rules and its current season (any level: the defaults if none set)."""
        return _rules_response(self.moderation.rules(levelid))

    @_requires_token
    def change_rules(self, environ: WSGIEnvironment, levelid: int) -> Response:
        """Change the rules a JSON object names; the whole rules object after it."""
        return _rules_response(self.moderation.change_rules(levelid, _json_body(environ)))

    @_requires_token
    def start_season(self, environ: WSGIEnvironment, levelid: int) -> Response:
        """Start the level's next season now; the rules object with the new season."""
        return _rules_response(self.moderation.start_season(levelid))

    @_requires_token
    def ban(self, environ: WSGIEnvironment, userid: int) -> Response:
        """Ban the user (idempotent): their scores hidden everywhere, posts and logins 403."""
        change = self.moderation.ban(userid)
        return _ban_response(userid, True, change.changed, change.levels)

    @_requires_token
    def unban(self, environ: WSGIEnvironment, userid: int) -> Response:
        """Lift the user's ban (idempotent): their scores come back."""
        change = self.moderation.unban(userid)
        return _ban_response(userid, False, change.changed, change.levels)

    @_requires_token
    def bans(self, environ: WSGIEnvironment) -> Response:
        """Banned users, by id, 100 from after the user `after`."""
        after = _number_parameter(environ, "after", default=-1)
        banned = self.moderation.banned_users(after)
        return _json_response(
            {
                "bans": [
                    {
                        "user": user.user_id,
                        "banned_at": iso_utc(user.banned_at_us),
                        "hidden_scores": user.hidden_scores,
                    }
                    for user in banned
                ],
                "next": banned[-1].user_id if len(banned) == PAGE_SIZE else None,
            }
        )

    @_requires_token
    def audit(self, environ: WSGIEnvironment) -> Response:
        """The audit log, newest first, 100 from before the entry `before`."""
        before = _number_parameter(environ, "before", default=None)
        entries = self.moderation.audit_entries(before)
        return _json_response(
            {
                "entries": [
                    {
                        "id": entry.id,
                        "at": iso_utc(entry.changed_at_us),
                        "action": entry.action,
                        "level": entry.level_id,
                        "user": entry.user_id,
                        "detail": entry.detail,
                    }
                    for entry in entries
                ],
                "next": entries[-1].id if len(entries) == PAGE_SIZE else None,
            }
        )


def iso_utc(microseconds: int) -> str:
    """Microseconds since the epoch as ISO 8601 in UTC: 2026-11-28T09:15:02.123456Z."""
    seconds, fraction = divmod(microseconds, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:06d}Z"


def _rules_response(found: RulesAndSeason) -> Response:
    season = found.season
    return _json_response(
        {
            "level": found.level_id,
            **dataclasses.asdict(found.rules),  # order, keep, reset, ... in the SPEC's order
            "season": season.number,
            "season_started": iso_second(season.started_us),
            "season_ends": iso_second(season.ended_us),
        }
    )


def _json_body(environ: WSGIEnvironment) -> object:
    """The request's body as JSON: a small object, or 400 (413 past RULES_BODY_BYTES)."""
    raw_length = environ.get("CONTENT_LENGTH") or "0"
    if not raw_length.isascii() or not raw_length.isdigit():
        raise BadRequest("invalid Content-Length")
    if int(raw_length) > RULES_BODY_BYTES:
        raise PayloadTooLarge(f"a rules object is at most {RULES_BODY_BYTES} bytes")
    body = environ["wsgi.input"].read(int(raw_length)) if int(raw_length) else b""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting: RecursionError
        raise BadRequest("the body must be a JSON object of rules") from None


def _entry(entry: AdminEntry) -> dict[str, Any]:
    return {
        "rank": entry.rank,
        "user": entry.user_id,
        "score": entry.score,
        "reached_at": iso_utc(entry.reached_at_us),
    }


def _ban_response(user_id: int, banned: bool, changed: bool, levels: Iterable[int]) -> Response:
    return _json_response(
        {"user": user_id, "banned": banned, "changed": changed, "levels": list(levels)}
    )


def _json_response(document: dict[str, Any]) -> Response:
    body = json.dumps(document, separators=(",", ":")).encode("ascii")
    return Response(body, headers=_NO_STORE, content_type=JSON)


@overload
def _number_parameter(environ: WSGIEnvironment, name: str, *, default: int) -> int: ...


@overload
def _number_parameter(environ: WSGIEnvironment, name: str, *, default: None) -> int | None: ...


def _number_parameter(environ: WSGIEnvironment, name: str, *, default: int | None) -> int | None:
    values = parameter_values(environ.get("QUERY_STRING", ""), name)
    if not values:
        return default
    if len(values) > 1:
        raise BadRequest(f"give {name} once")
    return parse_uint31(values[0], name)


def _csv_lines(
    level_id: int, first: list[AdminEntry], rest: Generator[list[AdminEntry], None, None]
) -> Generator[bytes, None, None]:
    # One chunk per batch read: a few hundred KB, whatever the level's size.
    try:
        yield CSV_HEADER
        for batch in chain((first,), rest):
            if batch:
                yield "".join(
                    f"{e.rank},{e.user_id},{e.score},{iso_utc(e.reached_at_us)}\n" for e in batch
                ).encode("ascii")
    except DatabaseUnavailable as error:
        # The answer has begun: it can only break off (the client sees an unfinished chunked
        # body, never a short file that looks whole).
        logger.error("export of level %d broken off: %s", level_id, error)
        raise
    finally:
        rest.close()  # the snapshot ends, also when the client goes away


# The console's inline <script> and <style>, each allowed by its hash and nothing else.
_INLINE = re.compile(rb"<(script|style)>(.*?)</\1>", re.DOTALL)


def console_response() -> Response:
    """The console page as shipped in the package, with a CSP that allows only itself."""
    page = files("scoresvc.web").joinpath("console.html").read_bytes()
    hashes: dict[bytes, list[str]] = {b"script": [], b"style": []}
    for kind, content in _INLINE.findall(page):
        digest = b64encode(hashlib.sha256(content).digest()).decode("ascii")
        hashes[kind].append(f"'sha256-{digest}'")
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(hashes[b'script'])}",
            f"style-src {' '.join(hashes[b'style'])}",
            "connect-src 'self'",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    headers = (
        ("Content-Security-Policy", policy),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-cache"),
    )
    return Response(page, headers=headers, content_type=HTML)
