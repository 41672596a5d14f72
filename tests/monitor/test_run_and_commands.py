"""``noodle run --profile/--dashboard``, ``noodle serve`` and ``noodle summary`` as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from noodle.monitor import History, Monitor, run_hooks

NOODLE = [sys.executable, "-m", "noodle.cli"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["NOODLE_SYNTAX_FIXER_MONITORING_INTERVAL"] = "1"
    env["NOODLE_CACHE_DIR"] = str(tmp_path / "cache")
    return env


def test_run_hooks_start_stop_in_process(tmp_path, reg):
    mon = Monitor(interval=1.0, registry=reg)
    handle = run_hooks.start(profile=True, dashboard=True, host="127.0.0.1", port=0,
                             profile_dir=str(tmp_path), monitor=mon)
    assert run_hooks.current() is handle
    with urllib.request.urlopen(handle.dashboard_url + "/api/status", timeout=10) as resp:
        assert json.loads(resp.read())["sampling"] is True
    mon.alerts.raise_alert("planted", "warning", "raised during the run")
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        sum(i for i in range(1000))
    info = handle.stop()
    assert handle.stop() is info  # idempotent
    assert run_hooks.current() is None and not mon.running
    assert {Path(p).suffix for p in info["profile_paths"].values()} == {".html", ".json"}
    assert all(Path(p).is_file() for p in info["profile_paths"].values())
    assert "planted" in [a["rule"] for a in info["alerts"]]  # (a busy CPU may add cpu_high: real readings)
    assert isinstance(info["bottlenecks"], list) and "ops" in info["summary"]
    assert info["memory_peak_bytes"] > 0
    assert reg.events("monitor_run")[-1].data["alerts"] == info["alerts"]


def test_report_section_prints_summary_alerts_and_bottlenecks(reg):
    from rich.console import Console

    from noodle.report import section_monitor

    assert section_monitor.render(reg) is None  # monitoring did not run: no section
    reg.emit("alert", rule="cpu_high", series="cpu", severity="warning", state="firing", value=0.91,
             threshold=0.8, message="CPU utilisation is high", time=time.time())
    reg.emit("monitor_run", profile_paths={"html": "/tmp/p.html"}, summary={"ops": {}, "resources": {}},
             bottlenecks=[{"kind": "cpu_bound", "severity": 0.8, "evidence": "CPU averaged 95%",
                           "recommendation": "use @nd.jit"}], alerts=[], memory_peak_bytes=None)
    console = Console(record=True, width=150)
    console.print(section_monitor.render(reg))
    text = console.export_text()
    assert "cpu_high" in text and "cpu_bound" in text and "CPU averaged 95%" in text and "/tmp/p.html" in text


def test_noodle_run_with_profile_and_dashboard(tmp_path):
    script = tmp_path / "work.py"
    script.write_text(
        "import json, urllib.request\n"
        "from noodle.monitor import run_hooks\n"
        "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"
        "import time\nend = time.perf_counter() + 0.5\n"
        "while time.perf_counter() < end:\n    fib(18)\n"
        "url = run_hooks.current().dashboard_url\n"
        "print('STATUS', json.loads(urllib.request.urlopen(url + '/api/status').read())['sampling'])\n"
    )
    res = subprocess.run([*NOODLE, "run", "--profile", "--dashboard", "--port", "0", str(script)],
                         cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "STATUS True" in res.stdout
    assert "Monitoring" in res.stdout
    htmls = list((tmp_path / "noodle-profiles").glob("profile-*.html"))
    assert htmls and "fib" in htmls[0].read_text()


def test_noodle_serve_and_summary(tmp_path):
    hist_file = tmp_path / "h.json"
    err_file = (tmp_path / "serve.err").open("w+")   # a file, not a pipe nobody drains: never blocks the server
    proc = subprocess.Popen([*NOODLE, "serve", "--port", "0", "--interval", "1", "--history", str(hist_file)],
                            cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=err_file,
                            text=True)
    try:
        line = proc.stdout.readline()
        assert "dashboard at http://127.0.0.1:" in line, (tmp_path / "serve.err").read_text() or line
        url = line.split("dashboard at ", 1)[1].split("/ ", 1)[0].rstrip("/")
        time.sleep(2.5)
        res = subprocess.run([*NOODLE, "summary", "--url", url, "--json", "--window", "30"],
                             env=_env(tmp_path), capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        summary = json.loads(res.stdout)
        assert summary["resources"]["samples"] >= 2
    finally:
        proc.send_signal(2)  # SIGINT: the server saves its history and exits
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)   # the server dumps its threads' stacks to stderr
            time.sleep(1)
            proc.kill()
            proc.wait(timeout=10)
            err = (tmp_path / "serve.err").read_text()
            pytest.fail(f"noodle serve did not exit within 20 s of SIGINT; its stderr:\n{err[-6000:]}")
        finally:
            err_file.close()
    hist = History.load(hist_file)
    assert len(hist) >= 2
    res = subprocess.run([*NOODLE, "summary", "--history", str(hist_file)], env=_env(tmp_path),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "CPU mean" in res.stdout, res.stderr


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_noodle_serve_stops_on_a_signal_even_when_started_ignoring_sigint(tmp_path, sig):
    """A server started with `&` from a script inherits SIGINT ignored (POSIX); it must still stop on
    SIGINT (and SIGTERM) and save its history."""
    hist_file = tmp_path / "h.json"
    with (tmp_path / "serve.err").open("w+") as err:
        proc = subprocess.Popen([*NOODLE, "serve", "--port", "0", "--interval", "1", "--history", str(hist_file)],
                                cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=err, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        try:
            assert "dashboard at" in proc.stdout.readline()
            time.sleep(1.5)
            proc.send_signal(getattr(signal, sig))
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert hist_file.is_file() and len(History.load(hist_file)) >= 1


@pytest.mark.parametrize("argv, words", [
    (["summary", "--url", "http://127.0.0.1:9"], "cannot reach the monitor API"),
    (["summary", "--history", "/nonexistent/h.json"], "does not exist"),
    (["summary", "--window", "0"], "--window"),
    (["serve", "--interval", "0.1", "--port", "0"], ">= 1"),
])
def test_command_errors_are_clear(argv, words, tmp_path):
    res = subprocess.run([*NOODLE, *argv], env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and words in res.stderr


CPU_BOUND = (
    "import time\n"
    "import numpy as np\n"
    "a = np.random.default_rng(0).random((300, 300))\n"
    "end = time.perf_counter() + 3.5\n"
    "while time.perf_counter() < end:\n"
    "    a = np.tanh(a @ a.T / 300.0)\n"
    "print('done')\n"
)


def _noodle_run(tmp_path: Path, script: Path, **env_extra: str) -> subprocess.CompletedProcess:
    env = _env(tmp_path)
    env.update(env_extra)
    return subprocess.run([*NOODLE, "run", str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("which", ["cpu_bound_script", "examples/dense_layers.py"])
def test_noodle_run_of_a_busy_healthy_job_fires_no_alert(tmp_path, which):
    if which == "cpu_bound_script":
        script = tmp_path / "busy.py"
        script.write_text(CPU_BOUND)
    else:
        script = Path(__file__).resolve().parents[2] / which
    res = _noodle_run(tmp_path, script)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert "firing" not in out and "alerts raised" not in out.replace("no alerts raised", ""), out[-3000:]
    assert "no alerts raised" in res.stdout


def test_noodle_run_still_alerts_on_memory_pressure(tmp_path):
    """A threshold below what this machine already uses is a real memory-pressure condition for the
    rule: it fires, and the report lists it."""
    script = tmp_path / "busy.py"
    script.write_text(CPU_BOUND)
    res = _noodle_run(tmp_path, script, NOODLE_SYNTAX_FIXER_ALERT_THRESHOLD="0.001")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "alert firing memory_high" in res.stderr
    assert "alerts raised" in res.stdout and "memory_high" in res.stdout
    assert "cpu_high" not in res.stdout + res.stderr
