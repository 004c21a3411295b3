from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    """The indented command lines at the top of the README, before its first heading."""
    top = (ROOT / "README.md").read_text().split("\n## ", 1)[0]
    return [line.strip() for line in top.splitlines() if line.startswith("    ")]


def test_the_readme_starts_with_a_serve_command_and_a_test_command():
    serve, test = readme_commands()
    assert serve.startswith("python3 -m venv .venv") and "--port 8080" in serve
    assert test.startswith("python3 -m venv .venv") and "pytest" in test


def test_ci_runs_the_readme_test_command_word_for_word():
    _serve, test = readme_commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test in ci_lines
