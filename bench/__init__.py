"""scoresvc's benchmark suite: `python -m bench` (see the README's Performance section)."""
