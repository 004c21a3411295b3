"""Settings sit below the layers: reading them loads neither the web nor the storage layer, nor
the metrics library, and the layers take their values from where settings do."""

import subprocess
import sys

# Layers and libraries that reading settings must not load.
OFF_LIMITS = ("scoresvc.storage", "scoresvc.web", "scoresvc.serving", "prometheus_client")

# Prints the modules of OFF_LIMITS that importing scoresvc.settings loaded, one a line.
LOADED_BY_SETTINGS = f"""
import sys
import scoresvc.settings
off_limits = {OFF_LIMITS!r}
print("\\n".join(sorted(
    name for name in sys.modules
    if any(name == top or name.startswith(top + ".") for top in off_limits)
)))
"""


def loaded_by_importing_settings() -> list[str]:
    """The off-limits modules that `import scoresvc.settings` loads in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", LOADED_BY_SETTINGS],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.split()


def test_importing_scoresvc_settings_loads_no_layer_and_no_metrics():
    assert loaded_by_importing_settings() == []
