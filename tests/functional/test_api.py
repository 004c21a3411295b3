"""The contract, call by call and status by status, through the whole WSGI app."""

import logging

import pytest
from webtest import TestApp, TestRequest

from scoresvc import create_app
from scoresvc.settings import Settings
from scoresvc.startup import open_ready_database
from tests.functional.conftest import login, post_score

MAX = 2147483647


def test_login_answers_a_key_of_url_safe_characters(client):
    response = client.get("/4711/login", status=200)
    assert response.content_type == "text/plain"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.text.replace("-", "").replace("_", "").isalnum()


def test_login_gives_a_new_key_every_time(client):
    assert len({login(client, 1) for _ in range(10)}) == 10


def test_the_short_login_path_logs_in_too(client):
    key = client.get("/4711/", status=200).text
    post_score(client, 1, key, "10")
    assert client.get("/1/highscorelist").text == "4711=10"


def test_a_posted_score_shows_in_the_high_score_list(client):
    key = login(client, 4711)
    response = post_score(client, 2, key, "1500")
    assert response.body == b""
    assert response.headers["Content-Length"] == "0"
    assert client.get("/2/highscorelist", status=200).text == "4711=1500"


def test_the_example_from_the_contract(client):
    post_score(client, 2, login(client, 4711), "1500")
    post_score(client, 2, login(client, 131), "1220")
    assert client.get("/2/highscorelist").text == "4711=1500,131=1220"


def test_a_level_without_scores_answers_an_empty_200(client):
    response = client.get("/99/highscorelist", status=200)
    assert response.body == b""
    assert response.content_type == "text/plain"


def test_only_the_best_score_of_a_user_counts(client):
    key = login(client, 1)
    for score in ["100", "300", "200", "300", "0"]:
        post_score(client, 5, key, score)
    assert client.get("/5/highscorelist").text == "1=300"


def test_the_list_holds_the_best_fifteen_users_highest_first(client):
    for user_id in range(1, 21):
        post_score(client, 3, login(client, user_id), str(user_id * 10))
    expected = ",".join(f"{u}={u * 10}" for u in range(20, 5, -1))
    assert client.get("/3/highscorelist").text == expected


def test_equal_scores_rank_by_who_reached_them_first(client, clock):
    for user_id in (7, 3, 9):
        post_score(client, 1, login(client, user_id), "500")
        clock.advance(1)
    post_score(client, 1, login(client, 3), "500")  # equal again: keeps its first time
    assert client.get("/1/highscorelist").text == "7=500,3=500,9=500"


def test_levels_are_separate_and_one_key_posts_for_its_user_on_any_level(client):
    key = login(client, 1)
    post_score(client, 1, key, "10")
    post_score(client, 2, key, "20")
    assert client.get("/1/highscorelist").text == "1=10"
    assert client.get("/2/highscorelist").text == "1=20"


@pytest.mark.parametrize(
    ("body", "score"),
    [
        ("1500\n", "1500"),
        ("1500\r\n", "1500"),
        ("0001500", "1500"),
        (str(MAX), str(MAX)),
        ("0", "0"),
    ],
)
def test_score_bodies_may_end_with_one_line_ending_and_have_leading_zeros(client, body, score):
    post_score(client, 1, login(client, 1), body)
    assert client.get("/1/highscorelist").text == f"1={score}"


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "application/json", "text/plain"]
)
def test_the_content_type_of_a_score_is_ignored(client, content_type):
    key = login(client, 1)
    client.post(f"/1/score?sessionkey={key}", "42", content_type=content_type, status=200)
    assert client.get("/1/highscorelist").text == "1=42"


def test_unknown_query_parameters_are_ignored(client):
    key = login(client, 1)
    client.post(f"/1/score?foo=bar&sessionkey={key}&x", "5", status=200)
    assert client.get("/1/highscorelist?sort=asc&limit=1").text == "1=5"
    assert client.get("/1/login?x=1").status_int == 200


