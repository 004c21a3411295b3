"""The soak script (not run in CI at length) still works: a two-second run of it."""

import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"


def test_a_short_soak_reports_rss_at_start_and_end_and_no_non_200_answer():
    finished = subprocess.run(
        [sys.executable, str(SOAK), "--duration", "2", "--rate", "200", "--clients", "4"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "RSS at start:" in finished.stdout
    assert "RSS at end:" in finished.stdout
    assert "non-200 answers: 0" in finished.stdout
