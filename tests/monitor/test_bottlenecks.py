import time

import pytest

from noodle.monitor import detect
from noodle.monitor.bottlenecks import RULES


def _hist(n=20, **fields):
    return [{"t": 1000.0 + i, **{k: (v(i) if callable(v) else v) for k, v in fields.items()}} for i in range(n)]


def _kinds(found):
    return [b.kind for b in found]


def test_quiet_system_has_no_bottlenecks(reg):
    assert detect(_hist(cpu=0.2, mem=0.3), reg) == []
    assert detect([], reg) == []  # absent metrics: every rule stays silent


def test_cpu_bound(reg):
    found = detect(_hist(cpu=lambda i: 0.95 + (i % 2) * 0.04, mem=0.3), reg)
    assert _kinds(found) == ["cpu_bound"]
    b = found[0]
    assert 0.7 < b.severity <= 1.0 and "CPU averaged" in b.evidence and "jit" in b.recommendation


def test_memory_bound_severity_grows_with_pressure(reg):
    mild = detect(_hist(cpu=0.1, mem=0.87), reg)
    severe = detect(_hist(cpu=0.1, mem=0.99), reg)
    assert _kinds(mild) == ["memory_bound"] and _kinds(severe) == ["memory_bound"]
    assert severe[0].severity > mild[0].severity


def test_gpu_idle_while_cpu_busy(reg):
    found = detect(_hist(cpu=0.9, mem=0.3, gpu0_util=0.02, gpu0_mem_frac=0.1), reg)
    assert "gpu_idle_cpu_busy" in _kinds(found)
    assert "gpu_idle_cpu_busy" not in _kinds(detect(_hist(cpu=0.9, mem=0.3, gpu0_util=0.9), reg))


def test_transfer_bound_from_metrics(reg, plant_ops):
    plant_ops(reg, n=100, seconds=1e-4)  # 10 ms of op time
    reg.counter("noodle_transfer_bytes_total", "bytes", ("direction",)).labels("h2d").inc(2e8)  # ~17 ms copies
    found = detect(_hist(cpu=0.3, mem=0.3), reg)
    assert _kinds(found) == ["transfer_bound"]
    assert "MB moved" in found[0].evidence


def test_cache_thrashing(reg):
    reg.counter("noodle_cache_hits_total", "h", ("tier",)).labels("memory").inc(50)
    reg.counter("noodle_cache_misses_total", "m", ("tier",)).labels("memory").inc(950)
    reg.counter("noodle_cache_evictions_total", "e", ("tier",)).labels("memory").inc(900)
    found = detect([], reg)
    assert _kinds(found) == ["cache_thrashing"] and found[0].severity > 0.8
    # many misses but no evictions is a cold cache, not thrashing
    reg2 = type(reg)()
    reg2.counter("noodle_cache_misses_total", "m", ("tier",)).labels("memory").inc(950)
    reg2.counter("noodle_cache_hits_total", "h", ("tier",)).labels("memory").inc(50)
    assert detect([], reg2) == []


def test_compile_storm_from_history_deltas(reg):
    hist = _hist(n=60, cpu=0.3, mem=0.3, d_jit_compiles=1.0, d_jit_compile_seconds=0.2)
    found = detect(hist, reg)
    assert _kinds(found) == ["compile_storm"]
    assert "JIT compiles" in found[0].evidence


def test_interpreted_hot_program(reg):
    h = reg.histogram("noodle_jit_program_seconds", "p", ("program", "mode"))
    for _ in range(200):
        h.labels("softmax", "interpreted").observe(1e-3)
        h.labels("axpy", "compiled").observe(1e-5)
    found = detect([], reg)
    assert _kinds(found) == ["interpreted_hot_program"]
    assert "softmax" in found[0].evidence and found[0].severity > 0.9


def test_findings_sorted_by_severity_and_serializable(reg):
    found = detect(_hist(cpu=0.99, mem=0.88), reg)
    assert _kinds(found) == ["cpu_bound", "memory_bound"]
    assert found[0].severity >= found[1].severity
    assert set(found[0].to_json()) == {"kind", "severity", "evidence", "recommendation"}


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_every_rule_tolerates_absent_metrics(rule, reg):
    from noodle.monitor.bottlenecks import Context

    assert rule(Context([], {}, reg, 60.0)) is None


def test_bottleneck_alert_resolves_when_the_bottleneck_is_gone(monitor):
    from noodle.monitor.core import BOTTLENECK_EVERY

    monitor.alerts.rules = []  # only the bottleneck path raises here, not the memory_high rule

    def feed(mem: float) -> None:
        for _ in range(BOTTLENECK_EVERY):
            monitor._on_sample({"t": time.time(), "cpu": 0.2, "mem": mem})

    feed(0.99)  # the sampler callback's path: a check runs on the tenth tick
    assert [(a.rule, a.state) for a in monitor.alerts.active() if a.rule.startswith("bottleneck_")] == [
        ("bottleneck_memory_bound", "firing")]
    monitor.history = type(monitor.history)(retention=3600)  # the 99 % peak leaves the window
    feed(0.05)  # memory is fine again: no memory_bound finding any more
    assert not [a for a in monitor.alerts.active() if a.rule.startswith("bottleneck_")]
    resolved = [a for a in monitor.alerts.history() if a.rule == "bottleneck_memory_bound"]
    assert [a.state for a in resolved] == ["firing", "resolved"]


def test_a_saturated_cpu_is_a_bottleneck_not_an_alert(monitor):
    from noodle.monitor.core import BOTTLENECK_EVERY

    for _ in range(3 * BOTTLENECK_EVERY):
        monitor._on_sample({"t": time.time(), "cpu": 1.0, "mem": 0.2})
    assert [b.kind for b in monitor.bottlenecks(60)][:1] == ["cpu_bound"]
    assert monitor.alerts.active() == [] and monitor.alerts.history() == []