def test_numbers_at_the_edges_of_the_range_work_in_paths(client):
    key = login(client, MAX)
    post_score(client, MAX, key, "1")
    assert client.get(f"/{MAX}/highscorelist").text == f"{MAX}=1"
    assert client.get(f"/00{MAX}/highscorelist").text == f"{MAX}=1"


# --- HEAD and methods -------------------------------------------------------------------


def test_head_is_answered_as_get_without_a_body(client):
    post_score(client, 1, login(client, 1), "10")
    get = client.get("/1/highscorelist")
    head = client.head("/1/highscorelist", status=200)
    assert head.body == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"] == "4"
    assert head.content_type == "text/plain"


def test_head_of_login_answers_200_without_a_body(client):
    response = client.head("/1/login", status=200)
    assert response.body == b""


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/1/login", "GET, HEAD"),
        ("PUT", "/1/login", "GET, HEAD"),
        ("DELETE", "/1/", "GET, HEAD"),
        ("GET", "/1/score", "POST"),
        ("HEAD", "/1/score", "POST"),
        ("PUT", "/1/score", "POST"),
        ("POST", "/1/highscorelist", "GET, HEAD"),
        ("PATCH", "/1/highscorelist", "GET, HEAD"),
        ("OPTIONS", "/1/highscorelist", "GET, HEAD"),
        ("POST", "/healthz", "GET, HEAD"),
    ],
)
def test_a_wrong_method_is_405_with_allow(client, method, path, allow):
    response = client.request(path, method=method, status=405, expect_errors=True)
    assert response.headers["Allow"] == allow
    if method != "HEAD":
        assert response.text == "method not allowed\n"


# --- every status of the contract, with hostile input -----------------------------------

HOSTILE_NUMBERS = [
    "-1", "+5", "%205", "5%20", "1_000", "1.5", "1e3", "0x10", "abc", "%D9%A3", "%EF%BC%95",
    "2147483648", "99999999999999999999", "1" * 5000, "%00", "5%0A",
]  # fmt: skip


@pytest.mark.parametrize("userid", HOSTILE_NUMBERS)
def test_a_malformed_userid_is_400(client, userid):
    response = client.get(f"/{userid}/login", status=400)
    assert "userid" in response.text
    client.get(f"/{userid}/", status=400)


@pytest.mark.parametrize("path", ["//login", "//", "//highscorelist"])
def test_an_empty_number_in_a_known_path_is_400(client, path):
    # WebTest would read '//x' as a host name: set the path the server would pass on.
    request = TestRequest.blank("/", environ={"PATH_INFO": path})
    assert client.do_request(request, status=400).text.startswith(("userid", "levelid"))


@pytest.mark.parametrize("levelid", HOSTILE_NUMBERS)
def test_a_malformed_levelid_is_400_and_records_nothing(client, levelid):
    key = login(client, 1)
    response = client.post(f"/{levelid}/score?sessionkey={key}", "10", status=400)
    assert "levelid" in response.text
    client.get(f"/{levelid}/highscorelist", status=400)


@pytest.mark.parametrize(
    "body",
    [
        "-1", "+5", " 5", "5 ", "1_000", "1.5", "1e3", "0x10", "abc", "\u0663", "\uff15",
        "2147483648", "99999999999999999999", "5\n\n", "5\r", "\n5", "5\r\n\r\n", "5\x00",
        "1" * 64, "\r\n", "\n",
    ],
)  # fmt: skip
def test_a_malformed_score_is_400_and_records_nothing(client, body):
    key = login(client, 1)
    post_score(client, 1, key, "7")
    response = client.post(f"/1/score?sessionkey={key}", body.encode(), status=400)
    assert response.text.strip()
    assert client.get("/1/highscorelist").text == "1=7"


