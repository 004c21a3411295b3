"""Strict parsing of the 31-bit unsigned numbers the contract speaks in."""

import re

from scoresvc.errors import InvalidNumber

MAX_UINT31 = 2**31 - 1

# [0-9], not \d: \d and int() also accept other scripts' digits, signs, spaces and underscores.
_ASCII_DIGITS = re.compile(r"[0-9]+\Z")
_MAX_SIGNIFICANT_DIGITS = len(str(MAX_UINT31))


def parse_uint31(text: str, field: str) -> int:
    """Return text as an int if it is ASCII digits only and at most 2**31 - 1."""
    if not _ASCII_DIGITS.match(text):
        raise InvalidNumber(field)
    # Leading zeros are allowed in any number; dropping them first keeps int() away from
    # huge strings (it refuses over 4300 digits and is quadratic before that).
    significant = text.lstrip("0") or "0"
    if len(significant) > _MAX_SIGNIFICANT_DIGITS:
        raise InvalidNumber(field)
    value = int(significant)
    if value > MAX_UINT31:
        raise InvalidNumber(field)
    return value
