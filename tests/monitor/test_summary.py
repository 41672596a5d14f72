import time

import pytest

from noodle.monitor import Summarizer
from noodle.monitor.summary import quantile


def test_quantile_interpolates_inside_buckets():
    bounds = (1.0, 2.0, 4.0)
    assert quantile(0.5, bounds, [0, 10, 0, 0]) == pytest.approx(1.5)
    assert quantile(0.99, bounds, [0, 0, 0, 5]) == 4.0  # +Inf bucket: the last finite bound
    assert quantile(0.5, bounds, [0, 0, 0, 0]) is None


def test_window_and_previous_window(reg, plant_ops):
    s = Summarizer(reg, window=10)
    plant_ops(reg, "add", n=100, seconds=1e-5)
    s._marks.append({**__import__("noodle.monitor.summary", fromlist=["capture"]).capture(reg),
                     "t": time.time() - 12})  # a mark from before the current window
    plant_ops(reg, "add", n=300, seconds=1e-4)
    plant_ops(reg, "mul", n=50, seconds=1e-3)
    out = s.summary(10)
    assert out["ops"]["add/cpu/numpy"]["count"] == 300
    assert out["ops"]["mul/cpu/numpy"]["count"] == 50
    assert 1e-4 <= out["ops"]["add/cpu/numpy"]["p50"] <= 2.5e-4
    prev = out["previous"]
    assert prev["ops"]["add/cpu/numpy"]["count"] == 100
    assert prev["change"]["ops_count"] == pytest.approx(350 / 100 - 1)
    assert prev["change"]["p50_by_op"]["add/cpu/numpy"] > 1  # 10x slower than before


def test_cache_effectiveness_and_programs(reg):
    s = Summarizer(reg, window=60)
    reg.counter("noodle_cache_hits_total", "h", ("tier",)).labels("memory").inc(75)
    reg.counter("noodle_cache_misses_total", "m", ("tier",)).labels("memory").inc(25)
    h = reg.histogram("noodle_jit_program_seconds", "p", ("program", "mode"))
    for _ in range(10):
        h.labels("hot", "compiled").observe(0.01)
        h.labels("cold", "compiled").observe(0.0001)
    out = s.summary()
    assert out["cache"]["hit_ratio"] == pytest.approx(0.75)
    assert [p["program"] for p in out["hottest_programs"]] == ["hot/compiled", "cold/compiled"]
    assert out["previous"] is None


def test_monitor_summary_includes_resources_and_bottlenecks(monitor, plant_ops):
    plant_ops(monitor.registry)
    for _ in range(3):
        monitor.tick()
    out = monitor.summary(60)
    assert out["resources"]["samples"] >= 3 and 0 <= out["resources"]["cpu"]["mean"] <= 1
    assert out["ops"]["add/cpu/numpy"]["count"] == 200
    assert isinstance(out["bottlenecks"], list)
