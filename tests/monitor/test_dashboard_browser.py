"""The dashboard in a real headless Chromium: charts draw points from the API, a planted alert shows."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from noodle.monitor import MonitorServer

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]


def _chromium(chromium_path: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile_dir = tmp_path / f"chromium-profile-{len(list(tmp_path.iterdir()))}"
    return subprocess.run([chromium_path, *FLAGS, f"--user-data-dir={profile_dir}", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def live_server(monitor, plant_ops):
    reg = monitor.registry
    hits = reg.counter("noodle_cache_hits_total", "hits", ("tier",)).labels("memory")
    misses = reg.counter("noodle_cache_misses_total", "misses", ("tier",)).labels("memory")
    place = reg.counter("noodle_placement_decisions_total", "placements", ("op", "device"))
    jit = reg.counter("noodle_jit_calls_total", "jit calls", ("mode",))
    monitor.tick()
    for i in range(6):  # a recorded run: ops, cache traffic, placements and JIT calls between ticks
        plant_ops(reg, "add", n=50, seconds=2e-5 * (i + 1))
        plant_ops(reg, "matmul", n=20, seconds=3e-4)
        hits.inc(10 + i)
        misses.inc(5)
        place.labels("add", "cpu").inc(50)
        jit.labels("compiled").inc(30)
        jit.labels("interpreted").inc(3)
        monitor.tick()
    monitor.alerts.raise_alert("planted_alert", "critical", "planted by the browser test")
    srv = MonitorServer(monitor, "127.0.0.1", 0).start()
    yield srv
    srv.stop()


def _attr(dom: str, element_id: str, name: str) -> str:
    m = re.search(rf'<[^>]*id="{element_id}"[^>]*>', dom)
    assert m, f"element {element_id} not in the page"
    v = re.search(rf'{name}="([^"]*)"', m.group(0))
    assert v, f"{element_id} has no {name}"
    return v.group(1)


def test_dashboard_draws_charts_and_shows_planted_alert(chromium_path, live_server, tmp_path):
    url = live_server.url + "/"
    res = _chromium(chromium_path, tmp_path, "--virtual-time-budget=8000", "--dump-dom", url)
    dom = res.stdout
    assert "<body" in dom, f"chromium gave no DOM: {res.stderr[-2000:]}"
    assert "data-error" not in dom.split("<body", 1)[1].split(">", 1)[0]
    for chart in ("chart-cpu", "chart-mem", "chart-oplat", "chart-cache", "chart-place", "chart-jit"):
        assert int(_attr(dom, chart, "data-points")) > 0, f"{chart} drew no points"
    assert int(_attr(dom, "chart-cpu", "data-points")) >= 2 * 7  # two series, seven samples
    assert dom.count('class="pt"') > 30
    assert 'data-rule="planted_alert"' in dom and "planted by the browser test" in dom
    assert 'class="alert sev-critical"' in dom

    shot = tmp_path / "dashboard.png"
    res = _chromium(chromium_path, tmp_path, "--virtual-time-budget=8000", "--window-size=1280,900",
                    f"--screenshot={shot}", url)
    assert shot.is_file() and shot.stat().st_size > 10_000, res.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("NOODLE_TEST_ARTIFACTS")  # where CI keeps screenshots for a human to look at
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "dashboard.png")
