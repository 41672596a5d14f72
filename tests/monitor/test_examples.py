"""The monitor examples run and print what they promise."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run(name, *args, cwd=None):
    res = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                         timeout=120, cwd=cwd)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_alerts_example():
    out = _run("monitor_alerts.py")
    assert out.count("-> firing cpu_high") == 3 and "-> resolved cpu_high" in out
    assert "cache_thrashing" in out and "cpu_bound" in out


def test_profile_example(tmp_path):
    out = _run("monitor_profile.py", "--out", str(tmp_path / "p"), "--steps", "30")
    assert "samples over" in out and "peak traced memory" in out
    assert (tmp_path / "p.html").is_file() and (tmp_path / "p.speedscope.json").is_file()
    import json

    frames = json.loads((tmp_path / "p.json").read_text())["frames"]
    assert {"fib", "numeric", "workload"} & {f["name"] for f in frames}


def test_dashboard_example(tmp_path):
    out = _run("monitor_dashboard.py", "--seconds", "2", "--port", "0", cwd=tmp_path)
    assert "dashboard: http://127.0.0.1:" in out
