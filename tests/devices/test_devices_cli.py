"""``noodle devices`` as a user runs it: a real subprocess of the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

NOODLE = Path(sys.executable).with_name("noodle")


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(NOODLE), "devices", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "160", **env})


def test_devices_prints_a_table_of_devices_and_backends() -> None:
    proc = _run()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "noodle devices" in out and "backends" in out
    for word in ("cpu", "cuda", "rocm", "opencl", "metal", "memory total"):
        assert word in out, word


def test_devices_json_matches_the_python_api() -> None:
    proc = _run("--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["devices"][0]["kind"] == "cpu" and data["devices"][0]["cores_logical"] == os.cpu_count()
    assert set(data["backends"]) == {"cuda", "rocm", "opencl", "metal"}
    assert data["gpu_count"] == len(data["devices"]) - 1 or data["gpu_unavailable_reason"]


def test_devices_says_why_gpu_is_off() -> None:
    proc = _run(NOODLE_DISABLE_GPU="true")
    assert proc.returncode == 0, proc.stderr
    assert "CPU only" in proc.stdout and "NOODLE_DISABLE_GPU" in proc.stdout
