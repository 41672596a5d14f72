"""The device examples run as a newcomer would run them, and say what they should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["devices_list.py", "devices_accelerator.py"])
def test_example_runs(name: str) -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    if name == "devices_list.py":
        assert proc.stdout.startswith("cpu") and "metal" in proc.stdout
    else:
        assert "computed on:" in proc.stdout
        assert "max |difference| from NumPy: 0.0" in proc.stdout or "cuda:" in proc.stdout
