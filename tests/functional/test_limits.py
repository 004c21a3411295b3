"""Rate limits over the WSGI app on a fake clock: 429 after the burst, nothing recorded, the
client's address from X-Forwarded-For only through trusted proxies, and the access log."""

import logging

import pytest

from scoresvc.serving import cli
from tests.functional.conftest import login, post_score

PROXY = {"REMOTE_ADDR": "10.0.0.2"}


def login_from(client, user_id: int, peer: str, forwarded: str | None = None, status: int = 200):
    environ = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        environ["HTTP_X_FORWARDED_FOR"] = forwarded
    return client.get(f"/{user_id}/login", extra_environ=environ, status=status)


# --- score posts per user --------------------------------------------------------------------


def test_posts_over_the_burst_are_429_until_time_passes(make_client, clock):
    client = make_client(post_limit="1/3")
    key = login(client, 4711)
    for score in ("10", "20", "30"):
        post_score(client, 1, key, score)
    refused = post_score(client, 1, key, "40", status=429)
    assert refused.headers["Retry-After"] == "1"
    assert refused.text.startswith("too many score posts")
    clock.advance(0.5)
    assert post_score(client, 1, key, "40", status=429).headers["Retry-After"] == "1"
    clock.advance(0.5)
    post_score(client, 1, key, "40")
    post_score(client, 1, key, "50", status=429)
    clock.advance(3)  # the whole burst is back
    for score in ("60", "70", "80"):
        post_score(client, 1, key, score)
    post_score(client, 1, key, "90", status=429)
    assert client.get("/1/highscorelist").text == "4711=80"


def test_a_refused_post_records_nothing(make_client):
    client = make_client(post_limit="1/1")
    key = login(client, 7)
    post_score(client, 2, key, "10")
    post_score(client, 2, key, "2147483647", status=429)
    post_score(client, 3, key, "5", status=429)  # the limit is the user's, on every level
    assert client.get("/2/highscorelist").text == "7=10"
    assert client.get("/3/highscorelist").text == ""
    client.get("/3/rank/7", status=404)


def test_retry_after_is_whole_seconds_rounded_up(make_client):
    client = make_client(post_limit="0.4/1")
    key = login(client, 7)
    post_score(client, 2, key, "10")
    assert post_score(client, 2, key, "11", status=429).headers["Retry-After"] == "3"


def test_the_default_limit_is_a_burst_of_20_then_5_a_second(make_client, clock):
    client = make_client()
    key = login(client, 7)
    for score in range(20):
        post_score(client, 2, key, str(score))
    post_score(client, 2, key, "20", status=429)
    clock.advance(0.2)
    post_score(client, 2, key, "20")
    post_score(client, 2, key, "21", status=429)


def test_each_user_has_a_bucket_of_their_own(make_client):
    client = make_client(post_limit="1/2")
    first, second = login(client, 1), login(client, 2)
    post_score(client, 5, first, "1")
    post_score(client, 5, first, "2")
    post_score(client, 5, first, "3", status=429)
    post_score(client, 5, second, "1")
    post_score(client, 5, second, "2")


def test_a_key_issued_later_shares_the_users_bucket(make_client):
    client = make_client(post_limit="1/2")
    post_score(client, 5, login(client, 1), "1")
    post_score(client, 5, login(client, 1), "2")
    post_score(client, 5, login(client, 1), "3", status=429)


def test_a_post_limit_of_zero_limits_nothing(make_client):
    client = make_client(post_limit="0")
    key = login(client, 7)
    for score in range(200):
        post_score(client, 2, key, str(score))


def test_only_posts_that_would_be_recorded_take_a_token(make_client):
    # Judged in order: size (413), key (401), score (400), then the limit (429).
    client = make_client(post_limit="1/1")
    key = login(client, 7)
    for _ in range(5):
        post_score(client, 2, key, "x", status=400)
        post_score(client, 2, "forged", "1", status=401)
        client.post(f"/2/score?sessionkey={key}", "1" * 100, status=413)
    post_score(client, 2, key, "1")
    post_score(client, 2, key, "x", status=400)  # a malformed score is a 400 even over the limit
    post_score(client, 2, key, "2", status=429)