def test_a_missing_body_is_400(client):
    key = login(client, 1)
    response = client.post(f"/1/score?sessionkey={key}", status=400)
    assert "missing" in response.text
    assert client.get("/1/highscorelist").text == ""


def test_a_body_larger_than_any_score_is_413_and_records_nothing(client):
    key = login(client, 1)
    client.post(f"/1/score?sessionkey={key}", "1" + "0" * 64, status=413)
    client.post(f"/1/score?sessionkey={key}", "9" * 100_000, status=413)
    assert client.get("/1/highscorelist").text == ""


def test_an_oversized_body_is_413_before_the_key_is_even_looked_at(client):
    client.post("/1/score", "9" * 1000, status=413)
    client.post("/1/score?sessionkey=forged", "9" * 1000, status=413)


def test_a_bad_key_is_401_whatever_the_body(client):
    client.post("/1/score?sessionkey=forged", "not a number", status=401)
    client.post("/1/score", status=401)


def test_a_body_at_the_limit_is_read_and_judged_as_a_score(client):
    key = login(client, 1)
    client.post(f"/1/score?sessionkey={key}", "0" * 62 + "42", status=200)
    assert client.get("/1/highscorelist").text == "1=42"


@pytest.mark.parametrize(
    "query",
    [
        "",
        "sessionkey=",
        "sessionkey",
        "sessionKey=KEY",
        "key=KEY",
        "sessionkey=KEYx",
        "sessionkey=xKEY",
        "sessionkey=KEY%00",
        "sessionkey=%FF%FE",
        "sessionkey=KEY&sessionkey=KEY",
        "sessionkey=" + "A" * 10_000,
    ],
)
def test_a_missing_or_invalid_key_is_401_and_records_nothing(client, query):
    key = login(client, 1)
    response = client.post(f"/1/score?{query.replace('KEY', key)}", "10", status=401)
    assert response.text.strip()
    assert response.headers["WWW-Authenticate"].startswith("SessionKey")
    assert client.get("/1/highscorelist").text == ""


def test_an_expired_key_is_401(client, clock):
    key = login(client, 1)
    clock.advance(599)
    post_score(client, 1, key, "10")
    clock.advance(1)
    response = post_score(client, 1, key, "20", status=401)
    assert "expired" in response.text
    assert client.get("/1/highscorelist").text == "1=10"


def test_the_key_lifetime_is_configurable(make_client, clock):
    client = make_client(session_ttl=30)
    key = login(client, 1)
    clock.advance(30)
    post_score(client, 1, key, "10", status=401)


def test_in_stored_mode_a_new_login_ends_the_previous_key(make_client):
    client = make_client(store_tokens=True)
    first = login(client, 1)
    second = login(client, 1)
    post_score(client, 1, first, "10", status=401)
    post_score(client, 1, second, "20")
    assert client.get("/1/highscorelist").text == "1=20"


def test_in_signed_mode_earlier_keys_stay_valid_after_a_new_login(make_client):
    client = make_client()
    first = login(client, 1)
    login(client, 1)
    post_score(client, 1, first, "10")


def test_a_key_from_another_server_secret_is_401(make_client):
    ours = make_client(secret="s" * 32)
    theirs = make_client(secret="t" * 32)
    post_score(ours, 1, login(theirs, 1), "10", status=401)


def test_replicas_with_the_same_secret_accept_each_others_keys(make_client):
    first, second = make_client(secret="s" * 32), make_client(secret="s" * 32)
    post_score(second, 1, login(first, 1), "10")


def test_a_stored_key_is_not_valid_in_signed_mode_and_the_reverse(make_client):
    signed, stored = make_client(), make_client(store_tokens=True)
    post_score(signed, 1, login(stored, 1), "10", status=401)
    post_score(stored, 1, login(signed, 1), "10", status=401)


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/login",
        "/1/login/",
        "/1/2/login",
        "/1/highscorelist/",
        "/1/highscores",
        "/1/score/x",
        "/favicon.ico",
        "/1/LOGIN",
        "/../1/login",
    ],
)
def test_an_unknown_path_is_404(client, path):
    response = client.get(path, status=404)
    assert response.text == "not found\n"


