"""Rate limits over the WSGI app on a fake clock: 429 after the burst, nothing recorded, the
client's address from X-Forwarded-For only through trusted proxies, and the access log."""

import logging

import pytest

from scoresvc.serving import cli
from tests.functional.conftest import login, post_score

PROXY = {"REMOTE_ADDR": "10.0.0.2"}


def peer_environ(peer: str, forwarded: str | None = None) -> dict:
    environ = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        environ["HTTP_X_FORWARDED_FOR"] = forwarded
    return environ


def login_from(client, user_id: int, peer: str, forwarded: str | None = None, status: int = 200):
    return client.get(
        f"/{user_id}/login", extra_environ=peer_environ(peer, forwarded), status=status
    )


def post_from(client, level_id: int, key: str, score: str, peer: str, forwarded=None, status=200):
    target = f"/{level_id}/score?sessionkey={key}"
    return client.post(target, score, extra_environ=peer_environ(peer, forwarded), status=status)


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


def test_a_users_posts_from_two_addresses_each_get_their_own_burst(make_client):
    client = make_client(post_limit="1/3")
    key = login(client, 4711)
    for score in ("1", "2", "3"):
        post_from(client, 1, key, score, "203.0.113.9")  # someone logged in as 4711 elsewhere
    post_from(client, 1, key, "4", "203.0.113.9", status=429)
    for score in ("10", "20", "30"):  # the player's own burst is whole: new bests recorded
        post_from(client, 1, key, score, "192.0.2.1")
    refused = post_from(client, 1, key, "40", "192.0.2.1", status=429)
    assert refused.text.startswith("too many score posts for this user from this address")
    assert client.get("/1/highscorelist").text == "4711=30"


def test_players_behind_one_trusted_proxy_post_from_their_own_addresses(make_client):
    client = make_client(post_limit="1/1", trusted_proxies="10.0.0.0/8")
    key = login(client, 4711)
    post_from(client, 1, key, "1", "10.0.0.2", "198.51.100.1")
    post_from(client, 1, key, "2", "10.0.0.2", "198.51.100.1", status=429)
    post_from(client, 1, key, "2", "10.0.0.2", "198.51.100.2")  # another client, same proxy
    post_from(client, 1, key, "3", "10.0.0.2", "1.1.1.1, 198.51.100.1", status=429)  # forged


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


def test_head_of_login_takes_a_token_as_get_does_but_issues_no_key(make_client):
    # HEAD looks the user's ban up as GET does: unlimited, it would be database work for free.
    client = make_client(login_limit="1/2", store_tokens=True)
    key = login_from(client, 7, "192.0.2.1").text
    client.head("/7/login", extra_environ={"REMOTE_ADDR": "192.0.2.1"}, status=200)
    client.head("/7/login", extra_environ={"REMOTE_ADDR": "192.0.2.1"}, status=429)
    login_from(client, 7, "192.0.2.1", status=429)
    post_score(client, 2, key, "10")  # still the user's newest key


def login_view_repository(client):
    """The repository behind a client's login view."""
    (route,) = [r for r in client.app.router.routes if r.pattern == "<int:userid>/login"]
    return route.view.__self__.repository


def test_a_login_over_the_limit_does_no_database_work(make_client, monkeypatch):
    client = make_client(login_limit="1/1")
    repository = login_view_repository(client)
    looked_up = []
    real_is_banned = repository.is_banned

    def is_banned(user_id):
        looked_up.append(user_id)
        return real_is_banned(user_id)

    monkeypatch.setattr(repository, "is_banned", is_banned)
    login_from(client, 7, "192.0.2.1")
    for user_id in range(8, 20):
        login_from(client, user_id, "192.0.2.1", status=429)
    client.head("/20/login", extra_environ={"REMOTE_ADDR": "192.0.2.1"}, status=429)
    assert looked_up == [7]  # not the ban of any user refused by the limit


def test_a_banned_users_logins_over_the_limit_are_429_before_their_ban_is_looked_up(
    make_client,
):
    token = "an-admin-token-of-at-least-32-characters"
    client = make_client(login_limit="1/1", admin_token=token)
    client.put("/admin/users/7/ban", headers={"Authorization": f"Bearer {token}"}, status=200)
    login_from(client, 7, "192.0.2.1", status=403)
    login_from(client, 7, "192.0.2.1", status=429)


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
    assert cli.main(argv, serve=lambda app, settings: None) == 1
    error = capsys.readouterr().err
    assert error.startswith("scoresvc: cannot start: ") and message in error
    assert error.count("\n") == 1  # one line, no trace


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
    assert cli.main([], serve=lambda app, settings: None) == 1
    error = capsys.readouterr().err
    assert error.startswith("scoresvc: cannot start: ") and message in error
    assert error.count("\n") == 1  # one line, no trace
