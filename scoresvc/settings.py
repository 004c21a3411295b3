"""Settings: read from SCORESVC_* environment variables, once, into a frozen dataclass."""

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from scoresvc.settingvalues import (
    DEFAULT_POST_LIMIT,
    NO_LIMIT,
    QUERY_TIMEOUT_SECONDS,
    SYNCHRONOUS_LEVELS,
    Network,
    RateLimit,
    rate_limit,
    trusted_networks,
)

ENV_PREFIX = "SCORESVC_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# The admin API's and the trusted writer's bearer tokens: long enough that guessing is
# hopeless, in characters that an Authorization header carries as they are (visible ASCII, no
# spaces).
TOKEN_MIN_LENGTH = 32
_TOKEN = re.compile(r"[\x21-\x7e]+\Z")
# A player's read or post takes well under a millisecond; an hour is no bound at all.
MAX_QUERY_TIMEOUT_SECONDS = 3600.0
# A session key lives at least a second (less and a client could not use its key) and at most a
# week: a stolen key must not stay good for months, and the expiry must stay a time the clock
# and the key's format can hold (1e17 s started and then answered every login with 500).
MIN_SESSION_TTL_SECONDS = 1.0
MAX_SESSION_TTL_SECONDS = 7 * 24 * 3600.0
# A request's headers and body take well under a second on any network a game runs on; the
# timeout is checked once a second, so less than one second would be a promise not kept.
MIN_HEADER_TIMEOUT_SECONDS = 1.0
MAX_HEADER_TIMEOUT_SECONDS = 3600.0
# SQLAlchemy's pattern of a URL (sqlalchemy.engine.url._parse_url), to name a port it cannot read.
_URL = re.compile(
    r"[\w+]+://(?:[^:/]*(?::[^@]*)?@)?(?:(?:\[[^/?]+\]|[^/:?]+)?(?::(?P<port>[^/?]*))?)?"
)
# The password of a URL that does not parse, so that not even the error about it shows it:
# after the scheme if there is one, else from the start.
_URL_PASSWORD = re.compile(r"(://[^:/@]*:).*@")
_URL_PASSWORD_WITHOUT_SCHEME = re.compile(r"^([^:/@]*:).*@")


class SettingsError(ValueError):
    """A setting with a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    """Everything that can be configured, with its default."""

    # May hold a password: a repr, a log line or an error shows it as *** (shown_url).
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
    # Slow clients: a request not received whole this long after it began is cut off, and one
    # client address holds at most this many connections (trusted proxies excepted).
    header_timeout: float = 10.0
    connections_per_address: int = 100
    # The longest a player's request may hold the database; past it, 503 (0: no bound).
    query_timeout: float = QUERY_TIMEOUT_SECONDS
    # The game server's bearer token for posts on a player's behalf (user=); unset: off. Never
    # shown in a repr or a log.
    writer_token: str | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name, parse in _PARSED_FROM_TEXT.items():
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    object.__setattr__(self, name, parse(value))
                except ValueError as error:
                    raise SettingsError(f"{name}: {error}") from None
        _check_database_url(self.database_url)
        if not MIN_SESSION_TTL_SECONDS <= self.session_ttl <= MAX_SESSION_TTL_SECONDS:
            raise SettingsError(
                f"session_ttl must be from {MIN_SESSION_TTL_SECONDS:g} to "
                f"{MAX_SESSION_TTL_SECONDS:g} seconds (7 days), not {self.session_ttl:g}"
            )
        if not MIN_HEADER_TIMEOUT_SECONDS <= self.header_timeout <= MAX_HEADER_TIMEOUT_SECONDS:
            raise SettingsError(
                f"header_timeout must be from {MIN_HEADER_TIMEOUT_SECONDS:g} to "
                f"{MAX_HEADER_TIMEOUT_SECONDS:g} seconds, not {self.header_timeout:g}"
            )
        if self.connections_per_address < 1:
            raise SettingsError("connections_per_address must be at least 1")
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
        if not 0 <= self.query_timeout <= MAX_QUERY_TIMEOUT_SECONDS:
            raise SettingsError(
                f"query_timeout must be from 0 (no bound) to {MAX_QUERY_TIMEOUT_SECONDS:g} "
                f"seconds, not {self.query_timeout:g}"
            )
        if self.admin_token is not None:
            _check_token(self.admin_token, "SCORESVC_ADMIN_TOKEN", "the admin API")
        if self.writer_token is not None:
            _check_token(self.writer_token, "SCORESVC_WRITER_TOKEN", "trusted writes")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Settings from SCORESVC_<NAME> variables; keyword overrides (flags) win."""
        environ = os.environ if environ is None else environ
        values = {}
        for field in fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper(), "")
            if raw.strip():  # set but empty counts as unset, as compose files often pass it
                values[field.name] = parse_setting(field.name, raw)
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)

    def __repr__(self) -> str:
        shown = (
            f"{field.name}={_shown(field.name, getattr(self, field.name))!r}"
            for field in fields(self)
            if field.repr
        )
        return f"{type(self).__name__}({', '.join(shown)})"


