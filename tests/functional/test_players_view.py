"""The players' view: ranks, neighbours, pages, JSON by Accept, revalidation, a safe HEAD login."""

import pytest
from webtest import TestApp

from scoresvc import create_app
from scoresvc.settings import Settings
from scoresvc.startup import open_ready_database
from tests.functional.conftest import login, post_score

MAX = 2147483647
JSON = {"Accept": "application/json"}
TEXT_TYPE = "text/plain; charset=utf-8"


@pytest.fixture
def client(make_client) -> TestApp:
    """A client on each kind of database; lists and ranks read the same in either key mode."""
    return make_client()


def fill(client: TestApp, level_id: int, scores: dict[int, int]) -> None:
    """Post each user's score on the level, in the dict's order (earlier wins a tie)."""
    for user_id, score in scores.items():
        post_score(client, level_id, login(client, user_id), str(score))


def ladder(client: TestApp, level_id: int, players: int) -> None:
    """Users 1..players on the level, user n at rank n (score 1000 - n)."""
    fill(client, level_id, {user: 1000 - user for user in range(1, players + 1)})


def pairs(users: range | list[int]) -> str:
    """The text list of ladder() users, in the order given."""
    return ",".join(f"{user}={1000 - user}" for user in users)


def places(users: range | list[int]) -> list[dict]:
    """The JSON entries of ladder() users, each at its rank."""
    return [{"rank": user, "user": user, "score": 1000 - user} for user in users]


# --- rank -----------------------------------------------------------------------------


def test_a_rank_is_the_place_in_the_whole_ordering(client):
    ladder(client, 2, 20)
    for user in [1, 2, 15, 16, 20]:
        response = client.get(f"/2/rank/{user}", status=200)
        assert response.body == str(user).encode()
        assert response.headers["Content-Type"] == TEXT_TYPE


def test_the_contracts_example_as_json(client):
    fill(client, 2, {4711: 1500, 131: 1220})
    response = client.get("/2/rank/4711", headers=JSON, status=200)
    assert response.headers["Content-Type"] == "application/json"
    assert list(response.json.items()) == [
        ("level", 2), ("user", 4711), ("rank", 1), ("score", 1500), ("players", 2),
    ]  # fmt: skip
    assert client.get("/2/rank/131", headers=JSON, status=200).json["rank"] == 2


def test_equal_scores_rank_by_who_reached_them_first(client, clock):
    for user_id, score in [(7, 500), (3, 500), (9, 500), (1, 600)]:
        post_score(client, 1, login(client, user_id), str(score))
        clock.advance(1)  # SQLite's reached_at comes from the app's clock
    post_score(client, 1, login(client, 3), "500")  # equal again: keeps its first time
    assert [client.get(f"/1/rank/{user}").text for user in (1, 7, 3, 9)] == ["1", "2", "3", "4"]


def test_a_rank_follows_the_users_best_score(client):
    fill(client, 1, {1: 100, 2: 200})
    assert client.get("/1/rank/1", status=200).text == "2"
    fill(client, 1, {1: 300})
    assert client.get("/1/rank/1", status=200).text == "1"
    fill(client, 1, {1: 50})  # lower: changes nothing
    assert client.get("/1/rank/1", status=200).text == "1"


def test_a_user_without_a_score_on_the_level_has_no_rank(client):
    fill(client, 1, {1: 10})
    response = client.get("/1/rank/2", status=404)
    assert response.text == "user 2 has no score on level 1\n"
    assert response.headers["Vary"] == "Accept"
    client.get("/2/rank/1", status=404)  # a score elsewhere does not count
    client.get(f"/{MAX}/rank/{MAX}", status=404)


@pytest.mark.parametrize("number", ["-1", "+5", "1_000", "1e3", "0x10", "%D9%A3", "2147483648"])
def test_a_malformed_number_in_the_rank_path_is_400(client, number):
    assert "levelid" in client.get(f"/{number}/rank/1", status=400).text
    assert "userid" in client.get(f"/1/rank/{number}", status=400).text


