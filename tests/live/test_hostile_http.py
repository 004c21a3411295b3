"""Hostile HTTP against real waitress: oversized, slow, long, duplicated, mis-encoded, malformed."""

import re
import threading
import time
from collections.abc import Iterator
from contextlib import suppress

import pytest

from tests.live.rawhttp import connect, exchange, parse, read_response, read_until_closed
from tests.live.server import LiveServer

LEVEL = 7  # every hostile request aims at this level; none may leave a score on it
KEY = b"{key}"  # replaced by a valid session key of user 1 when the request is sent
CLOSE = b"Host: scores\r\nConnection: close\r\n"


def request(line: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    """A request with Host and Connection: close, a Content-Length if there is a body."""
    length = b"Content-Length: %d\r\n" % len(body) if body else b""
    return line + b"\r\n" + CLOSE + b"".join(h + b"\r\n" for h in headers) + length + b"\r\n" + body


def post(target: bytes, *headers: bytes, body: bytes = b"1000") -> bytes:
    return request(b"POST " + target + b" HTTP/1.1", *headers, body=body)


def get(target: bytes, *headers: bytes) -> bytes:
    return request(b"GET " + target + b" HTTP/1.1", *headers)


SCORE = b"/7/score?sessionkey=" + KEY

HOSTILE = {
    # Bodies over the limit: waitress refuses over 1 KiB unread, the app anything over 64 bytes.
    "a Content-Length of 100 GB": (post(SCORE, b"Content-Length: 100000000000", body=b""), 413),
    "a 1000-byte score body": (post(SCORE, body=b"1" * 1000), 413),
    "a 65-byte score body": (post(SCORE, body=b"0" * 64 + b"5"), 413),
    "a chunked body of 64 KiB": (
        post(SCORE, b"Transfer-Encoding: chunked", body=b"")[:-2]
        + b"\r\n"
        + b"10000\r\n"
        + b"1" * 0x10000
        + b"\r\n0\r\n\r\n",
        413,
    ),
    # Very long paths and query strings.
    "a 100 KB number in the path": (get(b"/" + b"1" * 100_000 + b"/highscorelist"), 400),
    "a 300 KB path (over waitress's header limit)": (get(b"/" + b"1" * 300_000 + b"/login"), 431),
    "a 200 KB query string without a key": (post(b"/7/score?" + b"a=b&" * 50_000), 401),
    "a 100 KB session key": (post(b"/7/score?sessionkey=" + b"A" * 100_000), 401),
    "20,000 headers (over waitress's header limit)": (
        post(SCORE, *[b"X-Padding: x"] * 20_000, body=b"x"),
        431,
    ),
    # Duplicate session keys are refused, whichever copy is valid.
    "the same key twice": (post(SCORE + b"&sessionkey=" + KEY), 401),
    "a valid key then garbage": (post(SCORE + b"&sessionkey=garbage"), 401),
    "garbage then a valid key": (post(b"/7/score?sessionkey=garbage&sessionkey=" + KEY), 401),
    "a valid key then an empty one": (post(SCORE + b"&sessionkey="), 401),
    "a second key under a percent-encoded name": (post(SCORE + b"&sessionke%79=" + KEY), 401),
    "a second key behind a semicolon": (post(SCORE + b";sessionkey=" + KEY), 401),
    # Percent-encoded and non-UTF-8 bytes.
    "a percent-encoded 0xFF as the level": (post(b"/%FF/score?sessionkey=" + KEY), 400),
    "a raw 0xFF byte in the path": (post(b"/7\xff/score?sessionkey=" + KEY), 400),
    "a percent-encoded NUL after the level": (post(b"/7%00/score?sessionkey=" + KEY), 400),
    "a fullwidth digit five as the level": (post(b"/%EF%BC%95/score?sessionkey=" + KEY), 400),
    "a key with percent-encoded 0xFF bytes": (post(b"/7/score?sessionkey=%FF%FE"), 401),
    "a valid key with a NUL appended": (post(SCORE + b"%00"), 401),
    "a raw 0xFF byte in the query": (post(SCORE + b"\xff"), 400),
    "a non-UTF-8 score body": (post(SCORE, body=b"\xff\xfe"), 400),
    "an Arabic-Indic digit as the score": (post(SCORE, body="\u0663".encode()), 400),
    "a NUL after the score": (post(SCORE, body=b"5\x00"), 400),
    # Dot segments reach no file and no other route.
    "a leading .. segment": (post(b"/../7/score?sessionkey=" + KEY), 404),
    "a .. segment between level and call": (post(b"/7/../7/score?sessionkey=" + KEY), 404),
    "percent-encoded .. segments": (post(b"/%2e%2e/7/score?sessionkey=" + KEY), 404),
    "a path up to /etc/passwd": (get(b"/../../../../etc/passwd"), 404),
    "a path from the document up to setup.cfg": (get(b"/openapi.yaml/../../setup.cfg"), 404),
    "a trailing .. segment": (get(b"/7/highscorelist/.."), 404),
    "a . segment": (post(b"/./7/score?sessionkey=" + KEY), 404),
    # Malformed request lines and headers.
    "a request line of one word": (b"GARBAGE\r\n\r\n", 400),
    "a method without a target": (b"GET\r\n\r\n", 400),
    "binary bytes for a request line": (b"\x00\x01\x02\xff\xfe\r\n\r\n", 400),
    "a lower-case method": (request(b"post " + SCORE + b" HTTP/1.1", body=b"1000"), 400),
    "a space inside the target": (request(b"POST /7 /score?sessionkey=" + KEY + b" HTTP/1.1"), 400),
    "a header without a colon": (post(SCORE, b"X-Broken header"), 400),
    "a Content-Length that is not a number": (post(SCORE, b"Content-Length: 4x", body=b""), 400),
    "a negative Content-Length": (post(SCORE, b"Content-Length: -4", body=b""), 400),
    "two different Content-Lengths": (post(SCORE, b"Content-Length: 2", body=b"1000"), 400),
    "a chunk size that is not hex": (
        post(SCORE, b"Transfer-Encoding: chunked", body=b"")[:-2] + b"\r\nzz\r\n5\r\n0\r\n\r\n",
        400,
    ),
    "an unknown transfer coding": (post(SCORE, b"Transfer-Encoding: gzip", body=b""), 400),
    "chunked not as the last transfer coding": (
        post(SCORE, b"Transfer-Encoding: chunked, identity", body=b""),
        400,
    ),
    "a made-up method": (request(b"FROB " + SCORE + b" HTTP/1.1", body=b"1000"), 405),
    "a 10 KB method": (request(b"P" * 10_000 + b" " + SCORE + b" HTTP/1.1", body=b"1000"), 405),
    "TRACE": (request(b"TRACE " + SCORE + b" HTTP/1.1"), 405),
    "CONNECT to another port": (request(b"CONNECT 127.0.0.1:22 HTTP/1.1"), 404),
    "OPTIONS *": (request(b"OPTIONS * HTTP/1.1"), 404),
    "a target without a leading slash": (post(b"7/score?sessionkey=" + KEY), 404),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("hostile") / "server.log").start()
    yield server
    server.kill()


def login(server: LiveServer, user_id: int = 1) -> str:
    status, key = server.request("GET", f"/{user_id}/login")
    assert status == 200
    return key


def assert_nothing_recorded_and_no_server_error(server: LiveServer) -> None:
    assert server.request("GET", f"/{LEVEL}/highscorelist") == (200, "")
    log = server.log_text()
    assert not re.search(r" 5\d\d \d", log), "a 5xx in the access log"
    assert "Traceback" not in log
    assert server.process.poll() is None


@pytest.mark.parametrize(("raw", "expected"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_request_is_refused_with_a_4xx_and_records_nothing(server, raw, expected):
    raw = raw.replace(KEY, login(server).encode())
    started = time.monotonic()
    responses = parse(exchange(server.port, raw, timeout=5))
    assert [response.status for response in responses] == [expected]
    assert time.monotonic() - started < 3  # answered, not left to a time-out
    assert_nothing_recorded_and_no_server_error(server)


def test_a_huge_body_is_refused_before_the_client_has_sent_it(server):
    with connect(server.port) as sock:
        sock.sendall(
            post(
                SCORE.replace(KEY, login(server).encode()), b"Content-Length: 10000000000", body=b""
            )
        )
        with suppress(BrokenPipeError, ConnectionResetError):  # refused already: fine
            sock.sendall(b"1" * 4096)  # the first few KiB of ten gigabytes
        response = read_response(sock, timeout=3)
        assert response.status == 413
        assert read_until_closed(sock, timeout=3) == b""  # and the server hangs up
    assert_nothing_recorded_and_no_server_error(server)


def test_a_client_trickling_its_request_does_not_hold_up_other_clients(server):
    key = login(server).encode()
    trickled = post(b"/8/score?sessionkey=" + key, body=b"1234")
    slow_clients = [connect(server.port, timeout=10) for _ in range(20)]
    latencies: list[float] = []
    stop = threading.Event()

    def trickle() -> None:
        # One byte per client every 20 ms: about 1.5 s for the whole request.
        for byte in range(len(trickled)):
            if stop.is_set():
                return
            for sock in slow_clients:
                sock.sendall(trickled[byte : byte + 1])
            time.sleep(0.02)

    trickler = threading.Thread(target=trickle)
    trickler.start()
    try:
        while trickler.is_alive() and len(latencies) < 500:
            started = time.monotonic()
            assert server.request("GET", "/8/highscorelist")[0] == 200
            latencies.append(time.monotonic() - started)
        trickler.join(timeout=10)
        answers = [read_response(sock, timeout=5).status for sock in slow_clients]
    finally:
        stop.set()
        trickler.join(timeout=10)
        for sock in slow_clients:
            sock.close()
    assert len(latencies) >= 20
    assert max(latencies) < 0.5
    assert answers == [200] * 20  # the slow requests are served once complete
    assert server.request("GET", "/8/highscorelist") == (200, "1=1234")


def test_idle_half_open_connections_do_not_hold_up_other_clients(server):
    idle = [connect(server.port, timeout=10) for _ in range(50)]
    try:
        for sock in idle:
            sock.sendall(b"POST /9/score?sessionkey=")  # and never another byte
        started = time.monotonic()
        for user_id in range(20):
            assert server.request("GET", f"/{user_id}/login")[0] == 200
        assert time.monotonic() - started < 2
    finally:
        for sock in idle:
            sock.close()
    assert_nothing_recorded_and_no_server_error(server)


def test_a_request_with_both_transfer_encoding_and_content_length_is_refused_and_hung_up_on(
    server,
):
    # RFC 9112 6.1: a sign of request smuggling; whatever the server does with it, it must
    # close the connection after. Nothing pipelined behind it may be answered.
    smuggled = get(b"/1/login").replace(b"Connection: close\r\n", b"")
    raw = (
        post(SCORE, b"Transfer-Encoding: chunked", b"Content-Length: 4", body=b"")[:-2]
        .replace(b"Connection: close\r\n", b"")
        .replace(KEY, login(server).encode())
        + b"\r\n1\r\n5\r\n0\r\n\r\n"
        + smuggled
    )
    assert [response.status for response in parse(exchange(server.port, raw, timeout=3))] == [400]
    assert_nothing_recorded_and_no_server_error(server)
