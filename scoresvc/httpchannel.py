"""waitress's HTTP channel, refusing with 400 two kinds of request body it would mishandle."""

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError, TransferEncodingNotImplemented
from waitress.server import BaseWSGIServer


class RequestParser(HTTPRequestParser):
    """waitress's request parser; an unreadable or ambiguous body length is the client's error."""

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


class Channel(HTTPChannel):
    """One client connection, parsed by RequestParser."""

    parser_class = RequestParser


def use_channel(socket_map: dict) -> None:
    """Make every listening server in a waitress socket map use Channel for new connections."""
    for dispatcher in socket_map.values():
        if isinstance(dispatcher, BaseWSGIServer):
            dispatcher.channel_class = Channel
