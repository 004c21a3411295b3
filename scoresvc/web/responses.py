"""HTTP responses and the HTTP errors that views raise."""

from dataclasses import dataclass

PLAIN_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Response:
    """A finished response: status line, body bytes and any headers beyond the usual two."""

    body: bytes = b""
    status: str = "200 OK"
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = PLAIN_TEXT


class HTTPError(Exception):
    """An error that ends a request with a non-200 status and a short plain-text reason."""

    status = "500 Internal Server Error"

    def __init__(self, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.headers = headers

    def response(self) -> Response:
        """The plain-text response a client receives for this error."""
        return Response(f"{self.reason}\n".encode(), self.status, self.headers)


class BadRequest(HTTPError):
    status = "400 Bad Request"


class Unauthorized(HTTPError):
    status = "401 Unauthorized"


class NotFound(HTTPError):
    status = "404 Not Found"


class MethodNotAllowed(HTTPError):
    status = "405 Method Not Allowed"

    def __init__(self, allowed: tuple[str, ...]) -> None:
        super().__init__("method not allowed", (("Allow", ", ".join(allowed)),))
        self.allowed = allowed


class PayloadTooLarge(HTTPError):
    status = "413 Payload Too Large"


class ServiceUnavailable(HTTPError):
    status = "503 Service Unavailable"


class InternalServerError(HTTPError):
    status = "500 Internal Server Error"
