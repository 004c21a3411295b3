import pytest

from scoresvc.web.querystring import parameter_values, redact


@pytest.mark.parametrize(
    ("query", "values"),
    [
        ("", []),
        ("sessionkey=abc", ["abc"]),
        ("x=1&sessionkey=abc&y=2", ["abc"]),
        ("sessionkey=", [""]),
        ("sessionkey", [""]),
        ("sessionkey=a&sessionkey=b", ["a", "b"]),
        ("session%6Bey=abc", ["abc"]),
        ("sessionkey=a%2Db", ["a-b"]),
        ("sessionkeys=abc&xsessionkey=d", []),
    ],
)
def test_parameter_values_finds_every_value_of_the_name(query, values):
    assert parameter_values(query, "sessionkey") == values


@pytest.mark.parametrize(
    ("query", "logged"),
    [
        ("sessionkey=SECRET", "sessionkey=[redacted]"),
        ("a=1&sessionkey=SECRET&b=2", "a=1&sessionkey=[redacted]&b=2"),
        ("sessionkey=SECRET&sessionkey=OTHER", "sessionkey=[redacted]&sessionkey=[redacted]"),
        ("session%6Bey=SECRET", "session%6Bey=[redacted]"),
        ("a=1", "a=1"),
        ("sessionkey=", "sessionkey="),
    ],
)
def test_redact_hides_every_value_of_the_name(query, logged):
    assert redact(query, "sessionkey") == logged
