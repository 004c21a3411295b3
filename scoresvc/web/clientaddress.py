"""The client's address: the peer's, or X-Forwarded-For's where the peer is a trusted proxy."""

import ipaddress
from collections.abc import Iterable
from wsgiref.types import WSGIEnvironment

# The trusted proxies are a setting (trusted_proxies): their type and text are the settings'.
from scoresvc.settingvalues import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN = "-"
# Hops of X-Forwarded-For read from the right, at most: a chain of proxies is a few long, and
# a header of thousands of trusted-looking entries must not cost thousands of parses.
MAX_HOPS = 16
# Peers and hops kept parsed, each with whether it is trusted: behind a proxy, a client's every
# request names it again. Emptied when full; a text not kept costs a few µs to parse again.
_KEPT_ADDRESSES = 4096
# Longer texts are never addresses (see parse_address): parsed each time, never kept.
_LONGEST_ADDRESS = 64
# Where of() leaves its answer in a request's environ, for the request's next question (the
# limits ask, then the access log): (the ClientAddresses, REMOTE_ADDR, X-Forwarded-For, client).
_ANSWERED = "scoresvc.client_address"


class ClientAddresses:
    """Tells the client's address from a request's REMOTE_ADDR and X-Forwarded-For.

    X-Forwarded-For is read only when the peer is a trusted proxy, from the right: each proxy
    appends the address it was reached from, so the right-most entry that is not itself a
    trusted proxy is the client; what stands left of it, the client wrote and may have forged.
    An entry there that is not an address (a malformed header) ends the walk at the last
    trusted hop, which then counts as the client. Every address given out is normalized
    (`::ffff:1.2.3.4` is `1.2.3.4`), so that one client is one key for the login limit.
    """

    def __init__(self, trusted: Iterable[Network] = ()) -> None:
        self.trusted = tuple(trusted)
        # Address text: its normalized form (None: not an address) and whether it is trusted.
        self._parsed: dict[str, tuple[str | None, bool]] = {}

    def of(self, environ: WSGIEnvironment) -> str:
        """The client's address as text, or '-' where the server gave no peer address."""
        peer = environ.get("REMOTE_ADDR") or UNKNOWN
        if not self.trusted:
            return peer  # nobody is trusted: the common case, decided without parsing
        forwarded = environ.get("HTTP_X_FORWARDED_FOR")
        if not forwarded:
            return peer
        answered = environ.get(_ANSWERED)
        if (
            answered is not None
            and answered[0] is self
            and answered[1] == peer
            and answered[2] == forwarded
        ):
            client: str = answered[3]
            return client
        client = self._client(peer, forwarded)
        environ[_ANSWERED] = (self, peer, forwarded, client)
        return client

    def _client(self, peer: str, forwarded: str) -> str:
        if not self._parse(peer)[1]:
            return peer
        client = peer
        rest = forwarded
        for _ in range(MAX_HOPS):
            if not rest:
                break
            rest, _, hop = rest.rpartition(",")
            hop = hop.strip()
            if not hop:
                continue  # an empty element says nothing
            address, trusted = self._parse(hop)
            if address is None:
                break  # not an address: the last trusted hop is as far as we can see
            client = address
            if not trusted:
                break
        return client

    def _parse(self, text: str) -> tuple[str | None, bool]:
        # text as an address (normalized), and whether a trusted proxy has it.
        parsed = self._parsed.get(text)
        if parsed is None:
            address = parse_address(text)
            if address is None:
                parsed = (None, False)
            else:
                parsed = (str(address), any(address in network for network in self.trusted))
            if len(text) <= _LONGEST_ADDRESS:
                if len(self._parsed) >= _KEPT_ADDRESSES:
                    self._parsed.clear()  # (threads may race here: at worst, one more clear)
                self._parsed[text] = parsed
        return parsed


def parse_address(text: str) -> Address | None:
    """An IP address from a header or REMOTE_ADDR, normalized; None if text is not one.

    Takes `1.2.3.4`, `2001:db8::1`, and the forms with a port some proxies write
    (`1.2.3.4:5678`, `[2001:db8::1]:5678`, `[2001:db8::1]`).
    """
    if len(text) > 64 or "%" in text:  # too long for an address and port; a zone: not one
        return None
    if text.startswith("["):
        text, bracket, port = text[1:].partition("]")
        if not bracket or (port and not (port[0] == ":" and _is_port(port[1:]))):
            return None
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not _is_port(port):
            return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 5 and int(text) <= 65535
