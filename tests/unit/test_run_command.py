"""`noodle run`: runs a script with noodle active and prints the report at exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _noodle(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", "noodle.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


def test_run_example_prints_report() -> None:
    out = _noodle("run", str(ROOT / "examples" / "dense_layers.py"), "--batches", "2", "--batch-size", "256")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "MLP: 2 batches" in out.stdout and "CG: n=800" in out.stdout
    assert "noodle report" in out.stdout
    assert "matmul" in out.stdout and "cpu" in out.stdout
    assert "bytes moved between devices" in out.stdout


def test_run_failing_script_reports_and_returns_nonzero(tmp_path) -> None:
    script = tmp_path / "boom.py"
    script.write_text("import numpy as np, noodle as nd\nnd.add(np.ones(3), np.ones(3))\nraise RuntimeError('boom')\n")
    out = _noodle("run", str(script))
    assert out.returncode == 1
    assert "RuntimeError: boom" in out.stderr
    assert "noodle report" in out.stdout and "add" in out.stdout


def test_run_passes_arguments_and_exit_code(tmp_path) -> None:
    script = tmp_path / "args.py"
    script.write_text("import sys\nprint('ARGS', sys.argv[1:])\nsys.exit(3)\n")
    out = _noodle("run", str(script), "x", "--flag")
    assert out.returncode == 3
    assert "ARGS ['x', '--flag']" in out.stdout


def test_run_missing_script_is_a_clear_error(tmp_path) -> None:
    out = _noodle("run", str(tmp_path / "nope.py"))
    assert out.returncode == 2 and "no such script" in out.stderr
