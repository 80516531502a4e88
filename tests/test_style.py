"""The code follows the one formatter and linter set in pyproject.toml (ruff)."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]])
def test_ruff_is_clean(args):
  run = subprocess.run(
    [sys.executable, "-m", "ruff", *args, "--no-cache"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  assert run.returncode == 0, f"ruff {' '.join(args)}:\n{run.stdout[-3000:]}{run.stderr[-1000:]}"
