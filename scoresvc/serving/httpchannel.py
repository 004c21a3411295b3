"""waitress's HTTP channel: two kinds of request body refused with 400, one write per answer."""

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError, TransferEncodingNotImplemented
from waitress.server import BaseWSGIServer
from waitress.task import WSGITask


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


class OneWriteTask(WSGITask):
    """waitress's WSGI task, sending an answer given whole (as scoresvc gives all) in one write.

    It also keeps the connection open after a 304: waitress closes any HTTP/1.1 connection
    whose answer has no Content-Length, though a 304 ends at its headers (RFC 9112 6.3) and
    must not carry the length a body would have had. A client revalidating a list would
    otherwise pay for a new connection each time.
    """

    _ends_at_its_headers = False

    def build_response_header(self) -> bytes:
        self._ends_at_its_headers = (
            not self.has_body
            and self.version == "1.1"
            and self.request.headers.get("CONNECTION", "").lower() != "close"
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
    """One client connection, parsed by RequestParser."""

    parser_class = RequestParser
    task_class = OneWriteTask


def use_channel(socket_map: dict) -> None:
    """Make every listening server in a waitress socket map use Channel for new connections."""
    for dispatcher in socket_map.values():
        if isinstance(dispatcher, BaseWSGIServer):
            dispatcher.channel_class = Channel
