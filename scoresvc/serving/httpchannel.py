"""waitress's HTTP channel: two kinds of request body refused with 400, one write per answer,
slow requests cut off, and a cap on each client address's connections."""

import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError, TransferEncodingNotImplemented
from waitress.server import BaseWSGIServer
from waitress.task import WSGITask

from scoresvc.settingvalues import Network
from scoresvc.web.clientaddress import parse_address


class RequestParser(HTTPRequestParser):
    """waitress's request parser; an unreadable or ambiguous body length is the client's error.

    It notes when its request began (its first byte came), for the header timeout.
    """

    def __init__(self, adj: Adjustments) -> None:
        super().__init__(adj)
        self.began = time.monotonic()

    def parse_header(self, header_plus: bytes) -> None:
        try:
            super().parse_header(header_plus)
        except TransferEncodingNotImplemented as error:
            # waitress answers 501, a server error, to any coding but chunked. A request whose
            # last coding is not chunked has no readable length, which RFC 9112 (6.3) answers
            # with 400; a score body never needs any other coding either.
            raise ParsingError(str(error)) from None
        if self.chunked and "CONTENT_LENGTH" in self.headers:
            # Both lengths: the mark of request smuggling (RFC 9112 6.1). waitress reads the
            # chunks and keeps the connection open for what follows; a proxy in front that
            # trusted Content-Length would see other requests there. Refused, and the
            # connection closed, as after every 400.
            raise ParsingError("both Transfer-Encoding and Content-Length given")


class OneWriteTask(WSGITask):
    """waitress's WSGI task, sending an answer given whole (as scoresvc gives all) in one write.

    It also keeps the connection open after a 304: waitress closes any HTTP/1.1 connection
    whose answer has no Content-Length, though a 304 ends at its headers (RFC 9112 6.3) and
    must not carry the length a body would have had. A client revalidating a list would
    otherwise pay for a new connection each time.
    """

    _ends_at_its_headers = False

    def build_response_header(self) -> bytes:
        # The task's request is the channel's parser (types-waitress says Error).
        request = cast(HTTPRequestParser, self.request)
        self._ends_at_its_headers = (
            not self.has_body
            and self.version == "1.1"
            and request.headers.get("CONNECTION", "").lower() != "close"
        )
        try:
            return super().build_response_header()
        finally:
            self._ends_at_its_headers = False

    def set_close_on_finish(self) -> None:
        if self._ends_at_its_headers and not self.close_on_finish:
            return  # asked for only because there is no length: a bodiless answer needs none
        super().set_close_on_finish()

    def write(self, data: bytes) -> None:
        # waitress hands the headers and then the body to the socket in two send() calls (its
        # send_bytes is 1): two system calls, two TCP segments, and on a busy server two hand-
        # overs of the GIL. When the first chunk is the whole body the Content-Length promises,
        # headers and body go out together. Anything else is waitress's own path.
        if (
            self.wrote_header
            or not data
            or not self.complete
            or not self.has_body
            or self.chunked_response
            or self.content_length != len(data)
        ):
            super().write(data)
            return
        self.wrote_header = True
        self.content_bytes_written = len(data)
        self.channel.write_soon(self.build_response_header() + data)


class Channel(HTTPChannel):
    """One client connection, parsed by RequestParser, counted by the guard that let it in."""

    parser_class = RequestParser
    task_class = OneWriteTask
    guard: "ConnectionGuard | None" = None
    silent = True  # nothing received yet: its first request is timed from the connection's start
    request: RequestParser | None  # made by parser_class

    def __init__(
        self,
        server: BaseWSGIServer,
        sock: socket.socket,
        addr: tuple[str, int],
        adj: Adjustments,
        map: Mapping[int, Any] | None = None,
    ) -> None:
        self.opened = time.monotonic()
        super().__init__(server, sock, addr, adj, map)

    def received(self, data: bytes) -> bool:
        self.silent = False
        return super().received(data)

    def request_began(self) -> float | None:
        """When the request being received began; None between requests and while answering."""
        if self.requests:
            return None  # answering: a request still to be read waits for that, not the client
        if self.request is not None:
            return self.request.began
        return self.opened if self.silent else None

    def del_channel(self, map: Mapping[int, Any] | None = None) -> None:
        super().del_channel(map)
        guard, self.guard = self.guard, None  # counted out once, though close() may come twice
        if guard is not None:
            guard.count_out(self.addr[0])


