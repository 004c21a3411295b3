"""scoresvc's waitress channel: each answer whole and correct, and sent in one write when it can;
its guard caps each address's connections and cuts slow requests off."""

import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import waitress

from scoresvc.serving.httpchannel import Channel, ConnectionGuard, use_channel
from scoresvc.settingvalues import trusted_networks
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


# The guard: connections per client address, and the header timeout.

HEADER_TIMEOUT = 1.0
# waitress's maintenance, where the timeout is checked, runs once a second, and its loop wakes
# at least once a second: a slow request is cut off at most about two seconds late.
CHECK_LATENESS = 2.5
REQUEST = b"GET /1/login HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def guarded() -> Iterator[Callable[..., tuple[int, ConnectionGuard]]]:
    """guarded(**guard options) serves an app answering 'ok' through a ConnectionGuard."""
    servers = []

    def start(**options) -> tuple[int, ConnectionGuard]:
        options = {"header_timeout": HEADER_TIMEOUT, "connections_per_address": 2, **options}
        socket_map: dict = {}
        server = waitress.create_server(
            answering([b"ok"], [("Content-Length", "2")]),
            map=socket_map,
            host="127.0.0.1",
            port=0,
            threads=1,
            cleanup_interval=1,
        )
        guard = ConnectionGuard(**options)
        use_channel(socket_map, guard)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, socket_map, thread))
        return server.effective_port, guard

    yield start
    for server, socket_map, thread in servers:
        server.task_dispatcher.shutdown()
        for dispatcher in list(socket_map.values()):
            dispatcher.close()
        thread.join(5)


def connect_from(address: str, port: int) -> socket.socket:
    """A connection to the server from address (any of 127.0.0.0/8 is this machine)."""
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(address, 0))


def is_served(sock: socket.socket) -> bool:
    try:
        sock.sendall(REQUEST)
        return rawhttp.read_response(sock, timeout=3).body == b"ok"
    except OSError:
        return False


def seconds_until_closed(sock: socket.socket, timeout: float) -> float | None:
    """How long until the server closed sock (reading what it sends), or None if it did not."""
    start = time.monotonic()
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.01)


def test_an_address_at_its_cap_has_a_further_connection_closed_at_once(guarded):
    port, guard = guarded(connections_per_address=2)
    first, second = connect_from("127.0.0.1", port), connect_from("127.0.0.1", port)
    assert is_served(first) and is_served(second)

    with connect_from("127.0.0.1", port) as third:
        assert seconds_until_closed(third, timeout=1) is not None
    with connect_from("127.0.0.2", port) as elsewhere:
        assert is_served(elsewhere)  # another address is not held to this one's count
    assert guard.open_connections("127.0.0.1") == 2

    first.close()  # a place is free again once the server has seen a connection close
    wait_until(lambda: guard.open_connections("127.0.0.1") == 1)
    with connect_from("127.0.0.1", port) as again:
        assert is_served(again)
    second.close()
    wait_until(lambda: guard.open_connections("127.0.0.1") == 0)


def test_the_uncapped_networks_are_not_held_to_the_cap(guarded):
    port, guard = guarded(connections_per_address=1, uncapped=trusted_networks("127.0.0.3/32"))
    proxy = [connect_from("127.0.0.3", port) for _ in range(3)]
    assert all(is_served(sock) for sock in proxy)
    assert guard.open_connections("127.0.0.3") == 3
    with connect_from("127.0.0.1", port) as one, connect_from("127.0.0.1", port) as two:
        assert is_served(one)
        assert seconds_until_closed(two, timeout=1) is not None
    for sock in proxy:
        sock.close()


def trickle(sock: socket.socket, data: bytes, every: float, stop: threading.Event) -> None:
    """Send data a byte at a time, one every `every` seconds, until stop or an error."""
    for byte in data:
        if stop.wait(every):
            return
        try:
            sock.send(bytes([byte]))
        except OSError:
            return


@pytest.mark.parametrize(
    "data",
    [
        REQUEST,  # headers that never end in time
        b"POST /1/score HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n4711=1500",  # a body
    ],
    ids=["headers", "body"],
)
def test_a_request_trickling_in_is_cut_off_its_timeout_after_it_began(guarded, data):
    port, guard = guarded(header_timeout=HEADER_TIMEOUT)
    stop = threading.Event()
    with connect_from("127.0.0.1", port) as slow:
        # The headers of the body's case arrive at once: only its body then trickles.
        head, _, body = data.partition(b"\r\n\r\n")
        slow.sendall(head + b"\r\n\r\n" if body else data[:1])
        sender = threading.Thread(
            target=trickle, args=(slow, body or data[1:], 0.2, stop), daemon=True
        )
        sender.start()
        try:
            closed_after = seconds_until_closed(slow, timeout=HEADER_TIMEOUT + CHECK_LATENESS)
        finally:
            stop.set()
            sender.join()
    assert closed_after is not None, "still open, though a byte came every 0.2 s"
    assert closed_after >= HEADER_TIMEOUT - 0.1
    wait_until(lambda: guard.open_connections("127.0.0.1") == 0)


def test_a_connection_that_sends_nothing_is_cut_off_its_timeout_after_it_opened(guarded):
    port, _guard = guarded(header_timeout=HEADER_TIMEOUT)
    with connect_from("127.0.0.1", port) as silent:
        closed_after = seconds_until_closed(silent, timeout=HEADER_TIMEOUT + CHECK_LATENESS)
    assert closed_after is not None and closed_after >= HEADER_TIMEOUT - 0.1


def test_a_kept_alive_connection_waits_between_requests_without_the_timeout(guarded):
    port, _guard = guarded(header_timeout=HEADER_TIMEOUT)
    with connect_from("127.0.0.1", port) as kept:
        assert is_served(kept)
        time.sleep(HEADER_TIMEOUT + CHECK_LATENESS)  # idle: waitress's channel_timeout's case
        assert is_served(kept)
        assert is_served(kept)