@pytest.mark.parametrize("path", ["/1/rank", "/1/rank/1/", "/1/rank/1/2", "/rank/1", "/1/ranks/1"])
def test_other_rank_paths_are_404(client, path):
    client.get(path, status=404)


def test_an_empty_user_in_the_rank_path_is_a_malformed_number(client):
    assert "userid" in client.get("/1/rank/", status=400).text


def test_rank_answers_get_and_head_only(client):
    response = client.post("/1/rank/1", status=405)
    assert response.headers["Allow"] == "GET, HEAD"
    fill(client, 1, {1: 10})
    head = client.head("/1/rank/1", status=200)
    assert head.body == b""
    assert head.headers["Content-Length"] == "1"
    assert head.headers["ETag"] == client.get("/1/rank/1").headers["ETag"]


# --- around and from ------------------------------------------------------------------


def test_from_one_is_the_plain_list(client):
    ladder(client, 3, 20)
    for headers in [{}, JSON]:
        plain = client.get("/3/highscorelist", headers=headers, status=200)
        first_page = client.get("/3/highscorelist?from=1", headers=headers, status=200)
        assert first_page.body == plain.body
        assert first_page.headers["ETag"] == plain.headers["ETag"]
    assert client.get("/3/highscorelist?from=0001").text == pairs(range(1, 16))


def test_a_page_is_the_fifteen_places_from_its_rank(client):
    ladder(client, 3, 40)
    assert client.get("/3/highscorelist?from=2", status=200).text == pairs(range(2, 17))
    assert client.get("/3/highscorelist?from=16", status=200).text == pairs(range(16, 31))
    assert client.get("/3/highscorelist?from=30", status=200).text == pairs(range(30, 41))
    assert client.get("/3/highscorelist?from=40", status=200).text == pairs([40])
    page = client.get("/3/highscorelist?from=26", headers=JSON, status=200).json
    assert page == {"level": 3, "players": 40, "entries": places(range(26, 41))}


def test_a_page_past_the_end_is_empty(client):
    ladder(client, 3, 20)
    for first in ["21", "1000", str(MAX)]:
        assert client.get(f"/3/highscorelist?from={first}", status=200).body == b""
        page = client.get(f"/3/highscorelist?from={first}", headers=JSON, status=200).json
        assert page == {"level": 3, "players": 20, "entries": []}


def test_a_level_without_scores_has_empty_pages(client):
    assert client.get("/9/highscorelist?from=1", status=200).body == b""
    assert client.get("/9/highscorelist?from=2", status=200).body == b""
    empty = {"level": 9, "players": 0, "entries": []}
    assert client.get("/9/highscorelist", headers=JSON, status=200).json == empty
    assert client.get("/9/highscorelist?from=5", headers=JSON, status=200).json == empty


def test_around_a_user_is_fifteen_places_with_the_user_in_the_middle_or_shifted(client):
    ladder(client, 4, 40)
    for user, first in [(1, 1), (2, 1), (8, 1), (9, 2), (20, 13), (32, 25), (33, 26), (40, 26)]:
        expected = range(first, first + 15)
        response = client.get(f"/4/highscorelist?around={user}", status=200)
        assert response.text == pairs(expected), user
        window = client.get(f"/4/highscorelist?around={user}", headers=JSON, status=200).json
        assert window == {"level": 4, "players": 40, "entries": places(expected)}, user


