"""The contract as every deployment is held to it: one player's calls, and the requests refused."""

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


def check_a_player_logs_in_posts_and_reads_the_list(client) -> None:
    """Log in, post a best and a lower score, and find only the best in the list."""
    key = client.login(4711)
    assert client.post_score(2, key, 1500) == 200
    assert client.post_score(2, key, 1200) == 200
    assert client.highscorelist(2) == "4711=1500"


def check_a_bad_request_gets_its_status(client, method, path, body, status) -> None:
    """One of BAD_REQUESTS gets its status and a short reason, never a trace."""
    answer_status, text = client.request(method, path, body)
    assert answer_status == status
    assert text and "Traceback" not in text
