"""Accept negotiation between text/plain and application/json, per RFC 9110 12.5.1."""

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from scoresvc.web.negotiation import prefers_json

TEXT, JSON = False, True


@pytest.mark.parametrize(
    ("accept", "preferred"),
    [
        # No preference, or text asked for: text, as before JSON existed.
        (None, TEXT),
        ("", TEXT),
        ("*/*", TEXT),
        ("text/plain", TEXT),
        ("text/*", TEXT),
        ("text/plain; charset=utf-8", TEXT),
        ("TEXT/PLAIN", TEXT),
        # JSON asked for, in every way a client may.
        ("application/json", JSON),
        ("APPLICATION/JSON", JSON),
        ("application/*", JSON),
        ("application/json, */*;q=0.8", JSON),
        ("application/json;q=0.9, text/plain;q=0.8", JSON),
        ("text/plain;q=0.5, application/json", JSON),
        ("text/plain;q=0, */*", JSON),
        ("text/*;q=0.1, application/json;q=0.2", JSON),
        ("application/json;q=0.001", JSON),
        ("  application/json  ;  q=1.000  ", JSON),
        # Ties go to text.
        ("application/json, text/plain", TEXT),
        ("text/plain, application/json", TEXT),
        ("application/json;q=0.5, text/plain;q=0.5", TEXT),
        ("application/json, text/plain, */*", TEXT),
        # The most specific range decides, whatever its place or weight.
        ("*/*;q=0.1, text/*;q=0.2, application/json;q=0.15", TEXT),
        ("text/plain;q=0.1, text/*, application/json;q=0.5", JSON),
        ("text/plain;charset=utf-8;q=0.1, text/plain, application/json;q=0.5", JSON),
        ("application/*;q=0.2, */*;q=1", TEXT),
        # A parameter text/plain does not have: that range is not ours.
        ("text/plain;format=flowed, application/json;q=0.5", JSON),
        ("text/plain;charset=latin-1, application/json;q=0.5", JSON),
        # q=0: not acceptable.
        ("application/json;q=0", TEXT),
        ("*/*;q=0", TEXT),
        ("application/json;q=0, text/plain;q=0", TEXT),
        ("*/*;q=0, application/json;q=0.1", JSON),
        # Neither offered: text, since the service answers rather than 406.
        ("image/png", TEXT),
        ("application/problem+json", TEXT),
        ("application/jsonx", TEXT),
        # Malformed elements are ignored; the rest still counts.
        ("application/json;q=abc", TEXT),
        ("application/json;q=2", TEXT),
        ("application/json;q=1.5", TEXT),
        ("application/json;q=0.1234", TEXT),
        ("application/json;q=-1", TEXT),
        ("application/json;q=", TEXT),
        ("application/json;q=abc, application/*;q=0.5", JSON),
        ("application", TEXT),
        ("*", TEXT),
        ("*/json", TEXT),
        ("/json", TEXT),
        ("application/", TEXT),
        (",,,application/json,,", JSON),
        (";;;", TEXT),
        ("application/json;;q=1", JSON),
        ("application/json;=;q=0.5", TEXT),
        ('text/plain;charset="utf-8";q=0.1, application/json;q=0.5', JSON),
        ("\x00application/json", TEXT),
        ("application/json\udcff", TEXT),
        ("application/json, " + "x/y;q=0.5, " * 10_000, JSON),
        ("text/plain, " * 10_000 + "application/json", TEXT),
    ],
)
def test_json_is_chosen_only_when_accept_weighs_it_above_text(accept, preferred):
    assert prefers_json(accept) is preferred


@given(st.text(alphabet=st.sampled_from('application/json text/plain*;q=0.1,"W '), max_size=80))
@example("application/json;q=0.5;q=abc")
def test_any_header_gets_an_answer_and_the_same_one_every_time(accept):
    first = prefers_json(accept)
    assert first in (TEXT, JSON)
    assert prefers_json(accept) is first


@given(st.text(max_size=300))
def test_any_text_at_all_gets_an_answer(accept):
    assert prefers_json(accept) in (TEXT, JSON)


@given(
    st.sampled_from(["application/json", "application/*", "*/*"]),
    st.sampled_from(["0.001", "0.5", "1", "1.0"]),
)
def test_text_asked_for_at_full_weight_is_never_beaten(json_range, weight):
    assert prefers_json(f"{json_range};q={weight}, text/plain") is TEXT
    assert prefers_json(f"text/plain, {json_range};q={weight}") is TEXT
