"""Number parsing against a plain reference, on any text hypothesis can think of."""

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from scoresvc.errors import InvalidNumber
from scoresvc.numbers import MAX_UINT31, parse_uint31

# Characters that int() or str.isdigit() take for digits or number syntax, beside the real ones.
TRICKY = "0123456789+-_ .,eExXoObB\t\n\r\x00\u0663\uff15\u00b2\u0967\u2070\U0001d7ce"


def reference(text: str) -> int | None:
    """The contract, read literally: ASCII digits only, value at most 2**31 - 1."""
    if text == "" or any(character not in "0123456789" for character in text):
        return None
    value = 0
    for character in text:
        value = value * 10 + "0123456789".index(character)
    return value if value <= MAX_UINT31 else None


def parsed(text: str) -> int | None:
    try:
        return parse_uint31(text, "score")
    except InvalidNumber:
        return None


@given(st.text())
@example("")
@example("2147483648")
@example("0" * 5000 + "2147483647")
def test_any_text_is_accepted_exactly_when_the_reference_accepts_it(text):
    assert parsed(text) == reference(text)


@given(st.text(alphabet=TRICKY, max_size=14))
def test_number_like_text_is_accepted_exactly_when_the_reference_accepts_it(text):
    assert parsed(text) == reference(text)


@given(st.binary(max_size=16))
def test_any_bytes_as_wsgi_hands_them_over_are_parsed_like_the_reference(raw):
    text = raw.decode("latin-1")  # WSGI's reading of path bytes
    assert parsed(text) == reference(text)


@given(st.integers(0, MAX_UINT31), st.integers(0, 50))
def test_every_value_in_range_reads_back_with_any_leading_zeros(value, zeros):
    assert parse_uint31("0" * zeros + str(value), "score") == value


@given(st.integers(MAX_UINT31 + 1, 10**40) | st.integers(max_value=-1))
def test_every_value_out_of_range_is_refused(value):
    with pytest.raises(InvalidNumber):
        parse_uint31(str(value), "score")


@given(
    st.characters(categories=["Nd"]).filter(lambda c: c not in "0123456789"), st.text("0123456789")
)
def test_a_digit_of_any_other_script_anywhere_makes_the_number_invalid(digit, digits):
    for position in range(len(digits) + 1):
        with pytest.raises(InvalidNumber):
            parse_uint31(digits[:position] + digit + digits[position:], "score")
