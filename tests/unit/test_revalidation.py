"""Entity tags and If-None-Match."""

import pytest

from scoresvc.web.revalidation import entity_tag, none_match

TAG = entity_tag(b"4711=1500", "text")


def test_a_tag_is_a_quoted_string_that_changes_with_the_body_and_the_variant():
    assert TAG.startswith('"') and TAG.endswith('"') and '"' not in TAG[1:-1]
    assert entity_tag(b"4711=1500", "text") == TAG
    assert entity_tag(b"4711=1501", "text") != TAG
    assert entity_tag(b"4711=1500", "json") != TAG
    assert entity_tag(b"", "text") != entity_tag(b"", "json")


@pytest.mark.parametrize(
    "header",
    [
        TAG,
        f"W/{TAG}",
        f'"other", {TAG}',
        f'"other",{TAG},"more"',
        f"  {TAG}  ",
        f", ,{TAG},",
        "*",
        " * ",
    ],
)
def test_if_none_match_naming_the_tag_matches(header):
    assert none_match(header, TAG)


@pytest.mark.parametrize(
    "header",
    [
        "",
        " ",
        '"other"',
        TAG[1:-1],
        TAG[:-2] + '"',
        f'"x{TAG[1:]}',
        f"{TAG}x",
        f"w/{TAG}",
        f"W/ {TAG}x",
        "**",
        "*, " + '"other"',
        '"' + "a" * 10_000 + '"',
    ],
)
def test_if_none_match_without_the_tag_does_not(header):
    assert not none_match(header, TAG)