def test_a_429_is_a_problem_for_a_client_that_prefers_json(make_client):
    client = make_client(post_limit="1/1")
    key = login(client, 7)
    post_score(client, 2, key, "1")
    refused = client.post(
        f"/2/score?sessionkey={key}", "2", headers={"Accept": "application/json"}, status=429
    )
    assert refused.content_type == "application/problem+json"
    assert refused.json["status"] == 429
    assert refused.headers["Retry-After"] == "1"


def test_a_429_is_logged_and_counted_as_any_answer(make_client, caplog):
    caplog.set_level(logging.INFO, logger="scoresvc.access")
    client = make_client(post_limit="1/1")
    key = login(client, 7)
    post_score(client, 2, key, "1")
    post_score(client, 2, key, "2", status=429)
    messages = [r.getMessage() for r in caplog.records if r.name == "scoresvc.access"]
    assert " POST /2/score?sessionkey=[redacted] 429 " in messages[-1]
    metrics = client.get("/metrics").text
    assert 'scoresvc_requests_total{route="/<levelid>/score",status="429"} 1.0' in metrics
    assert "scoresvc_scores_received_total 1.0" in metrics


# --- logins per client address --------------------------------------------------------------


def test_logins_are_unlimited_by_default(make_client):
    client = make_client()
    for user in range(100):
        login_from(client, user, "192.0.2.1")


def test_logins_over_the_limit_of_an_address_are_429(make_client, clock):
    client = make_client(login_limit="1/2")
    login_from(client, 1, "192.0.2.1")
    login_from(client, 2, "192.0.2.1")
    refused = login_from(client, 3, "192.0.2.1", status=429)
    assert refused.headers["Retry-After"] == "1"
    assert refused.text.startswith("too many logins")
    login_from(client, 3, "192.0.2.2")  # another address
    clock.advance(1)
    login_from(client, 3, "192.0.2.1")


def test_a_refused_login_ends_no_key_in_stored_mode(make_client):
    client = make_client(login_limit="1/1", store_tokens=True)
    key = login_from(client, 7, "192.0.2.1").text
    login_from(client, 7, "192.0.2.1", status=429)
    post_score(client, 2, key, "10")  # still the user's newest key


def test_head_of_login_takes_no_token(make_client):
    client = make_client(login_limit="1/1")
    for _ in range(5):
        client.head("/7/login", extra_environ={"REMOTE_ADDR": "192.0.2.1"}, status=200)
    login_from(client, 7, "192.0.2.1")


def test_x_forwarded_for_is_ignored_from_a_peer_that_is_not_trusted(make_client):
    client = make_client(login_limit="1/1")  # no trusted proxies at all
    login_from(client, 1, "203.0.113.5", "198.51.100.1")
    login_from(client, 2, "203.0.113.5", "198.51.100.2", status=429)  # the peer's bucket
    client = make_client(login_limit="1/1", trusted_proxies="10.0.0.0/8")
    login_from(client, 1, "203.0.113.5", "198.51.100.1")
    login_from(client, 2, "203.0.113.5", "198.51.100.2", status=429)


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(make_client):
    client = make_client(login_limit="1/1", trusted_proxies="10.0.0.0/8, 192.0.2.10")
    login_from(client, 1, "10.0.0.2", "198.51.100.1")
    login_from(client, 2, "10.0.0.2", "198.51.100.2")  # another client, through the same proxy
    login_from(client, 3, "192.0.2.10", "198.51.100.3, 10.0.0.2")  # through two proxies
    login_from(client, 4, "10.0.0.2", "198.51.100.1", status=429)
    # A client that forges the header only adds to its left: the proxy's entry still counts.
    login_from(client, 5, "10.0.0.2", "1.1.1.1, 198.51.100.1", status=429)


