"""`scoresvc:app`, the object `waitress-serve` loads, is made on first use from the environment."""

import os
import subprocess
import sys

PROBE = """
import scoresvc, pathlib, sys
database = pathlib.Path(sys.argv[1])
assert not database.exists(), "importing the package opened the database"
app = scoresvc.app
assert callable(app) and app is scoresvc.app, type(app)
assert database.exists(), "the app did not use SCORESVC_DATABASE_URL"
print("ok")
"""


def test_importing_opens_nothing_and_app_is_built_from_the_environment(tmp_path):
    database = tmp_path / "scores.db"
    env = {**os.environ, "SCORESVC_DATABASE_URL": f"sqlite:///{database}"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(database)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
