import pytest

from scoresvc.errors import InvalidNumber
from scoresvc.numbers import MAX_UINT31, parse_uint31


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("7", 7),
        ("1500", 1500),
        ("000", 0),
        ("0042", 42),
        ("2147483647", MAX_UINT31),
        ("0002147483647", MAX_UINT31),
        ("0" * 10_000 + "9", 9),
    ],
)
def test_accepts_ascii_decimal_numbers_up_to_2_pow_31_minus_1(text, expected):
    assert parse_uint31(text, "score") == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-1",
        "-0",
        "+5",
        " 5",
        "5 ",
        "\t5",
        "5\n",
        "\n5",
        "1_000",
        "1,000",
        "1.0",
        "1.",
        "1e3",
        "1E3",
        "0x10",
        "0b1",
        "0o7",
        "\u0663",  # ARABIC-INDIC DIGIT THREE: int() accepts it
        "\uff15",  # FULLWIDTH DIGIT FIVE: int() accepts it
        "\u00b2",  # SUPERSCRIPT TWO
        "\u0967\u0968",  # DEVANAGARI DIGITS ONE, TWO
        "abc",
        "12a",
        "NaN",
        "inf",
        "2147483648",
        "4294967296",
        "99999999999999999999",
        "1" * 5_000,  # int() refuses strings this long with ValueError
        "5\x00",
    ],
)
def test_rejects_everything_else(text):
    with pytest.raises(InvalidNumber) as raised:
        parse_uint31(text, "levelid")
    assert raised.value.field == "levelid"
    assert "levelid" in str(raised.value)
