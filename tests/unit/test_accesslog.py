import pytest

from scoresvc.web.accesslog import logged_path

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
