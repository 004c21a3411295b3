"""The README and docs/ as a reader who cloned the repository finds them: every link resolves in
it, and everything `scoresvc -h` offers is documented."""

import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

# markdown-it-py comes with the test extra (schemathesis, through rich): a CommonMark parser, so
# that links inside code are not links and links inside tables are.
from markdown_it import MarkdownIt
from markdown_it.token import Token

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
README_MOST_LINES = 150

_HTML_LINK = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)
_BARE_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://|\bwww\.", re.IGNORECASE)
_OPTION = re.compile(r"(?<![\w/-])(--?[A-Za-z][\w-]*)")
_VARIABLE = re.compile(r"\bSCORESVC_[A-Z0-9_]+\b")


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@cache
def tokens(page: Path) -> tuple[Token, ...]:
    """Every token of the page, the inline ones' children included, in order."""
    parser = MarkdownIt("commonmark").enable("table")
    flat: list[Token] = []

    def walk(items: list[Token]) -> None:
        for token in items:
            flat.append(token)
            walk(token.children or [])

    walk(parser.parse(page.read_text(encoding="utf-8")))
    return tuple(flat)


def links(page: Path) -> list[str]:
    """Each link and image target of the page, in order, those in raw HTML included."""
    found = []
    for token in tokens(page):
        if token.type == "link_open":
            found.append(str(token.attrGet("href")))
        elif token.type == "image":
            found.append(str(token.attrGet("src")))
        elif token.type in ("html_inline", "html_block"):
            found.extend(_HTML_LINK.findall(token.content))
    return found


def bare_urls(page: Path) -> list[str]:
    """Text outside code that a renderer such as GitHub's would turn into a link by itself."""
    return [
        token.content
        for token in tokens(page)
        if token.type == "text" and _BARE_URL.search(token.content)
    ]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    items = tokens(page)
    for index, token in enumerate(items):
        if token.type != "heading_open":
            continue
        inline = items[index + 1]
        words = [child for child in inline.children or [] if child.type in ("text", "code_inline")]
        text = "".join(child.content for child in words)
        base = slug(text)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def problem_with(page: Path, target: str) -> str | None:
    """Why target, a link on page, does not resolve inside the repository (None if it does)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or target.startswith("//"):
        return "leaves the repository"
    if parts.query:
        return "has a query string, which no file in the repository answers"
    path = (page.parent / unquote(parts.path)).resolve() if parts.path else page
    if not path.is_relative_to(ROOT):
        return "leaves the repository"
    if not path.exists():
        return f"names {path.relative_to(ROOT)}, which does not exist"
    if parts.fragment:
        if path.suffix != ".md":
            return "has an anchor in a file that is not a page"
        if unquote(parts.fragment) not in anchors(path):
            return f"names #{parts.fragment}, which is no heading of {path.relative_to(ROOT)}"
    return None


@cache
def scoresvc_help() -> str:
    done = subprocess.run(
        [sys.executable, "-m", "scoresvc", "-h"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


@cache
def documented() -> str:
    """Every page of docs/, as one text."""
    return "\n".join(page.read_text(encoding="utf-8") for page in sorted(DOCS.glob("*.md")))


def mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def test_the_pages_exist():
    names = {page.name for page in PAGES}
    assert {"README.md", "api.md", "operating.md", "design.md"} <= names


def test_the_readme_fits_on_a_screen_or_two():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines < README_MOST_LINES


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_link_resolves_inside_the_repository(page):
    problems = [
        f"{target}: {problem}"
        for target in links(page)
        if (problem := problem_with(page, target)) is not None
    ]
    assert problems == []


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_no_page_names_an_address_outside_the_repository(page):
    assert bare_urls(page) == []


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_no_page_points_at_the_workspace_outside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    assert "../shared" not in text and "SPEC.md" not in text


def test_every_image_in_docs_is_shown_on_a_page():
    shown = {
        (page.parent / unquote(urlsplit(target).path)).resolve()
        for page in PAGES
        for target in links(page)
    }
    images = {path.resolve() for path in DOCS.iterdir() if path.suffix in (".png", ".svg")}
    assert images - shown == set()


def test_the_link_checker_finds_what_is_wrong():
    page = DOCS / "README.md"
    assert problem_with(page, "api.md#every-route") is None
    assert problem_with(page, "#scoresvcs-documentation") is None
    assert problem_with(page, "https://example.com/") == "leaves the repository"
    assert problem_with(page, "../../shared/SPEC.md") == "leaves the repository"
    assert "does not exist" in str(problem_with(page, "nothing-here.md"))
    assert "no heading" in str(problem_with(page, "api.md#no-such-heading"))


def test_slugs_are_githubs():
    assert slug("The players' view: ranks, neighbours, pages, JSON, revalidation") == (
        "the-players-view-ranks-neighbours-pages-json-revalidation"
    )
    assert slug("A cluster: replicas on PostgreSQL behind HAProxy") == (
        "a-cluster-replicas-on-postgresql-behind-haproxy"
    )
    assert slug("The `scoresvc` command") == "the-scoresvc-command"


def test_every_flag_of_scoresvc_is_documented():
    # docs/configuration.md, made from the settings' declarations, lists each one.
    flags = sorted(set(_OPTION.findall(scoresvc_help())))
    assert "--port" in flags and "--query-timeout" in flags
    text = documented()
    assert [flag for flag in flags if not mentions(text, flag)] == []


def test_every_variable_scoresvc_names_is_documented():
    variables = sorted(set(_VARIABLE.findall(scoresvc_help())))
    assert "SCORESVC_PORT" in variables
    text = documented()
    assert [variable for variable in variables if not mentions(text, variable)] == []


def test_every_command_of_scoresvc_is_documented():
    commands = re.findall(r"^ {4}(\w+) {2,}", scoresvc_help(), re.MULTILINE)
    assert "migrate" in commands
    text = documented()
    assert [command for command in commands if f"scoresvc {command}" not in text] == []
