"""Settings: read from SCORESVC_* environment variables, once, into a frozen dataclass."""

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

from scoresvc.limits import DEFAULT_POST_LIMIT, NO_LIMIT, RateLimit, rate_limit
from scoresvc.storage.database import SYNCHRONOUS_LEVELS
from scoresvc.web.clientaddress import Network, trusted_networks

ENV_PREFIX = "SCORESVC_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# The admin API's bearer token: long enough that guessing is hopeless, in characters that an
# Authorization header carries as they are (visible ASCII, no spaces).
ADMIN_TOKEN_MIN_LENGTH = 32
_ADMIN_TOKEN = re.compile(r"[\x21-\x7e]+\Z")


class SettingsError(ValueError):
    """A setting with a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    """Everything that can be configured, with its default."""

    database_url: str = "sqlite://"
    session_ttl: float = 600.0
    store_tokens: bool = False
    secret: str | None = None
    sqlite_synchronous: str = "NORMAL"
    host: str = "localhost"
    port: int = 8080
    threads: int = 4
    logfile: str | None = None
    workers: int = 1
    # The admin API and console are on only with a token; never shown in a repr or a log.
    admin_token: str | None = dataclasses.field(default=None, repr=False)
    metrics: bool = True
    # Score posts per user, and logins per client address (off: behind a proxy or a carrier's
    # NAT, one address is thousands of players). A text such as "5/20" is parsed.
    post_limit: RateLimit = DEFAULT_POST_LIMIT
    login_limit: RateLimit = NO_LIMIT
    # Peers whose X-Forwarded-For names the client; a text such as "10.0.0.0/8, ::1" is parsed.
    trusted_proxies: tuple[Network, ...] = ()

    def __post_init__(self) -> None:
        for name, parse in _PARSED_FROM_TEXT.items():
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    object.__setattr__(self, name, parse(value))
                except ValueError as error:
                    raise SettingsError(f"{name}: {error}") from None
        if not (math.isfinite(self.session_ttl) and self.session_ttl > 0):
            raise SettingsError("session_ttl must be a positive number of seconds")
        if self.secret is not None and len(self.secret.encode("utf-8")) < 16:
            raise SettingsError("the secret must be at least 16 bytes long")
        if self.sqlite_synchronous.upper() not in SYNCHRONOUS_LEVELS:
            raise SettingsError(
                f"sqlite_synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)}"
            )
        if not 0 <= self.port <= 65535:
            raise SettingsError("port must be from 0 to 65535")
        if self.threads < 1:
            raise SettingsError("threads must be at least 1")
        if self.workers < 1:
            raise SettingsError("workers must be at least 1")
        if self.admin_token is not None:
            _check_admin_token(self.admin_token)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Settings from SCORESVC_<NAME> variables; keyword overrides (flags) win."""
        environ = os.environ if environ is None else environ
        values = {}
        for field in fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper(), "")
            if raw.strip():  # set but empty counts as unset, as compose files often pass it
                values[field.name] = _parse(field.name, field.type, raw)
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)


def _check_admin_token(token: str) -> None:
    if len(token) < ADMIN_TOKEN_MIN_LENGTH:
        raise SettingsError(
            f"SCORESVC_ADMIN_TOKEN is {len(token)} characters long: the admin token must have "
            f"at least {ADMIN_TOKEN_MIN_LENGTH} (for example: python3 -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'), or leave it unset to keep the admin API off"
        )
    if not _ADMIN_TOKEN.match(token):
        raise SettingsError(
            "SCORESVC_ADMIN_TOKEN must be visible ASCII characters only (no spaces), as an "
            "Authorization: Bearer header carries it"
        )


def worker_count(raw: str) -> int:
    """A number of worker processes: a whole number, or `auto` for one per CPU."""
    if raw.strip().lower() == "auto":
        # Resolved when read, so that Settings holds the number itself: the supervisor, its log
        # and `-h` all see the count that will run, and nothing downstream knows about `auto`.
        return os.cpu_count() or 1
    return int(raw)


# Settings whose variable takes more than its type's spelling: the parser, and what it reads.
_SPECIAL: dict[str, tuple[Callable[[str], object], str]] = {
    "workers": (worker_count, "number of workers (a whole number, or auto)"),
}
# Settings read from text whose parser says what is wrong with it; Settings() takes the text
# too.
_PARSED_FROM_TEXT = {
    "post_limit": rate_limit,
    "login_limit": rate_limit,
    "trusted_proxies": trusted_networks,
}


def _parse(name: str, kind: object, raw: str) -> object:
    variable = ENV_PREFIX + name.upper()
    if name in _PARSED_FROM_TEXT:
        try:
            return _PARSED_FROM_TEXT[name](raw)
        except ValueError as error:
            raise SettingsError(f"{variable}: {error}") from None
    if name in _SPECIAL:
        parse, what = _SPECIAL[name]
        try:
            return parse(raw)
        except ValueError:
            raise SettingsError(f"{variable}={raw!r} is not a valid {what}") from None
    try:
        if kind in (bool, "bool"):
            lowered = raw.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(raw)
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
    except ValueError:
        raise SettingsError(f"{variable}={raw!r} is not a valid {name.replace('_', ' ')}") from None
    return raw
