"""One version: setup.cfg's, which the installed package reports and CHANGELOG.md opens with."""

import configparser
import re
from pathlib import Path

from scoresvc.serving.cli import version

ROOT = Path(__file__).resolve().parents[2]


def declared_version() -> str:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    return setup["metadata"]["version"]


def test_the_installed_package_reports_setup_cfgs_version():
    assert version() == declared_version(), "the installed metadata is stale: pip install -e ."


def test_the_changelog_opens_with_this_version():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    newest = re.search(r"^## (\S+)", changelog, re.MULTILINE)
    assert newest is not None and newest.group(1) == declared_version()
