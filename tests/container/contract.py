"""Requests the contract refuses, with the status each gets: one table for every deployment."""

import pytest

# (method, path, body, status): a malformed number, a forged and a missing key, a body larger than
# any score, an unknown path, a known path under the wrong method.
BAD_REQUESTS = [
    pytest.param("GET", "/4711x/login", None, 400, id="bad-number"),
    pytest.param("POST", "/2/score?sessionkey=" + "A" * 80, b"10", 401, id="forged-key"),
    pytest.param("POST", "/2/score", b"10", 401, id="no-key"),
    pytest.param("POST", "/2/score?sessionkey=x", b"1" * 5000, 413, id="huge-body"),
    pytest.param("GET", "/1/2/login", None, 404, id="unknown-path"),
    pytest.param("POST", "/1/login", None, 405, id="wrong-method"),
]
