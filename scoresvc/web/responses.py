"""HTTP responses and the HTTP errors that views raise."""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

PLAIN_TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"

# Errors are negotiated (plain text or problem details), so each says that Accept chose it.
_VARY_ACCEPT = ("Vary", "Accept")


@dataclass(frozen=True, slots=True)
class Response:
    """A finished response: status line, body bytes and any headers beyond the usual two."""

    body: bytes = b""
    status: str = "200 OK"
    headers: tuple[tuple[str, str], ...] = ()
    # None for a response that has no body, and so neither Content-Type nor Content-Length:
    # a 304 may only repeat the 200's length (RFC 9110 8.6), and need not.
    content_type: str | None = PLAIN_TEXT
    # The length of the body a GET would get, where a HEAD answers without making that body.
    content_length: int | None = None
    # The body's strong validator: sent as ETag, and compared with If-None-Match.
    etag: str | None = None
    # A body too large to hold, made piece by piece as it is sent (then `body` is unused): no
    # Content-Length, so HTTP/1.1 sends it chunked. Closed once sent, or when the client leaves.
    stream: Iterable[bytes] | None = None
    # The whole header list, made once: a cached response is sent many times.
    header_list: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)
    # Its 304, made when first asked for, for the same reason.
    _not_modified: "Response | None" = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        headers = self.headers if self.etag is None else (("ETag", self.etag), *self.headers)
        if self.content_type is None:
            pass  # a response with no body (a 304): neither header
        elif self.stream is not None:
            headers = (("Content-Type", self.content_type), *headers)
        else:
            length = len(self.body) if self.content_length is None else self.content_length
            headers = (
                ("Content-Type", self.content_type),
                ("Content-Length", str(length)),
                *headers,
            )
        object.__setattr__(self, "header_list", headers)

    def body_iterable(self) -> Iterable[bytes]:
        """The body as a WSGI application returns it."""
        return [self.body] if self.stream is None else self.stream

    def not_modified(self) -> "Response":
        """The 304 for a client that holds this body already: the same headers, no body."""
        response = self._not_modified
        if response is None:
            # Two threads may both make it: they make the same one.
            response = Response(
                b"", "304 Not Modified", self.headers, content_type=None, etag=self.etag
            )
            object.__setattr__(self, "_not_modified", response)
        return response


class HTTPError(Exception):
    """An error that ends a request with a non-200 status and a short reason."""

    status = "500 Internal Server Error"

    def __init__(self, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.headers = headers

    def response(self, *, problem_json: bool = False) -> Response:
        """The response a client receives: the reason as a line of text, or (RFC 9457) JSON."""
        headers = (*self.headers, _VARY_ACCEPT)
        if not problem_json:
            return Response(f"{self.reason}\n".encode(), self.status, headers)
        code, _, title = self.status.partition(" ")
        problem = {
            "type": "about:blank",
            "title": title,
            "status": int(code),
            "detail": self.reason,
        }
        body = json.dumps(problem, separators=(",", ":")).encode()
        return Response(body, self.status, headers, PROBLEM_JSON)


class BadRequest(HTTPError):
    status = "400 Bad Request"


class Unauthorized(HTTPError):
    status = "401 Unauthorized"


class Forbidden(HTTPError):
    status = "403 Forbidden"


class NotFound(HTTPError):
    status = "404 Not Found"


class MethodNotAllowed(HTTPError):
    status = "405 Method Not Allowed"

    def __init__(self, allowed: tuple[str, ...]) -> None:
        super().__init__("method not allowed", (("Allow", ", ".join(allowed)),))
        self.allowed = allowed


class Conflict(HTTPError):
    status = "409 Conflict"


class PayloadTooLarge(HTTPError):
    status = "413 Payload Too Large"


class UnprocessableContent(HTTPError):
    status = "422 Unprocessable Content"


class TooManyRequests(HTTPError):
    status = "429 Too Many Requests"


class ServiceUnavailable(HTTPError):
    status = "503 Service Unavailable"


class InternalServerError(HTTPError):
    status = "500 Internal Server Error"
