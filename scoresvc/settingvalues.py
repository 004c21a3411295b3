"""The kinds of value settings take, each read from text: settings, storage and web share them.

They live here, below every layer, so that reading settings loads neither the web nor the
storage layer, and those layers take their defaults and types from where settings do.
"""

import ipaddress
import math
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy.engine import URL, make_url

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# SQLite's values of PRAGMA synchronous, weakest first.
SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
# The longest a player's request may hold the database by default: a read or score post takes
# well under a millisecond, so only a query gone wrong comes near it.
QUERY_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class RateLimit:
    """A token bucket's shape: `per_second` tokens a second, up to `burst`; 0 is no limit."""

    per_second: float
    burst: int

    @property
    def enabled(self) -> bool:
        return self.burst > 0

    @cached_property
    def interval(self) -> float:
        """Seconds for one token to come back."""
        return 1.0 / self.per_second

    @cached_property
    def horizon(self) -> float:
        """Seconds for an empty bucket to fill."""
        return self.burst / self.per_second

    def __str__(self) -> str:
        return f"{self.per_second:g}/{self.burst}" if self.enabled else "0"


NO_LIMIT = RateLimit(0.0, 0)
# Far above what an honest game sends: a burst of 20, then one post every 200 ms.
DEFAULT_POST_LIMIT = RateLimit(5.0, 20)


def rate_limit(text: str) -> RateLimit:
    """RATE/BURST ('5/20': 5 a second, 20 at once; RATE may be a fraction), or 0 for none."""
    text = text.strip()
    if text == "0":
        return NO_LIMIT
    rate, slash, burst = (part.strip() for part in text.partition("/"))
    if slash and _is_decimal(rate) and burst.isascii() and burst.isdigit():
        per_second, burst_count = float(rate), int(burst)
        if 0 < per_second < math.inf and burst_count >= 1:
            return RateLimit(per_second, burst_count)
    raise ValueError(
        f"{text!r} is not a limit: give RATE/BURST, a positive number of tokens a second and "
        "a whole number of at least 1 (e.g. 5/20), or 0 for no limit"
    )


def _is_decimal(text: str) -> bool:
    # ASCII digits with at most one point: float() would take '1e3', 'inf' and '٣' too.
    return text.isascii() and text.replace(".", "", 1).isdigit()


def trusted_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR networks ('10.0.0.0/8, ::1'); ValueError if not."""
    networks = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is neither an IP address nor a CIDR network") from None
    return tuple(networks)


def is_memory_url(url: str | URL) -> bool:
    """True for the SQLite URLs that mean 'a database in memory'."""
    url = make_url(url)
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")