@pytest.mark.parametrize(
    "forwarded",
    ["garbage", "198.51.100.1, <script>", "\x00\x01", "1.2.3.4.5", "::::", ",,,,", "%", "[::1",
     "198.51.100.1 198.51.100.2", "é", "1.2.3.4:99999999999999999999999"],
)  # fmt: skip
def test_a_malformed_x_forwarded_for_counts_as_the_proxy(make_client, forwarded, caplog):
    caplog.set_level(logging.INFO, logger="scoresvc.access")
    client = make_client(login_limit="1/1", trusted_proxies="10.0.0.0/8")
    login_from(client, 1, "10.0.0.2", forwarded)
    login_from(client, 2, "10.0.0.2", status=429)  # the proxy's own bucket
    lines = [r.getMessage() for r in caplog.records if r.name == "scoresvc.access"]
    assert lines[0].startswith("10.0.0.2 GET /1/login 200 ")


def test_a_huge_x_forwarded_for_is_answered_and_read_only_so_far(make_client):
    client = make_client(login_limit="1/1", trusted_proxies="10.0.0.0/8")
    forwarded = ", ".join(["198.51.100.1"] * 20_000)
    login_from(client, 1, "10.0.0.2", forwarded)
    login_from(client, 2, "10.0.0.2", "198.51.100.1", status=429)
    login_from(client, 3, "10.0.0.2", "10.0.0.3, " * 20_000 + "10.0.0.4")


def test_the_access_log_shows_the_client_address(make_client, caplog):
    caplog.set_level(logging.INFO, logger="scoresvc.access")
    client = make_client(trusted_proxies="10.0.0.0/8")
    login_from(client, 1, "10.0.0.2", "2001:db8::7, 10.0.0.9")
    login_from(client, 1, "203.0.113.5", "198.51.100.1")
    lines = [r.getMessage() for r in caplog.records if r.name == "scoresvc.access"]
    assert lines[0].startswith("2001:db8::7 GET /1/login 200 ")
    assert lines[1].startswith("203.0.113.5 GET /1/login 200 ")


# --- log hygiene ------------------------------------------------------------------------------


def test_a_huge_query_string_makes_a_bounded_log_line(make_client, caplog):
    caplog.set_level(logging.INFO, logger="scoresvc.access")
    client = make_client()
    client.get("/1/highscorelist?junk=" + "A" * 200_000, status=200)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "scoresvc.access"]
    assert len(line) < 1200
    assert " characters cut] 200 " in line


def test_a_healthy_probe_and_a_scrape_stay_out_of_the_log_at_info(make_client, caplog):
    caplog.set_level(logging.INFO, logger="scoresvc.access")
    client = make_client()
    client.get("/healthz", status=200)
    client.get("/metrics", status=200)
    assert [r for r in caplog.records if r.name == "scoresvc.access"] == []


# --- settings refused at start ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--post-limit", "5"], "--post-limit: '5' is not a limit: give RATE/BURST"),
        (["--post-limit", "5/0"], "'5/0' is not a limit"),
        (["--login-limit=-1/5"], "--login-limit: '-1/5' is not a limit"),
        (["--trusted-proxies", "10.0.0.0/33"], "'10.0.0.0/33' is neither an IP address"),
    ],
)
def test_unusable_limit_flags_end_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv, serve=lambda app, settings: None)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SCORESVC_POST_LIMIT", "fast", "SCORESVC_POST_LIMIT: 'fast' is not a limit"),
        ("SCORESVC_LOGIN_LIMIT", "10/", "SCORESVC_LOGIN_LIMIT: '10/' is not a limit"),
        ("SCORESVC_TRUSTED_PROXIES", "10.0.0.1, proxy", "'proxy' is neither an IP address"),
        ("SCORESVC_METRICS", "maybe", "SCORESVC_METRICS='maybe' is not a valid metrics"),
    ],
)
def test_unusable_limit_variables_end_with_a_message(variable, value, message, monkeypatch, capsys):
    monkeypatch.setenv(variable, value)
    assert cli.main([], serve=lambda app, settings: None) == 2
    error = capsys.readouterr().err
    assert error.startswith("scoresvc: ") and message in error
    assert "Traceback" not in error