def _shown(name: str, value: object) -> object:
    return shown_url(value) if name == "database_url" else value


def shown_url(url: str) -> str:
    """A database URL as it may be shown (help, logs, errors): its password replaced by ***."""
    try:
        parsed = make_url(url)
    except (ValueError, ArgumentError):
        hidden = _URL_PASSWORD.sub(r"\1***@", url)
        return hidden if hidden != url else _URL_PASSWORD_WITHOUT_SCHEME.sub(r"\1***@", url)
    if parsed.host and "@" in parsed.host:
        # A password with an unencoded @: SQLAlchemy takes its end for part of the host.
        parsed = parsed.set(host=parsed.host.rpartition("@")[2])
    return parsed.render_as_string(hide_password=True)


def _check_database_url(url: str) -> None:
    # SQLAlchemy's own errors say "invalid literal for int()" of a port that is not a number,
    # and nothing at all of one out of range; whether the database is there is for opening it.
    example = "postgresql+psycopg://user:password@host:5432/dbname or sqlite:////path/scores.db"
    unreadable = SettingsError(
        f"the database URL {shown_url(url)} is not one SQLAlchemy can read: write it as {example}"
    )
    try:
        port = make_url(url).port
    except ArgumentError:
        raise unreadable from None
    except ValueError:  # it read the URL, and then failed to read the port as a number
        match = _URL.match(url)
        if match is None or match.group("port") is None:
            raise unreadable from None
        port = match.group("port")
    if port is not None and not _is_port(str(port)):
        raise SettingsError(
            f"the database URL {shown_url(url)} has the port {port!r}: a port is a number from "
            f"1 to 65535 (for example {example})"
        )


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and 1 <= int(text) <= 65535


def _check_token(token: str, variable: str, what: str) -> None:
    if len(token) < TOKEN_MIN_LENGTH:
        kind = "admin token" if variable == "SCORESVC_ADMIN_TOKEN" else "writer token"
        raise SettingsError(
            f"{variable} is {len(token)} characters long: the {kind} must have "
            f"at least {TOKEN_MIN_LENGTH} (for example: python3 -c 'import secrets; "
            f"print(secrets.token_urlsafe(32))'), or leave it unset to keep {what} off"
        )
    if not _TOKEN.match(token):
        raise SettingsError(
            f"{variable} must be visible ASCII characters only (no spaces), as an "
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


def parse_setting(name: str, raw: str, source: str | None = None) -> object:
    """The value of setting name from its text; source (its variable by default) names it in
    the SettingsError raised for text that is not one."""
    source = source or ENV_PREFIX + name.upper()
    if name in _PARSED_FROM_TEXT:
        try:
            return _PARSED_FROM_TEXT[name](raw)
        except ValueError as error:
            raise SettingsError(f"{source}: {error}") from None
    if name in _SPECIAL:
        parse, what = _SPECIAL[name]
        try:
            return parse(raw)
        except ValueError:
            raise SettingsError(f"{source}={raw!r} is not a valid {what}") from None
    kind = _FIELD_TYPES[name]
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
        raise SettingsError(f"{source}={raw!r} is not a valid {name.replace('_', ' ')}") from None
    return raw


_FIELD_TYPES = {field.name: field.type for field in fields(Settings)}
