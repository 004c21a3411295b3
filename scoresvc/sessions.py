"""Session keys: signed (stateless, the default) or stored (newest key per user only)."""

import base64
import hashlib
import hmac
import os
import re
import secrets
import struct
import threading
import time
from collections.abc import Callable
from typing import Protocol

from scoresvc.errors import InvalidSessionKey
from scoresvc.storage.repository import Repository

DEFAULT_TTL_SECONDS = 600.0
SECRET_SETTING = "session_secret"
# A key made by a server whose clock runs this much ahead of ours is still taken. One whose
# expiry lies further ahead was not made under our TTL (made with a stolen secret, or before
# a shorter TTL was set): refused, so that no key outlives the TTL now configured.
CLOCK_SKEW_SECONDS = 5.0

# user id (4 bytes), expiry in ms (8), random nonce (16), HMAC-SHA256 (32): 60 bytes, which
# base64 writes as exactly 80 characters with no padding, so each key has one spelling only.
_SIGNED_PAYLOAD = struct.Struct(">IQ16s")
_MAC_SIZE = 32
SIGNED_KEY_LENGTH = 80
# 32 random bytes (secrets.token_urlsafe(32)), which base64 writes as 43 characters.
_STORED_KEY_BYTES = 32
STORED_KEY_LENGTH = 43
_SIGNED_KEY = re.compile(rf"[A-Za-z0-9_-]{{{SIGNED_KEY_LENGTH}}}\Z")
_STORED_KEY = re.compile(rf"[A-Za-z0-9_-]{{{STORED_KEY_LENGTH}}}\Z")


class SessionKeys(Protocol):
    """Issues session keys for users and tells whose a key is."""

    key_length: int  # every key issued has this many characters

    def issue(self, user_id: int) -> str: ...

    def verify(self, key: str) -> int: ...


def _now_ms(clock: Callable[[], float]) -> int:
    return int(clock() * 1000)


_forks = 0  # counts forks into this process: a pool filled before one is not used after it


def _count_fork() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_count_fork)


class _Nonces:
    """128-bit nonces from `secrets`, drawn 4 KiB at a time: one system call per 256 keys.

    Each draw from the operating system releases the GIL, and on a busy server handing it
    around costs more than the rest of a login. Each thread has a pool of its own, so no login
    waits on a lock another holds (a contended lock hands the GIL around too). A forked child
    draws afresh rather than hand out its parent's nonces.
    """

    _SIZE = 16
    _DRAW = 4096

    def __init__(self) -> None:
        self._local = threading.local()

    def take(self) -> bytes:
        """Sixteen random bytes nobody else gets."""
        local = self._local
        pool = getattr(local, "pool", b"")
        taken = getattr(local, "taken", 0)
        if taken + self._SIZE > len(pool) or local.forks != _forks:
            pool = local.pool = secrets.token_bytes(self._DRAW)
            taken, local.forks = 0, _forks
        local.taken = taken + self._SIZE
        return pool[taken : taken + self._SIZE]


class SignedSessionKeys:
    """Keys that carry their user and expiry under an HMAC: nothing is stored per login."""

    key_length = SIGNED_KEY_LENGTH

    def __init__(
        self,
        secret: bytes,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the session secret must be at least 16 bytes")
        # Keyed once; each MAC starts from a copy. hmac.digest() would be the one-call way, but
        # it releases the GIL around even a 28-byte message, which a busy server pays for in
        # thread switches; an HMAC object's update() and digest() keep it below 2 KiB.
        self._keyed_mac = hmac.new(secret, digestmod=hashlib.sha256)
        self._ttl_ms = int(ttl_seconds * 1000)
        self._longest_ms = self._ttl_ms + int(CLOCK_SKEW_SECONDS * 1000)
        self._clock = clock
        self._nonces = _Nonces()

    def issue(self, user_id: int) -> str:
        """A new key for user_id, valid for the configured lifetime from now."""
        expires_at_ms = _now_ms(self._clock) + self._ttl_ms
        payload = _SIGNED_PAYLOAD.pack(user_id, expires_at_ms, self._nonces.take())
        return base64.urlsafe_b64encode(payload + self._mac(payload)).decode("ascii")

    def verify(self, key: str) -> int:
        """The key's user id; InvalidSessionKey if forged, expired, or valid beyond the TTL."""
        if not _SIGNED_KEY.match(key):
            raise InvalidSessionKey("malformed session key")
        raw = base64.urlsafe_b64decode(key)
        payload, mac = raw[:-_MAC_SIZE], raw[-_MAC_SIZE:]
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidSessionKey("invalid session key")
        user_id: int
        user_id, expires_at_ms, _nonce = _SIGNED_PAYLOAD.unpack(payload)
        left_ms = expires_at_ms - _now_ms(self._clock)
        if left_ms <= 0:
            raise InvalidSessionKey("session key expired")
        if left_ms > self._longest_ms:
            raise InvalidSessionKey("session key valid for longer than the session TTL")
        return user_id

    def _mac(self, payload: bytes) -> bytes:
        mac = self._keyed_mac.copy()
        mac.update(payload)
        return mac.digest()


class StoredSessionKeys:
    """Random keys kept (as hashes) in the database; a user's new login ends the old key."""

    key_length = STORED_KEY_LENGTH

    def __init__(
        self,
        repository: Repository,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._repository = repository
        self._ttl_ms = int(ttl_seconds * 1000)
        self._clock = clock

    def issue(self, user_id: int) -> str:
        """A new key for user_id; the user's previous stored key stops working at once."""
        key = secrets.token_urlsafe(_STORED_KEY_BYTES)
        now_ms = _now_ms(self._clock)
        # now_ms: the repository deletes keys expired by then, a few at a time, now and then.
        self._repository.store_session_key(
            user_id, _hash_key(key), now_ms + self._ttl_ms, now_ms=now_ms
        )
        return key

    def verify(self, key: str) -> int:
        """The user id of a stored key that is still the user's newest and not expired."""
        if not _STORED_KEY.match(key):
            raise InvalidSessionKey("malformed session key")
        stored = self._repository.find_session_key(_hash_key(key))
        if stored is None:
            raise InvalidSessionKey("unknown or replaced session key")
        if _now_ms(self._clock) >= stored.expires_at_ms:
            raise InvalidSessionKey("session key expired")
        return stored.user_id


def _hash_key(key: str) -> str:
    # A plain hash is enough: keys are 256 random bits, beyond any guessing or dictionary.
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def new_secret() -> str:
    """A fresh random secret for signing keys, as text that fits a settings row."""
    return secrets.token_urlsafe(32)


def signing_secret(configured: str | None, repository: Repository) -> bytes:
    """The configured secret, or the one kept in the database (made on first start)."""
    if configured:
        return configured.encode("utf-8")
    return repository.setting(SECRET_SETTING, default=new_secret).encode("ascii")
