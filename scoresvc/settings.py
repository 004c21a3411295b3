"""Settings: each declared once, as a field of Settings, and read into a frozen dataclass.

A field's declaration (setting()) gives its default, its command-line flags, how its text is read,
its help, and how its value is shown; the environment's reading (Settings.from_env), the
command line's options (scoresvc.serving.cli) and docs/configuration.md's table
(scoresvc.settingsdoc) are all made from it, so that none of them can miss a setting or tell it
differently.
"""

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, cast

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from scoresvc.settingvalues import (
    DEFAULT_POST_LIMIT,
    NO_LIMIT,
    QUERY_TIMEOUT_SECONDS,
    SYNCHRONOUS_LEVELS,
    Network,
    RateLimit,
    is_memory_url,
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


def _plain(text: str) -> str:
    return text


def _shown_value(value: Any, code: Callable[[str], str]) -> str:
    """A value as help and docs show it (code marks what is to be typed as it is)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return code(f"{value:g}")
    if isinstance(value, tuple):
        return code(", ".join(map(str, value))) if value else "none"
    return code(str(value))


@dataclass(frozen=True)
class Setting:
    """One setting's declaration: its flags, how its text is read, its help, how it is shown.

    The name and default are its Settings field's (see setting()); the variable is the name's.
    """

    # What it is for, as `scoresvc -h` and docs/configuration.md say it: `backticks` mark code,
    # which the docs show as code and the command line as plain text.
    help: str
    # The command-line spellings, the first long one named in errors; none: the variable only.
    flags: tuple[str, ...] = ()
    metavar: str | None = None
    # Reads the setting's text; ValueError if it is not one.
    parse: Callable[[str], Any] = str
    # Text that does not parse is "not a valid <noun>" (by default the name's words), unless
    # the parser's own error says what is wrong (says_why): then that is told as it is, and
    # Settings() takes the text too.
    noun: str | None = None
    says_why: bool = False
    # The value as help and docs show it: shown(value, code), code marking literal text.
    shown: Callable[[Any, Callable[[str], str]], str] = _shown_value
    name: str = ""
    default: Any = None

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def option(self) -> str | None:
        """The flag named in errors about the text given by flag."""
        return next((flag for flag in self.flags if flag.startswith("--")), None)

    def read(self, raw: str, source: str | None = None) -> Any:
        """The value of raw, the setting's text; source (its variable by default) names it in
        the SettingsError raised for text that is not one."""
        source = source or self.variable
        try:
            return self.parse(raw)
        except ValueError as error:
            if self.says_why:
                raise SettingsError(f"{source}: {error}") from None
            noun = self.noun or self.name.replace("_", " ")
            raise SettingsError(f"{source}={raw!r} is not a valid {noun}") from None

    def shown_default(self, code: Callable[[str], str] = _plain) -> str:
        return self.shown(self.default, code)


def setting(default: Any, help: str, *, repr: bool = True, **declared: Any) -> Any:
    """A Settings field: default, and the rest of its Setting (declared)."""
    return dataclasses.field(
        default=default, repr=repr, metadata={"setting": Setting(help, **declared)}
    )


def on_or_off(raw: str) -> bool:
    """1, true, yes or on; 0, false, no or off (in any case)."""
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(raw)


def worker_count(raw: str) -> int:
    """A number of worker processes: a whole number, or `auto` for one per CPU."""
    if raw.strip().lower() == "auto":
        # Resolved when read, so that Settings holds the number itself: the supervisor, its log
        # and `-h` all see the count that will run, and nothing downstream knows about `auto`.
        return os.cpu_count() or 1
    return int(raw)


def _shown_database(url: str, code: Callable[[str], str]) -> str:
    return f"{code(url)}, in memory" if is_memory_url(url) else code(shown_url(url))


def _shown_store_tokens(on: bool, code: Callable[[str], str]) -> str:
    return "on" if on else "off: signed keys"


def _shown_limit(limit: RateLimit, code: Callable[[str], str]) -> str:
    return code(str(limit)) if limit.enabled else f"{code('0')}, no limit"


def _kept_secret(unset: str) -> Callable[[str | None, Callable[[str], str]], str]:
    """How a secret is shown: what unset means, or that it is set; never the secret."""
    return lambda value, code: f"none: {unset}" if value is None else "set"


@dataclass(frozen=True)
class Settings:
    """Everything that can be configured: one setting() each, in the order `-h` lists them."""

    # May hold a password: a repr, a log line or an error shows it as *** (shown_url).
    database_url: str = setting(
        "sqlite://",
        "SQLAlchemy URL of the database, e.g. `sqlite:////var/lib/scoresvc/scores.db`",
        flags=("--database",),
        metavar="URL",
        shown=_shown_database,
    )
    session_ttl: float = setting(
        600.0,
        "how long a session key is valid, 1 s to 7 days",
        flags=("--session-ttl",),
        metavar="SECONDS",
        parse=float,
    )
    store_tokens: bool = setting(
        False,
        "keep session keys in the database, only each user's newest one valid",
        flags=("--store-tokens", "--store_tokens"),
        parse=on_or_off,
        shown=_shown_store_tokens,
    )
    # Signs every session key: never shown in a repr or a log, as the tokens below.
    secret: str | None = setting(
        None,
        "the secret that signs session keys, 16 bytes or more",
        repr=False,
        shown=_kept_secret("one is made on the first start and kept in the database"),
    )
    sqlite_synchronous: str = setting(
        "NORMAL",
        "SQLite's `synchronous` for a database file: `OFF`, `NORMAL`, `FULL` (an fsync per "
        "commit, so that not even a power loss loses a score answered 200) or `EXTRA`",
    )
    host: str = setting("localhost", "interface to listen on", flags=("--host",))
    port: int = setting(8080, "TCP port, 0 for any free one", flags=("-p", "--port"), parse=int)
    threads: int = setting(4, "worker threads", flags=("--threads",), parse=int)
    logfile: str | None = setting(None, "also log to this file", flags=("--logfile",))
    workers: int = setting(
        1,
        "worker processes on the one port, `--threads` threads each; `auto`: one per CPU",
        flags=("--workers", "--max-proc", "--max_proc"),  # --max_proc: the original server's
        metavar="N",
        parse=worker_count,
        noun="number of workers (a whole number, or auto)",
    )
    # The admin API and console are on only with a token; never shown in a repr or a log.
    admin_token: str | None = setting(
        None,
        "the admin API's and console's bearer token, 32 characters or more",
        repr=False,
        shown=_kept_secret("the admin API and console are off"),
    )
    metrics: bool = setting(
        True,
        "`GET /metrics` and the counting behind it; off: a 404, and nothing counted",
        parse=on_or_off,
    )
    # Score posts per user, and logins per client address (off: behind a proxy or a carrier's
    # NAT, one address is thousands of players).
    post_limit: RateLimit = setting(  # noqa: RUF009 (setting() is a dataclasses.field())
        DEFAULT_POST_LIMIT,
        "score posts per user and client address: RATE a second, BURST at once; over it, "
        "429; `0`: no limit",
        flags=("--post-limit",),
        metavar="RATE/BURST",
        parse=rate_limit,
        says_why=True,
        shown=_shown_limit,
    )
    login_limit: RateLimit = setting(  # noqa: RUF009
        NO_LIMIT,
        "logins per client address, e.g. `10/50` for a service exposed directly; `0`: no limit",
        flags=("--login-limit",),
        metavar="RATE/BURST",
        parse=rate_limit,
        says_why=True,
        shown=_shown_limit,
    )
    trusted_proxies: tuple[Network, ...] = setting(
        (),
        "addresses or CIDR networks, separated by commas, of the proxies whose "
        "X-Forwarded-For names the client",
        flags=("--trusted-proxies",),
        metavar="LIST",
        parse=trusted_networks,
        says_why=True,
    )
    # Slow clients: a request not received whole this long after it began is cut off, and one
    # client address holds at most this many connections (trusted proxies excepted).
    header_timeout: float = setting(
        10.0,
        "a request not received whole (headers and body) this long after it began is cut "
        "off, however slowly its bytes keep coming",
        flags=("--header-timeout",),
        metavar="SECONDS",
        parse=float,
    )
    connections_per_address: int = setting(
        100,
        "open connections one client address may hold; further ones are closed at once "
        "(the trusted proxies are not capped)",
        flags=("--connections-per-address",),
        metavar="N",
        parse=int,
    )
    query_timeout: float = setting(
        QUERY_TIMEOUT_SECONDS,
        "the longest a player's request may hold the database; past it, 503; `0`: no bound",
        flags=("--query-timeout",),
        metavar="SECONDS",
        parse=float,
    )
    # Never shown in a repr or a log.
    writer_token: str | None = setting(
        None,
        "the game server's bearer token for posts on a player's behalf (`user=`), 32 "
        "characters or more",
        repr=False,
        shown=_kept_secret("trusted writes are off"),
    )

    def __post_init__(self) -> None:
        for declared in SETTINGS:
            value = getattr(self, declared.name)
            if declared.says_why and isinstance(value, str):
                try:
                    object.__setattr__(self, declared.name, declared.parse(value))
                except ValueError as error:
                    raise SettingsError(f"{declared.name}: {error}") from None
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
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Settings from SCORESVC_<NAME> variables; keyword overrides (flags) win."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for declared in SETTINGS:
            raw = environ.get(declared.variable, "")
            if raw.strip():  # set but empty counts as unset, as compose files often pass it
                values[declared.name] = declared.read(raw)
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
    return shown_url(cast(str, value)) if name == "database_url" else value


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
    port: int | str | None
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


# The table: every setting's declaration, in Settings' order, with its name and default.
SETTINGS: tuple[Setting, ...] = tuple(
    dataclasses.replace(field.metadata["setting"], name=field.name, default=field.default)
    for field in fields(Settings)
)
_BY_NAME = {declared.name: declared for declared in SETTINGS}


def parse_setting(name: str, raw: str, source: str | None = None) -> object:
    """The value of setting name from its text; source (its variable by default) names it in
    the SettingsError raised for text that is not one."""
    return _BY_NAME[name].read(raw, source)
