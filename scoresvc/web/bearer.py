"""Bearer tokens: the admin API's and the trusted writer's, compared in constant time."""

import hashlib
import hmac
from wsgiref.types import WSGIEnvironment

from scoresvc.web.responses import Unauthorized


class BearerToken:
    """A token a request must carry as `Authorization: Bearer <token>`, or be refused (401)."""

    def __init__(self, token: str, *, realm: str, name: str) -> None:
        # Digests are compared, not the texts: compare_digest's time then says nothing about
        # the token's length either.
        self._digest = hashlib.sha256(token.encode("ascii")).digest()
        self._challenge = (("WWW-Authenticate", f'Bearer realm="{realm}"'),)
        self._name = name

    def check(self, environ: WSGIEnvironment) -> None:
        """Return if the request carries `Authorization: Bearer <the token>`, else 401."""
        header = environ.get("HTTP_AUTHORIZATION")
        if not header:
            raise Unauthorized(
                f"{self._name} missing: send Authorization: Bearer <token>", self._challenge
            )
        scheme, _, credentials = header.strip().partition(" ")
        # WSGI gives header bytes as latin-1 text: encoded back, they are the bytes sent.
        given = hashlib.sha256(credentials.strip().encode("latin-1")).digest()
        if not hmac.compare_digest(given, self._digest) or scheme.lower() != "bearer":
            raise Unauthorized(f"wrong {self._name}", self._challenge)
