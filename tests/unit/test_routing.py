import pytest

from scoresvc.errors import InvalidNumber
from scoresvc.web.responses import MethodNotAllowed, NotFound
from scoresvc.web.routing import Route, Router, reserved


def login(environ, userid): ...
def score(environ, levelid): ...
def highscores(environ, levelid): ...
def health(environ): ...
def page(environ, name): ...


ROUTER = Router(
    [
        Route("<int:userid>/login", login, methods=("GET",)),
        Route("<int:userid>/", login, methods=("GET",)),
        Route("<int:levelid>/score", score, methods=("POST",)),
        Route("<int:levelid>/highscorelist", highscores, methods=("GET",)),
        Route("healthz", health, methods=("GET",)),
        Route("pages/<name>", page, methods=("GET", "PUT")),
    ]
)


def assert_matches(method, path, view, **kwargs):
    assert ROUTER.match(method, path) == (view, kwargs)


@pytest.mark.parametrize(
    ("method", "path", "view", "kwargs"),
    [
        ("GET", "/4711/login", login, {"userid": 4711}),
        ("GET", "/0/login", login, {"userid": 0}),
        ("GET", "/007/login", login, {"userid": 7}),
        ("GET", "/2147483647/login", login, {"userid": 2147483647}),
        ("GET", "/4711/", login, {"userid": 4711}),
        ("HEAD", "/4711/login", login, {"userid": 4711}),
        ("POST", "/2/score", score, {"levelid": 2}),
        ("GET", "/2/highscorelist", highscores, {"levelid": 2}),
        ("HEAD", "/2/highscorelist", highscores, {"levelid": 2}),
        ("GET", "/healthz", health, {}),
        ("GET", "/pages/a.b", page, {"name": "a.b"}),
    ],
)
def test_matches_routes_and_converts_their_arguments(method, path, view, kwargs):
    assert_matches(method, path, view, **kwargs)


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "",
        "/login",
        "/4711/login/",
        "/4711/logi",
        "/4711/LOGIN",
        "/1/2/login",
        "/4711/login/extra",
        "/2/highscorelist/",
        "/2/highscores",
        "/healthz/x",
        "/pages",
        "/pages/a/b",
    ],
)
def test_unknown_paths_are_not_found(path):
    with pytest.raises(NotFound):
        ROUTER.match("GET", path)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/1/login", ("GET", "HEAD")),
        ("DELETE", "/1/", ("GET", "HEAD")),
        ("GET", "/1/score", ("POST",)),
        ("HEAD", "/1/score", ("POST",)),
        ("PUT", "/1/score", ("POST",)),
        ("POST", "/1/highscorelist", ("GET", "HEAD")),
        ("POST", "/pages/x", ("GET", "PUT", "HEAD")),
    ],
)
def test_a_known_path_under_another_method_lists_the_allowed_ones(method, path, allowed):
    with pytest.raises(MethodNotAllowed) as raised:
        ROUTER.match(method, path)
    assert raised.value.allowed == allowed
    assert ("Allow", ", ".join(allowed)) in raised.value.headers


@pytest.mark.parametrize(
    "path", ["/abc/login", "/-1/login", "/+1/login", "//login", "/2147483648/login", "/1.5/"]
)
def test_a_malformed_number_in_a_known_path_is_an_invalid_number_not_a_404(path):
    with pytest.raises(InvalidNumber):
        ROUTER.match("GET", path)


def test_the_method_is_checked_before_the_number():
    with pytest.raises(MethodNotAllowed):
        ROUTER.match("POST", "/abc/login")


def test_literal_text_in_patterns_is_matched_literally():
    router = Router([Route("a.b/<int:n>", health)])
    with pytest.raises(NotFound):
        router.match("GET", "/axb/1")
    assert router.match("GET", "/a.b/1") == (health, {"n": 1})


def test_an_unknown_converter_is_refused_when_the_route_is_made():
    with pytest.raises(ValueError, match="unknown converter"):
        Route("<float:x>", health)


def private(environ): ...
def put_private(environ): ...


RESERVING_ROUTER = Router(
    [
        Route("private/area", private, methods=("GET",)),
        Route("private/area", put_private, methods=("PUT",)),
        reserved("private"),
        reserved("private/<path:rest>"),
        Route("<int:userid>/", login, methods=("GET",)),
        Route("<int:levelid>/score", score, methods=("POST",)),
    ]
)


@pytest.mark.parametrize(
    ("method", "path", "view"),
    [("GET", "/private/area", private), ("PUT", "/private/area", put_private)],
)
def test_routes_before_a_reserved_one_answer_its_paths(method, path, view):
    assert RESERVING_ROUTER.match(method, path) == (view, {})


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/private"),
        ("GET", "/private/"),  # which <int:userid>/ would take, as a malformed number
        ("POST", "/private/score"),  # which <int:levelid>/score would take
        ("DELETE", "/private/a/b/c"),
        ("PROPFIND", "/private/x"),
    ],
)
def test_a_reserved_route_makes_its_paths_unknown_to_every_later_route(method, path):
    with pytest.raises(NotFound):
        RESERVING_ROUTER.match(method, path)


def test_a_path_an_earlier_route_takes_under_another_method_is_405_not_reserved():
    with pytest.raises(MethodNotAllowed) as raised:
        RESERVING_ROUTER.match("POST", "/private/area")
    assert raised.value.allowed == ("GET", "HEAD", "PUT")


def test_paths_outside_the_reserved_ones_are_routed_as_before():
    with pytest.raises(InvalidNumber):
        RESERVING_ROUTER.match("GET", "/privatex/")
    assert RESERVING_ROUTER.match("POST", "/7/score") == (score, {"levelid": 7})
