"""scoresvc's waitress channel: each answer whole and correct, and sent in one write when it can."""

import http.client
import threading
from collections.abc import Callable, Iterator

import pytest
import waitress

from scoresvc.serving.httpchannel import Channel
from tests.live import rawhttp


class RecordingChannel(Channel):
    """The channel, noting every piece of the answer it is handed to send."""

    writes: list[bytes]

    def write_soon(self, data):
        if data:
            type(self).writes.append(bytes(data))
        return super().write_soon(data)


def answering(body_chunks: list[bytes], headers: list[tuple[str, str]], *, as_list=True):
    """A WSGI app answering every request 200 with these headers and body chunks.

    As a list, waitress knows how many chunks there are; otherwise they come from a generator.
    """

    def app(environ, start_response):
        start_response("200 OK", list(headers))
        return list(body_chunks) if as_list else (chunk for chunk in body_chunks)

    return app


@pytest.fixture
def serve() -> Iterator[Callable[[Callable], int]]:
    """serve(app) runs app under waitress with the recording channel; it gives the port."""
    servers = []

    def start(app: Callable) -> int:
        socket_map: dict = {}
        server = waitress.create_server(app, map=socket_map, host="127.0.0.1", port=0, threads=1)
        server.channel_class = RecordingChannel
        RecordingChannel.writes = []
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, socket_map, thread))
        return server.effective_port

    yield start
    for server, socket_map, thread in servers:
        server.task_dispatcher.shutdown()
        for dispatcher in list(socket_map.values()):
            dispatcher.close()
        thread.join(5)


def get(port: int, method: str = "GET") -> tuple[http.client.HTTPResponse, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request(method, "/")
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response, body


def test_an_answer_with_its_length_goes_out_in_one_write(serve):
    port = serve(answering([b"4711=1500"], [("Content-Length", "9")]))

    response, body = get(port)

    assert (response.status, body) == (200, b"4711=1500")
    assert len(RecordingChannel.writes) == 1
    head, _, sent_body = RecordingChannel.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 9" in head
    assert sent_body == b"4711=1500"


def test_a_body_in_several_chunks_is_sent_whole(serve):
    port = serve(answering([b"4711=", b"1500"], [("Content-Length", "9")]))

    response, body = get(port)

    assert (response.status, body) == (200, b"4711=1500")


def test_a_body_longer_than_its_length_is_cut_to_it(serve):
    port = serve(answering([b"4711=1500,131=1220"], [("Content-Length", "9")]))

    with rawhttp.connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = rawhttp.read_response(sock)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        second = rawhttp.read_response(sock)

    assert (first.status, first.body) == (200, b"4711=1500")
    assert (second.status, second.body) == (200, b"4711=1500")  # nothing spilled between them


def test_a_body_without_a_length_is_sent_chunked(serve):
    port = serve(answering([b"4711=1500"], [], as_list=False))

    response, body = get(port)

    assert (response.status, response.getheader("Transfer-Encoding"), body) == (
        200,
        "chunked",
        b"4711=1500",
    )
