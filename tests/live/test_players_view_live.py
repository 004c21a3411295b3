"""The players' view through real waitress: 304s without a length, JSON, HEAD login."""

import json


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
    # The client reads on: nothing was left unread behind the 304s. (waitress 3.0 ends the
    # connection after any 304: it keeps one open only after a Content-Length, which it
    # leaves out of every 304.)
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