def test_errors_are_short_plain_text_never_a_trace(client):
    for response in [
        client.get("/x/login", status=400),
        client.post("/1/score", "1", status=401),
        client.get("/nowhere", status=404),
        client.post("/1/login", status=405),
    ]:
        assert response.content_type == "text/plain"
        assert "Traceback" not in response.text
        assert len(response.text) < 200


def test_the_database_not_answering_is_503_not_500(clock, tmp_path):
    database = open_ready_database(Settings(database_url=f"sqlite:///{tmp_path}/scores.db"))
    app = create_app(Settings(), database=database, clock=clock)
    client = TestApp(app, lint=True)
    key = login(client, 1)
    with database.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE best_scores RENAME TO gone")
    response = client.get("/1/highscorelist", status=503)
    assert "database" in response.text
    # A post is answered once it is in the write journal, where it waits for the database;
    # once the database has failed to take it, later posts are refused.
    post_score(client, 1, key, "10")
    client.get("/healthz", status=503)
    post_score(client, 1, key, "20", status=503)
    with database.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE gone RENAME TO best_scores")
    client.get("/healthz", status=200)  # the database is back: the post is applied
    assert client.get("/1/highscorelist").text == "1=10"
    post_score(client, 1, key, "30")
    app.close()


def test_health_answers_ok_while_the_database_does(client):
    assert client.get("/healthz", status=200).text == "ok"


# --- the access log ---------------------------------------------------------------------


def test_each_request_is_logged_with_client_method_path_status_and_duration(client, caplog):
    caplog.set_level(logging.INFO, logger="scoresvc.access")
    client.get("/1/highscorelist?x=1", extra_environ={"REMOTE_ADDR": "192.0.2.7"})
    client.get("/nowhere", status=404)
    lines = [r.getMessage() for r in caplog.records if r.name == "scoresvc.access"]
    assert lines[0].startswith("192.0.2.7 GET /1/highscorelist?x=1 200 ")
    assert lines[0].endswith("ms")
    assert lines[1].startswith("- GET /nowhere 404 ")  # no peer address given: '-'


def test_a_healthy_probe_is_logged_only_at_debug_and_an_unhealthy_one_at_info(client, caplog):
    caplog.set_level(logging.INFO, logger="scoresvc.access")
    client.get("/healthz", status=200)
    client.head("/healthz", status=200)
    client.post("/healthz", status=405)
    assert [r.getMessage()[:18] for r in caplog.records if r.name == "scoresvc.access"] == [
        "- POST /healthz 40"
    ]
    caplog.set_level(logging.DEBUG, logger="scoresvc.access")
    client.get("/healthz", status=200)
    (probe,) = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert probe.getMessage().startswith("- GET /healthz 200 ")


def test_session_keys_never_appear_in_the_log(client, caplog):
    caplog.set_level(logging.DEBUG)
    key = login(client, 1)
    post_score(client, 1, key, "10")
    client.post(f"/1/score?a=1&sessionkey={key}&sessionkey={key}", "10", status=401)
    client.post(f"/1/score?session%6Bey={key}", "10")
    client.post(f"/1/score?sessionkey={key[:-1]}", "10", status=401)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "POST /1/score?sessionkey=[redacted] 200" in logged
    assert key not in logged
    assert key[:-1] not in logged


def test_control_characters_in_a_path_cannot_forge_log_lines(client, caplog):
    caplog.set_level(logging.INFO, logger="scoresvc.access")
    client.get("/1/x%0AGET%20/forged%20200", status=404)
    (record,) = [r for r in caplog.records if r.name == "scoresvc.access"]
    assert "\n" not in record.getMessage()
    assert "\\n" in record.getMessage()