def test_around_on_a_level_of_fifteen_or_fewer_gives_every_place(client):
    for level, players in enumerate([1, 2, 7, 14, 15], start=10):
        ladder(client, level, players)
        everyone = range(1, players + 1)
        for user in {1, players // 2 + 1, players}:
            path = f"/{level}/highscorelist?around={user}"
            window = client.get(path, headers=JSON, status=200).json
            assert window == {"level": level, "players": players, "entries": places(everyone)}
            assert client.get(path, status=200).text == pairs(everyone)


def test_around_on_a_level_of_sixteen_shifts_by_one_past_the_middle(client):
    ladder(client, 5, 16)
    for user, first in [(1, 1), (8, 1), (9, 2), (16, 2)]:
        expected = pairs(range(first, first + 15))
        assert client.get(f"/5/highscorelist?around={user}", status=200).text == expected


def test_around_a_user_without_a_score_is_404(client):
    ladder(client, 4, 3)
    response = client.get("/4/highscorelist?around=99", status=404)
    assert response.text == "user 99 has no score on level 4\n"
    client.get("/5/highscorelist?around=1", status=404)


@pytest.mark.parametrize(
    "query",
    [
        "around=1&from=1",
        "from=2&around=1",
        "around=1&around=1",
        "from=2&from=2",
        "from=2&from=3",
        "around=&from=",
        "from=1&x=1&from=1",
        "fr%6Fm=2&from=2",
    ],
)
def test_both_or_a_repeated_parameter_is_400(client, query):
    fill(client, 4, {1: 10})
    response = client.get(f"/4/highscorelist?{query}", status=400)
    assert response.text.strip()


MALFORMED = [
    "", "-1", "+5", "%205", "5%20", "1_000", "1.5", "1e3", "0x10", "abc", "%D9%A3", "%EF%BC%95",
    "2147483648", "99999999999999999999", "1" * 5000, "%00", "5%0A", "1%261", "%2B1",
]  # fmt: skip


def test_a_malformed_or_zero_rank_in_from_is_400(client):
    fill(client, 4, {1: 10})
    for value in [*MALFORMED, "0", "00", "0000000000000"]:
        response = client.get(f"/4/highscorelist?from={value}", status=400)
        assert "from" in response.text, value


def test_a_malformed_user_in_around_is_400(client):
    fill(client, 4, {1: 10})
    for value in MALFORMED:
        response = client.get(f"/4/highscorelist?around={value}", status=400)
        assert "around" in response.text, value


def test_a_parameter_without_a_value_is_malformed(client):
    client.get("/4/highscorelist?from", status=400)
    client.get("/4/highscorelist?around", status=400)


def test_other_parameters_are_still_ignored_and_names_may_be_escaped(client):
    ladder(client, 4, 20)
    assert client.get("/4/highscorelist?x=1&from=2&y", status=200).text == pairs(range(2, 17))
    assert client.get("/4/highscorelist?fr%6Fm=2").text == pairs(range(2, 17))
    assert client.get("/4/highscorelist?From=2&sort=asc").text == pairs(range(1, 16))
    assert client.get("/4/highscorelist?around=%32%30").text == pairs(range(6, 21))


def test_around_and_from_take_leading_zeros_and_the_largest_numbers(client):
    fill(client, MAX, {MAX: MAX, 0: 0})
    assert client.get(f"/{MAX}/highscorelist?around=00{MAX}").text == f"{MAX}={MAX},0=0"
    assert client.get(f"/{MAX}/highscorelist?from=002").text == "0=0"
    assert client.get(f"/{MAX}/rank/0").text == "2"


# --- JSON by Accept -------------------------------------------------------------------


TEXT_ACCEPTS = [
    None, "", "*/*", "text/plain", "text/*", "text/plain; charset=utf-8",
    "application/json, text/plain", "application/json;q=0", "*/*;q=0", "image/png",
    "application/json;q=abc", "application/json;q=2", "text/html,*/*;q=0.8",
    "application/json;q=0.5, text/plain;q=0.5", ";;;,,,", "\x7f\x00", "a" * 100_000,
    "application/json, " + "text/plain;q=1, " * 5000, "*/*;q=0.4, text/*;q=0.5",
]  # fmt: skip
JSON_ACCEPTS = [
    "application/json", "application/*", "application/json;q=0.1",
    "text/plain;q=0.5, application/json", "text/*;q=0.1, */*;q=0.2",
    "*/*;q=0, application/json;q=0.001", "text/plain;format=flowed, application/json;q=0.1",
    "*/*;q=0.5, text/*;q=0.4",
    "application/json;q=abc, application/json;q=0.9, text/plain;q=0.8",
    "APPLICATION/JSON", "text/plain;q=0, " + "x/y, " * 5000 + "*/*",
]  # fmt: skip


def test_text_stays_byte_for_byte_unless_json_is_preferred(client):
    fill(client, 2, {4711: 1500, 131: 1220})
    for accept in TEXT_ACCEPTS:
        headers = {} if accept is None else {"Accept": accept}
        response = client.get("/2/highscorelist", headers=headers, status=200)
        assert response.body == b"4711=1500,131=1220", accept
        assert response.headers["Content-Type"] == TEXT_TYPE
        assert response.headers["Vary"] == "Accept"
        assert (
            client.get("/2/highscorelist?from=2", headers=headers, status=200).body == b"131=1220"
        )
        assert client.get("/2/rank/131", headers=headers, status=200).body == b"2"


def test_json_when_accept_prefers_it(client):
    fill(client, 2, {4711: 1500, 131: 1220})
    for accept in JSON_ACCEPTS:
        response = client.get("/2/highscorelist", headers={"Accept": accept}, status=200)
        assert response.headers["Content-Type"] == "application/json", accept
        assert response.headers["Vary"] == "Accept"
        assert response.json == {
            "level": 2,
            "players": 2,
            "entries": [
                {"rank": 1, "user": 4711, "score": 1500},
                {"rank": 2, "user": 131, "score": 1220},
            ],
        }
        page = client.get("/2/highscorelist?from=2", headers={"Accept": accept}, status=200)
        assert page.json["entries"] == [{"rank": 2, "user": 131, "score": 1220}]
        rank = client.get("/2/rank/131", headers={"Accept": accept}, status=200)
        assert rank.json["rank"] == 2


def test_the_json_top_list_counts_every_player_but_lists_fifteen(client):
    ladder(client, 3, 20)
    listing = client.get("/3/highscorelist", headers=JSON, status=200).json
    assert listing == {"level": 3, "players": 20, "entries": places(range(1, 16))}


def test_the_text_and_json_lists_are_each_right_after_a_write(client):
    ladder(client, 3, 2)
    client.get("/3/highscorelist", status=200)
    client.get("/3/highscorelist", headers=JSON, status=200)
    fill(client, 3, {9: 1500})
    assert client.get("/3/highscorelist", status=200).text == "9=1500,1=999,2=998"
    listing = client.get("/3/highscorelist", headers=JSON, status=200).json
    assert [entry["user"] for entry in listing["entries"]] == [9, 1, 2]
    assert listing["players"] == 3


def problem(response) -> dict:
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Vary"] == "Accept"
    body = response.json
    assert body["type"] == "about:blank"
    assert body["status"] == response.status_int
    assert body["title"] == response.status.split(" ", 1)[1]
    return body


def test_errors_are_problem_details_for_a_client_that_prefers_json(client):
    key = login(client, 1)
    assert "levelid" in problem(client.get("/x/highscorelist", headers=JSON, status=400))["detail"]
    assert (
        "from" in problem(client.get("/1/highscorelist?from=0", headers=JSON, status=400))["detail"]
    )
    assert problem(client.get("/1/rank/1", headers=JSON, status=404))["detail"] == (
        "user 1 has no score on level 1"
    )
    assert problem(client.get("/1/highscorelist?around=5", headers=JSON, status=404))
    assert problem(client.get("/nowhere", headers=JSON, status=404))["detail"] == "not found"
    assert problem(client.get("/x/login", headers=JSON, status=400))
    response = client.post("/1/score?sessionkey=forged", "5", headers=JSON, status=401)
    assert problem(response)["detail"] == "malformed session key"
    assert response.headers["WWW-Authenticate"] == 'SessionKey realm="scoresvc"'
    response = client.post("/1/highscorelist", headers=JSON, status=405)
    assert problem(response)["detail"] == "method not allowed"
    assert response.headers["Allow"] == "GET, HEAD"
    response = client.post(f"/1/score?sessionkey={key}", "9" * 100, headers=JSON, status=413)
    assert problem(response)["title"] == "Payload Too Large"
    assert problem(client.post(f"/1/score?sessionkey={key}", "x", headers=JSON, status=400))


def test_a_problem_head_has_the_headers_and_no_body(client):
    head = client.head("/1/rank/1", headers=JSON, status=404)
    get = client.get("/1/rank/1", headers=JSON, status=404)
    assert head.body == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"]
    assert head.headers["Content-Type"] == "application/problem+json"


def test_text_errors_say_they_vary_with_accept_too(client):
    for response in [
        client.get("/x/highscorelist", status=400),
        client.get("/1/rank/1", status=404),
        client.get("/nowhere", status=404),
        client.post("/1/login", status=405),
        client.post("/1/score", "1", status=401),
    ]:
        assert response.headers["Content-Type"] == TEXT_TYPE
        assert response.headers["Vary"] == "Accept"


def test_the_database_not_answering_is_a_503_problem(clock, tmp_path):
    database = open_ready_database(Settings(database_url=f"sqlite:///{tmp_path}/scores.db"))
    app = create_app(Settings(), database=database, clock=clock)
    client = TestApp(app, lint=True)
    with database.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE best_scores")
    for path in ["/1/highscorelist", "/1/rank/1", "/1/highscorelist?from=2", "/healthz"]:
        assert "database" in problem(client.get(path, headers=JSON, status=503))["detail"]
        assert client.get(path, status=503).headers["Content-Type"] == TEXT_TYPE
    app.close()


def test_login_stays_text_whatever_the_accept(client):
    response = client.get("/1/login", headers=JSON, status=200)
    assert response.headers["Content-Type"] == TEXT_TYPE
    post_score(client, 1, response.text, "5")


# --- revalidation ---------------------------------------------------------------------

REVALIDATED_PATHS = [
    "/2/highscorelist",
    "/2/highscorelist?from=1",
    "/2/highscorelist?from=2",
    "/2/highscorelist?around=131",
    "/2/rank/131",
]


@pytest.mark.parametrize("path", REVALIDATED_PATHS)
def test_lists_and_ranks_carry_a_validator_that_differs_by_variant(client, path):
    fill(client, 2, {4711: 1500, 131: 1220, 7: 1000})
    text = client.get(path, status=200)
    as_json = client.get(path, headers=JSON, status=200)
    for response in [text, as_json]:
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["Vary"] == "Accept"
        etag = response.headers["ETag"]
        assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert text.headers["ETag"] != as_json.headers["ETag"]
    assert client.get(path, status=200).headers["ETag"] == text.headers["ETag"]


@pytest.mark.parametrize("path", REVALIDATED_PATHS)
def test_a_matching_if_none_match_is_304_without_a_body(client, path):
    fill(client, 2, {4711: 1500, 131: 1220, 7: 1000})
    for accept in [{}, JSON]:
        etag = client.get(path, headers=accept, status=200).headers["ETag"]
        for if_none_match in [etag, f"W/{etag}", f'"other", {etag}', f' "a",W/{etag} ,"b"', "*"]:
            for method in ["GET", "HEAD"]:
                headers = {**accept, "If-None-Match": if_none_match}
                response = client.request(path, method=method, headers=headers, status=304)
                assert response.body == b""
                assert "Content-Type" not in response.headers
                assert "Content-Length" not in response.headers
                assert response.headers["ETag"] == etag
                assert response.headers["Cache-Control"] == "no-cache"
                assert response.headers["Vary"] == "Accept"


def test_an_if_none_match_without_the_tag_gets_the_body(client):
    fill(client, 2, {4711: 1500})
    etag = client.get("/2/highscorelist", status=200).headers["ETag"]
    for if_none_match in [
        "", " ", ",", '"other"', "W/", "**", '""', '"', "garbage", "W/*", "x" * 100_000,
        "\x00", etag[1:-1], etag[:-2] + '"', f"{etag}x", f"w/{etag}", "*, " + '"other"',
    ]:  # fmt: skip
        headers = {"If-None-Match": if_none_match}
        response = client.get("/2/highscorelist", headers=headers, status=200)
        assert response.body == b"4711=1500", if_none_match


def test_a_tag_of_the_other_variant_does_not_match(client):
    fill(client, 2, {4711: 1500})
    text_tag = client.get("/2/rank/4711", status=200).headers["ETag"]
    json_tag = client.get("/2/rank/4711", headers=JSON, status=200).headers["ETag"]
    client.get("/2/rank/4711", headers={**JSON, "If-None-Match": text_tag}, status=200)
    client.get("/2/rank/4711", headers={"If-None-Match": json_tag}, status=200)


def test_the_tag_changes_with_the_body_and_only_then(client):
    fill(client, 2, {4711: 1500, 131: 1220})

    def tags() -> dict[str, str]:
        """The tag of the list and of 4711's rank, as text and as JSON."""
        return {
            f"{path} {variant}": client.get(path, headers=headers, status=200).headers["ETag"]
            for path in ["/2/highscorelist", "/2/rank/4711"]
            for variant, headers in [("text", {}), ("json", JSON)]
        }

    first = tags()
    fill(client, 2, {131: 1000})  # lower than 131's best: nothing changes
    assert tags() == first
    list_tag = first["/2/highscorelist text"]
    client.get("/2/highscorelist", headers={"If-None-Match": list_tag}, status=304)

    fill(client, 2, {9: 10})  # a new player below: lists change, and the JSON rank's count
    second = tags()
    assert second["/2/highscorelist text"] != list_tag
    assert second["/2/highscorelist json"] != first["/2/highscorelist json"]
    assert second["/2/rank/4711 text"] == first["/2/rank/4711 text"]  # still "1"
    assert second["/2/rank/4711 json"] != first["/2/rank/4711 json"]  # players is now 3
    client.get("/2/highscorelist", headers={"If-None-Match": list_tag}, status=200)

    fill(client, 2, {131: 2000})  # 131 goes first: 4711's rank changes
    assert client.get("/2/rank/4711", status=200).text == "2"
    assert tags()["/2/rank/4711 text"] != second["/2/rank/4711 text"]


def test_errors_are_never_304(client):
    client.get("/2/rank/1", headers={"If-None-Match": "*"}, status=404)
    client.get("/x/highscorelist", headers={"If-None-Match": "*"}, status=400)
    client.get("/1/login", headers={"If-None-Match": "*"}, status=200)


def test_login_and_health_carry_no_validator(client):
    assert "ETag" not in client.get("/1/login", status=200).headers
    assert "ETag" not in client.get("/healthz", status=200).headers
    assert "Vary" not in client.get("/1/login", status=200).headers


# --- HEAD of login --------------------------------------------------------------------


@pytest.mark.parametrize("store_tokens", [False, True], ids=["signed-keys", "stored-keys"])
@pytest.mark.parametrize("path", ["/4711/login", "/4711/"])
def test_head_of_login_has_the_headers_of_a_login_but_issues_no_key(
    make_client, store_tokens, path
):
    client = make_client(store_tokens=store_tokens)
    get = client.get(path, status=200)
    head = client.head(path, status=200)
    assert head.body == b""
    assert head.headers["Content-Length"] == str(len(get.body))
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    assert head.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/4711/login", "/4711/"])
def test_head_of_login_leaves_a_stored_key_valid(make_client, path):
    client = make_client(store_tokens=True)
    key = login(client, 4711)
    client.head(path, status=200)
    client.head(path, headers=JSON, status=200)
    post_score(client, 1, key, "10")
    assert len(key) == int(client.head(path, status=200).headers["Content-Length"]) == 43


def test_head_of_login_answers_the_length_of_a_signed_key(make_client):
    client = make_client()
    assert client.head("/1/login", status=200).headers["Content-Length"] == "80"
    assert len(login(client, 1)) == 80


@pytest.mark.parametrize("store_tokens", [False, True], ids=["signed-keys", "stored-keys"])
def test_head_of_login_still_refuses_a_malformed_user(make_client, store_tokens):
    client = make_client(store_tokens=store_tokens)
    client.head("/x/login", status=400)
    client.head("/-1/", status=400)
