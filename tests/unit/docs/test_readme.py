"""The README documents what the code does: its settings table is generated from Settings."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_readme_settings_table_matches_the_settings_model():
    result = subprocess.run(
        [sys.executable, "scripts/settings_table.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_readme_starts_with_the_two_commands():
    head = (REPO / "README.md").read_text().split("\n## ", 1)[0]
    assert "make run" in head and "make test" in head
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci
