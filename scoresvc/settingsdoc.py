"""docs/configuration.md's table of settings, made from their declarations (scoresvc.settings).

`python -m scoresvc.settingsdoc`, from the repository's root, writes the table into the page
between its two markers; tests/unit/test_settingsdoc.py fails while the page holds another.
"""

import sys
from collections.abc import Sequence
from pathlib import Path

from scoresvc.settings import SETTINGS, Setting

PAGE = Path("docs") / "configuration.md"
BEGIN = "<!-- The table below is made from scoresvc/settings.py: python -m scoresvc.settingsdoc -->"
END = "<!-- The table above is made from scoresvc/settings.py. -->"


def table() -> str:
    """Every setting, one row each, in the order `scoresvc -h` lists the flags."""
    rows = ["| flag | variable | default | meaning |", "|---|---|---|---|"]
    rows.extend(_row(declared) for declared in SETTINGS)
    return "\n".join(rows) + "\n"


def _row(declared: Setting) -> str:
    value = f" {declared.metavar}" if declared.metavar else ""
    flags = ", ".join(_code(flag + value) for flag in declared.flags)
    cells = [flags, _code(declared.variable), declared.shown_default(_code), declared.help]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _code(text: str) -> str:
    return f"`{text}`"


def with_table(page: str) -> str:
    """page with the text between its markers replaced by table(); ValueError if it has none."""
    head, begin, rest = page.partition(BEGIN + "\n")
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"the page has no pair of markers, {BEGIN!r} and then {END!r}")
    return f"{head}{begin}\n{table()}\n{end}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the table into the page named (docs/configuration.md by default)."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else PAGE
    page = path.read_text(encoding="utf-8")
    made = with_table(page)
    if made == page:
        print(f"{path}: the table was already as made")
    else:
        path.write_text(made, encoding="utf-8")
        print(f"{path}: the table written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
