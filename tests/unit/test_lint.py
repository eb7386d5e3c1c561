"""The lint configuration in pyproject.toml holds for the whole tree, 100-column limit included.

`ruff` runs from the same interpreter as the suite (it is a dev dependency), so the rule set
that `make lint` applies is the one `make test` enforces.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_ruff_is_clean_with_the_line_limit_on() -> None:
    """Every rule pyproject selects passes, and E501 (100 columns) is not ignored."""
    config = (REPO / "pyproject.toml").read_text()
    assert "line-length = 100" in config
    assert "E501" not in config, "the 100-column limit must not be switched off"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )
    except FileNotFoundError:  # pragma: no cover - ruff is a dev dependency
        pytest.fail("ruff is not installed in the test interpreter")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
