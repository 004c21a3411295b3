"""Responses' headers, their 304s, and errors as text or as problem details."""

import json

from scoresvc.web.responses import MethodNotAllowed, NotFound, Response


def test_a_response_sends_its_type_and_length_then_its_own_headers():
    response = Response(b"abc", headers=(("X-A", "1"),), etag='"t"')
    assert response.header_list == (
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", "3"),
        ("ETag", '"t"'),
        ("X-A", "1"),
    )


def test_a_head_answer_may_give_the_length_of_a_body_it_does_not_make():
    assert dict(Response(content_length=80).header_list)["Content-Length"] == "80"


def test_a_304_repeats_the_headers_but_has_no_body_type_or_length():
    response = Response(b"abc", headers=(("Cache-Control", "no-cache"),), etag='"t"')
    not_modified = response.not_modified()
    assert not_modified.status == "304 Not Modified"
    assert not_modified.body == b""
    assert not_modified.header_list == (("ETag", '"t"'), ("Cache-Control", "no-cache"))


def test_an_error_is_a_line_of_text_that_varies_with_accept():
    response = NotFound("no such thing").response()
    assert response.status == "404 Not Found"
    assert response.body == b"no such thing\n"
    assert response.content_type == "text/plain; charset=utf-8"
    assert ("Vary", "Accept") in response.headers


def test_an_error_as_problem_details_keeps_its_status_and_headers():
    response = MethodNotAllowed(("GET", "HEAD")).response(problem_json=True)
    assert response.status == "405 Method Not Allowed"
    assert response.content_type == "application/problem+json"
    assert json.loads(response.body) == {
        "type": "about:blank",
        "title": "Method Not Allowed",
        "status": 405,
        "detail": "method not allowed",
    }
    assert response.headers == (("Allow", "GET, HEAD"), ("Vary", "Accept"))
