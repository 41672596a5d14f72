"""The monitor examples run and print what they promise."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run(name, *args, cwd=None, stderr=None):
    res = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                         timeout=120, cwd=cwd)
    assert res.returncode == 0, res.stderr[-3000:]
    if stderr is not None:
        stderr.append(res.stderr)
    return res.stdout


def test_alerts_example_prints_exactly_what_it_promises():
    err: list[str] = []
    out = _run("monitor_alerts.py", stderr=err)
    alert_lines = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("->")]
    assert alert_lines == ["-> firing memory_high [warning] mem=0.81", "-> resolved memory_high [warning] mem=0.74"]
    assert "alerts raised: 1\n" in out and "active now: []" in out
    assert "alert" not in err[0]  # the alert is not repeated on stderr
    bottlenecks = out.split("bottlenecks:", 1)[1]
    assert "cache_thrashing" in bottlenecks and "cpu_bound" in bottlenecks
    promised = (EXAMPLES / "monitor_alerts.py").read_text().split('"""')[1]
    for line in alert_lines:  # the docstring shows the same lines
        assert line in promised


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
