"""docs/configuration.md's table is the one the settings' declarations make."""

from pathlib import Path

import pytest

from scoresvc import settingsdoc
from scoresvc.settings import SETTINGS

PAGE = Path(__file__).resolve().parents[2] / settingsdoc.PAGE


def test_the_configuration_page_holds_the_table_the_settings_make():
    page = PAGE.read_text(encoding="utf-8")
    assert settingsdoc.with_table(page) == page, (
        "docs/configuration.md's table is not the one scoresvc/settings.py makes: "
        "run .venv/bin/python -m scoresvc.settingsdoc from the repository's root"
    )


def test_the_table_has_a_row_for_every_setting_naming_its_variable_and_flags():
    rows = settingsdoc.table().splitlines()[2:]
    assert len(rows) == len(SETTINGS)
    for row, declared in zip(rows, SETTINGS, strict=True):
        assert f"`{declared.variable}`" in row
        assert all(flag in row for flag in declared.flags)


def test_the_table_shows_no_secret_default_and_code_as_code():
    table = settingsdoc.table()
    assert "| `--database URL` | `SCORESVC_DATABASE_URL` | `sqlite://`, in memory |" in table
    assert "| `-p`, `--port` | `SCORESVC_PORT` | `8080` |" in table
    assert "`SCORESVC_ADMIN_TOKEN` | none: the admin API and console are off |" in table


def test_writing_the_table_replaces_only_what_lies_between_the_markers(tmp_path):
    page = tmp_path / "configuration.md"
    stale = f"# Title\n\n{settingsdoc.BEGIN}\n| old |\n{settingsdoc.END}\n\nAfter.\n"
    page.write_text(stale, encoding="utf-8")
    assert settingsdoc.main([str(page)]) == 0
    written = page.read_text(encoding="utf-8")
    assert written.startswith(f"# Title\n\n{settingsdoc.BEGIN}\n\n| flag | variable |")
    assert written.endswith(f"|\n\n{settingsdoc.END}\n\nAfter.\n")
    assert "| old |" not in written
    assert settingsdoc.with_table(written) == written


def test_a_page_without_the_markers_is_refused():
    with pytest.raises(ValueError, match="no pair of markers"):
        settingsdoc.with_table("# Configuration\n\nno table here\n")
