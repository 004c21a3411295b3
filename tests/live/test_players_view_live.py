"""The players' view through real waitress: 304s without a length, JSON, HEAD login."""

import json

from tests.live import rawhttp


def test_a_304_has_no_length_and_a_client_reads_on_past_it(start_server):
    server = start_server()
    key = server.request("GET", "/4711/login")[1]
    assert server.request("POST", f"/2/score?sessionkey={key}", "1500") == (200, "")
    connection = server.connection()
    connection.request("GET", "/2/highscorelist")
    ok = connection.getresponse()
    assert (ok.status, ok.read()) == (200, b"4711=1500")
    etag = ok.headers["ETag"]
    assert ok.headers["Cache-Control"] == "no-cache"
    assert ok.headers["Vary"] == "Accept"
    for method in ["GET", "HEAD"]:
        connection.request(method, "/2/highscorelist", headers={"If-None-Match": f"W/{etag}"})
        not_modified = connection.getresponse()
        assert (not_modified.status, not_modified.read()) == (304, b"")
        assert not_modified.headers["ETag"] == etag
        for absent in ["Content-Length", "Content-Type", "Transfer-Encoding"]:
            assert absent not in not_modified.headers
    # The client reads on: nothing was left unread behind the 304s.
    connection.request("GET", "/2/rank/4711", headers={"Accept": "application/json"})
    rank = connection.getresponse()
    assert rank.status == 200
    assert rank.headers["Content-Type"] == "application/json"
    assert json.loads(rank.read()) == {
        "level": 2, "user": 4711, "rank": 1, "score": 1500, "players": 1,
    }  # fmt: skip
    connection.close()


def test_head_of_login_leaves_a_stored_key_valid(start_server):
    server = start_server("--store-tokens")
    key = server.request("GET", "/4711/login")[1]
    connection = server.connection()
    connection.request("HEAD", "/4711/login")
    head = connection.getresponse()
    assert (head.status, head.read()) == (200, b"")
    assert head.headers["Content-Length"] == "43"
    connection.request("GET", "/nowhere", headers={"Accept": "application/json"})
    missing = connection.getresponse()
    assert missing.status == 404
    assert missing.headers["Content-Type"] == "application/problem+json"
    assert json.loads(missing.read())["status"] == 404
    connection.close()
    assert server.request("POST", f"/2/score?sessionkey={key}", "10") == (200, "")


def test_a_304_keeps_the_connection_open(start_server):
    # waitress alone closes the connection after any answer without a Content-Length, which
    # a 304 must not have: each revalidation would cost the client a new connection.
    server = start_server()
    with rawhttp.connect(server.port) as sock:
        sock.sendall(b"GET /2/highscorelist HTTP/1.1\r\nHost: x\r\n\r\n")
        etag = rawhttp.read_response(sock).headers["etag"]
        for _ in range(3):
            sock.sendall(
                b"GET /2/highscorelist HTTP/1.1\r\nHost: x\r\n"
                + f"If-None-Match: {etag}\r\n\r\n".encode()
            )
            not_modified = rawhttp.read_response(sock)
            assert not_modified.status == 304
            assert "connection" not in not_modified.headers
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert rawhttp.read_response(sock)[::2] == (200, b"ok")


def test_a_304_asked_for_with_connection_close_closes_it(start_server):
    server = start_server()
    etag = server.connection()
    etag.request("GET", "/2/highscorelist")
    tag = etag.getresponse().headers["ETag"]
    raw = rawhttp.exchange(
        server.port,
        b"GET /2/highscorelist HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"If-None-Match: {tag}\r\n\r\n".encode(),
    )
    (not_modified,) = rawhttp.parse(raw)
    assert (not_modified.status, not_modified.headers["connection"]) == (304, "close")
