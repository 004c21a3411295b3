"""What some tests need beyond Python (Docker, Chromium): skipped without it, except in CI.

A fresh machine with nothing but Python runs the README's test command to a pass: a test that
needs a program the machine lacks skips, with one line saying what to install. CI installs all
of them and sets SCORESVC_TEST_REQUIRE_ALL=1 (.ci/run), under which such a test fails instead,
and so does any other skip (tests/conftest.py): nothing is left unchecked there.
"""

import os
from typing import NoReturn

import pytest

REQUIRE_ALL_VARIABLE = "SCORESVC_TEST_REQUIRE_ALL"


def everything_required() -> bool:
    """Whether this run must run every test (CI), so that a skip is a failure."""
    return os.environ.get(REQUIRE_ALL_VARIABLE) == "1"


def lacking(what_to_install: str) -> NoReturn:
    """Skip the test for a program this machine lacks, naming what to install; fail in CI."""
    if everything_required():
        pytest.fail(f"{what_to_install} ({REQUIRE_ALL_VARIABLE}=1: nothing may be skipped)")
    pytest.skip(what_to_install)