class ConnectionGuard:
    """What a waitress server lets a client hold: its connections, and time to send a request.

    A request not received whole (headers, and body) header_timeout seconds after it began is
    cut off, however steadily its bytes trickle in: waitress's own channel_timeout starts again
    at every byte. One client address holds at most connections_per_address connections; any
    further one is closed as soon as it is accepted. The uncapped networks (the trusted
    proxies: a balancer's connections all come from it) are counted but never refused.
    """

    def __init__(
        self,
        *,
        header_timeout: float,
        connections_per_address: int,
        uncapped: Iterable[Network] = (),
    ) -> None:
        self.header_timeout = header_timeout
        self.connections_per_address = connections_per_address
        self._uncapped = tuple(uncapped)
        self._open: dict[str, int] = {}  # client address: its open connections

    def open_channel(
        self,
        server: BaseWSGIServer,
        sock: socket.socket,
        addr: tuple[str, int],
        adj: Adjustments,
        map: Mapping[int, Any] | None = None,
    ) -> Channel | None:
        """A Channel for a connection waitress accepted, or None: closed, its address at its cap.

        A waitress server calls it as its channel_class; every call comes from its main loop.
        """
        host = addr[0]
        count = self._open.get(host, 0)
        if count >= self.connections_per_address and not self._is_uncapped(host):
            sock.close()
            return None
        self._open[host] = count + 1
        try:
            channel = Channel(server, sock, addr, adj, map)
        except BaseException:
            self.count_out(host)
            sock.close()
            raise
        channel.guard = self
        return channel

    def count_out(self, host: str) -> None:
        """Count one of host's connections as closed."""
        count = self._open.pop(host, 0) - 1
        if count > 0:
            self._open[host] = count

    def open_connections(self, host: str) -> int:
        """How many connections host holds open."""
        return self._open.get(host, 0)

    def cut_off_slow_requests(self, channels: Iterable[HTTPChannel]) -> None:
        """Close the channels whose request began more than header_timeout ago."""
        cutoff = time.monotonic() - self.header_timeout
        for channel in channels:
            began = channel.request_began() if isinstance(channel, Channel) else None
            if began is not None and began < cutoff:
                channel.will_close = True  # closed by the main loop's next pass

    def _is_uncapped(self, host: str) -> bool:
        # Asked only of an address at its cap: the common case parses nothing.
        address = parse_address(host)
        return address is not None and any(address in network for network in self._uncapped)


def use_channel(socket_map: Mapping[int, Any], guard: ConnectionGuard) -> None:
    """Make every listening server in a waitress socket map open its connections through guard
    as Channels, and cut off slow requests at each of its maintenance passes."""
    for dispatcher in socket_map.values():
        if isinstance(dispatcher, BaseWSGIServer):
            # waitress calls channel_class(server, sock, addr, adj, map=...) for each connection it
            # accepts; the guard answers for Channel, and closes the ones over an address's cap.
            # (Not a class, as types-waitress wants: waitress only calls it.)
            dispatcher.channel_class = guard.open_channel  # type: ignore[assignment]
            # This server's own maintenance, in place of its class's method.
            maintenance = _with_cutoff(dispatcher, guard)
            dispatcher.maintenance = maintenance  # type: ignore[method-assign, assignment]


def _with_cutoff(server: BaseWSGIServer, guard: ConnectionGuard) -> Callable[[float], None]:
    # waitress's maintenance, every cleanup_interval seconds in the main loop, closes the idle
    # connections; the cutoff of slow requests runs right after it, over the same channels.
    waitress_maintenance = server.maintenance

    def maintenance(now: float) -> None:
        # waitress passes time.time() (types-waitress says int).
        waitress_maintenance(now)  # type: ignore[arg-type]
        # A dict of channels by descriptor (types-waitress says one HTTPChannel).
        channels = cast(dict[int, HTTPChannel], server.active_channels)
        guard.cut_off_slow_requests(channels.values())

    return maintenance
