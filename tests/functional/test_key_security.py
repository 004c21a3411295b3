"""Session keys through the app: from `secrets`, 128 bits and more, compared in constant time."""

import base64
import hashlib
import hmac
import io
import logging
import struct
from urllib.parse import quote_from_bytes

import pytest

from scoresvc import sessions


def call(app, method: str, path: str, query: str = "", body: bytes = b"") -> tuple[str, bytes]:
    """One request straight into the WSGI app (no lint, for speed): status line and body."""
    statuses = []
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    answer = b"".join(app(environ, lambda status, headers: statuses.append(status)))
    return statuses[0], answer


@pytest.fixture(params=[False, True], ids=["signed-keys", "stored-keys"])
def app(request, make_client):
    return make_client(store_tokens=request.param).app


def test_signed_keys_carry_a_128_bit_nonce_from_secrets(make_client, monkeypatch):
    nonce = bytes(range(16))
    monkeypatch.setattr(sessions.secrets, "token_bytes", lambda size: nonce[:size])
    key = make_client().get("/4711/login", status=200).text
    raw = base64.urlsafe_b64decode(key)
    assert raw[12:28] == nonce  # after the user id (4 bytes) and the expiry (8)
    assert len(raw) == 4 + 8 + 16 + 32  # and an HMAC-SHA256 over all of it


def test_stored_keys_are_256_bits_from_secrets(make_client, monkeypatch):
    requested = []

    def token_urlsafe(size):
        requested.append(size)
        return "k" * 43

    monkeypatch.setattr(sessions.secrets, "token_urlsafe", token_urlsafe)
    assert make_client(store_tokens=True).get("/4711/login", status=200).text == "k" * 43
    assert requested == [32]


def test_signatures_are_compared_in_constant_time(make_client, monkeypatch):
    compared = []
    real_compare_digest = hmac.compare_digest

    def compare_digest(a, b):
        compared.append((len(a), len(b)))
        return real_compare_digest(a, b)

    monkeypatch.setattr(sessions.hmac, "compare_digest", compare_digest)
    client = make_client()
    key = client.get("/1/login", status=200).text
    client.post(f"/1/score?sessionkey={key}", "5", status=200)
    forged = key[:-2] + ("AA" if key[-2:] != "AA" else "BB")
    client.post(f"/1/score?sessionkey={forged}", "6", status=401)
    assert compared == [(32, 32), (32, 32)]


def test_every_single_byte_mutation_of_a_valid_key_is_refused(app, monkeypatch):
    # Twenty thousand requests: an access log set up by an earlier test would triple the time.
    monkeypatch.setattr(logging.getLogger("scoresvc.access"), "disabled", True)
    status, key = call(app, "GET", "/4711/login")
    assert status == "200 OK"
    assert call(app, "POST", "/3/score", f"sessionkey={key.decode()}", b"1") == ("200 OK", b"")
    refused = 0
    for position in range(len(key)):
        for value in range(256):
            if value == key[position]:
                continue
            mutated = key[:position] + bytes([value]) + key[position + 1 :]
            query = "sessionkey=" + quote_from_bytes(mutated, safe="")
            status, _ = call(app, "POST", "/3/score", query, b"2")
            assert status == "401 Unauthorized", mutated
            refused += 1
    assert refused == len(key) * 255
    assert call(app, "GET", "/3/highscorelist") == ("200 OK", b"4711=1")


def key_made_with(secret: str, user_id: int, expires_at: float) -> str:
    """A signed key made with the service's secret, as anyone who holds it can, any expiry."""
    payload = struct.pack(">IQ16s", user_id, int(expires_at * 1000), bytes(16))
    mac = hmac.digest(secret.encode(), payload, hashlib.sha256)
    return base64.urlsafe_b64encode(payload + mac).decode("ascii")


def test_a_key_made_with_the_secret_for_11_days_is_refused_with_a_600_s_ttl(make_client, clock):
    secret = "a configured secret of 40 characters!!!!"
    client = make_client(secret=secret, session_ttl=600)
    far = key_made_with(secret, 7, clock() + 11 * 86400)
    refused = client.post(f"/1/score?sessionkey={far}", "5", status=401)
    assert "longer than the session TTL" in refused.text
    near = key_made_with(secret, 7, clock() + 600 + 5)  # a clock 5 s ahead of ours made it
    client.post(f"/1/score?sessionkey={near}", "5", status=200)
    assert client.get("/1/highscorelist").text == "7=5"
