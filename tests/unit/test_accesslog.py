import re

import pytest

from scoresvc.web.accesslog import MAX_LOGGED_TARGET, logged_path

KEY = "mrcErokXzLAi0z8EwLn6-uU6JcpevveYW1wAuwtrEnw"


@pytest.mark.parametrize(
    ("path", "query", "logged"),
    [
        ("/1/login", "", "/1/login"),
        ("/7/highscorelist", "page=2", "/7/highscorelist?page=2"),
        ("/7/score", f"sessionkey={KEY}", "/7/score?sessionkey=[redacted]"),
        ("/7/score", "sessionkey=short", "/7/score?sessionkey=[redacted]"),
        ("/7/score", f"SessionKey={KEY}", "/7/score?SessionKey=[redacted]"),
        ("/7/score", f"x=1;sessionkey={KEY}", "/7/score?x=1;sessionkey=[redacted]"),
        ("/7/score", KEY, "/7/score?[redacted]"),
        (f"/7/score/{KEY}", "", "/7/score/[redacted]"),
        (f"/{KEY}/login", "", "/[redacted]/login"),
        ("/2147483647/highscorelist", "", "/2147483647/highscorelist"),
    ],
)
def test_the_logged_path_hides_session_keys_wherever_they_stand(path, query, logged):
    assert logged_path({"PATH_INFO": path, "QUERY_STRING": query}) == logged


def test_a_huge_query_string_is_cut_to_a_bounded_line_and_the_cut_marked():
    logged = logged_path({"PATH_INFO": "/7/highscorelist", "QUERY_STRING": "x=" + "." * 200_000})
    assert len(logged) < MAX_LOGGED_TARGET + 40
    assert logged.startswith("/7/highscorelist?x=...")
    assert logged.endswith(" characters cut]")
    shown = len(logged) - len(logged[logged.index("[...") :])
    cut = int(re.search(r"\[\.\.\.(\d+) characters cut\]", logged)[1])
    assert shown + cut == len("/7/highscorelist?x=") + 200_000


def test_a_huge_path_is_cut_too():
    logged = logged_path({"PATH_INFO": "/" + "%" * 5_000, "QUERY_STRING": "a=b"})
    assert logged.startswith("/%%%") and logged.endswith("[...3980 characters cut]")


@pytest.mark.parametrize("offset", range(-30, 30, 3))
def test_a_key_cut_in_two_leaves_no_part_of_it_in_the_line(offset):
    # Wherever the cut falls, no piece of the key is left, under a misspelt name or none.
    padding = "p=" + "." * (MAX_LOGGED_TARGET - len("/7/score?") - len("p=&sesionkey=") + offset)
    query = f"{padding}&sesionkey={KEY}&more=" + "." * 5_000
    logged = logged_path({"PATH_INFO": "/7/score", "QUERY_STRING": query})
    assert not any(KEY[i : i + 4] in logged for i in range(len(KEY) - 3))


def test_a_request_at_the_limit_is_not_cut():
    query = "x=" + "." * (MAX_LOGGED_TARGET - len("/1/login") - 3)
    assert logged_path({"PATH_INFO": "/1/login", "QUERY_STRING": query}) == f"/1/login?{query}"
