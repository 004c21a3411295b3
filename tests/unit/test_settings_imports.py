"""Settings sit below the layers: reading them loads neither the web nor the storage layer, nor
the metrics library, and the layers take their values from where settings do."""

import subprocess
import sys

import pytest

from scoresvc import settingvalues
from scoresvc.storage import sqlite

# Layers and libraries that reading settings must not load.
OFF_LIMITS = ("scoresvc.storage", "scoresvc.web", "scoresvc.serving", "prometheus_client")

# Prints the modules of OFF_LIMITS that importing scoresvc.settings loaded, one a line.
LOADED_BY_SETTINGS = f"""
import sys
{{prelude}}
import scoresvc.settings
off_limits = {OFF_LIMITS!r}
print("\\n".join(sorted(
    name for name in sys.modules
    if any(name == top or name.startswith(top + ".") for top in off_limits)
)))
"""
# The package scoresvc without its __init__ run: a stand-in that only knows where its modules are.
WITHOUT_THE_PACKAGES_INIT = """
import importlib.util, types
spec = importlib.util.find_spec("scoresvc")
package = types.ModuleType("scoresvc")
package.__path__ = list(spec.submodule_search_locations)
sys.modules["scoresvc"] = package
"""


def loaded_by_importing_settings(prelude: str = "") -> list[str]:
    """The off-limits modules that `import scoresvc.settings` loads in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", LOADED_BY_SETTINGS.format(prelude=prelude)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.split()


def test_the_settings_module_imports_no_layer_and_no_metrics():
    assert loaded_by_importing_settings(prelude=WITHOUT_THE_PACKAGES_INIT) == []


@pytest.mark.xfail(
    strict=True,
    reason="scoresvc/__init__.py imports scoresvc.application (and so every layer) at once; "
    "ScoreApp and create_app must be looked up on first use, as app is, for this to pass",
)
def test_importing_scoresvc_settings_loads_no_layer_and_no_metrics():
    assert loaded_by_importing_settings() == []


def test_the_sqlite_module_knows_the_synchronous_levels_and_memory_urls_settings_do():
    # sqlite.py keeps copies of its own; until it imports them from settingvalues, they must
    # agree, or a level settings accept would stop the start.
    assert sqlite.SYNCHRONOUS_LEVELS == settingvalues.SYNCHRONOUS_LEVELS
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:////tmp/x.db", "postgresql://h/d"):
        assert sqlite.is_memory_url(url) == settingvalues.is_memory_url(url)
