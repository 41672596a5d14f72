import logging

import pytest

from noodle.errors import MonitorError
from noodle.metrics import Registry
from noodle.monitor import AlertManager, AlertRule, default_rules


def _feed(am, values, field="cpu"):
    out = []
    for i, v in enumerate(values):
        out.extend(am.evaluate({"t": float(i), field: v}))
    return out


def test_hovering_value_does_not_flap(reg):
    am = AlertManager([AlertRule("cpu_high", "cpu", {"warning": 0.8}, hysteresis=0.05)], reg)
    recorded = [0.5, 0.79, 0.81, 0.79, 0.8, 0.78, 0.81, 0.79, 0.77, 0.76, 0.74, 0.5]
    changes = _feed(am, recorded)
    assert [(a.state, a.severity) for a in changes] == [("firing", "warning"), ("resolved", "warning")]
    assert changes[0].time == 2.0 and changes[1].time == 10.0  # resolved only below 0.8 - 0.05
    assert am.active() == []


def test_escalation_and_deescalation_with_severities(reg):
    am = AlertManager([AlertRule("mem", "mem", {"info": 0.7, "warning": 0.8, "critical": 0.95},
                                 hysteresis=0.02)], reg)
    changes = _feed(am, [0.72, 0.85, 0.97, 0.96, 0.94, 0.9, 0.5], field="mem")
    assert [(a.state, a.severity) for a in changes] == [
        ("firing", "info"), ("firing", "warning"), ("firing", "critical"), ("firing", "warning"),
        ("resolved", "warning")]


def test_for_samples_needs_consecutive_samples(reg):
    am = AlertManager([AlertRule("cpu_high", "cpu", {"warning": 0.8}, for_samples=3)], reg)
    assert _feed(am, [0.9, 0.9, 0.5, 0.9, 0.9]) == []
    assert [a.state for a in am.evaluate({"t": 9.0, "cpu": 0.9})] == ["firing"]


def test_glob_rules_track_each_series(reg):
    am = AlertManager([AlertRule("gpu_mem", "gpu*_mem_frac", {"warning": 0.8})], reg)
    changes = am.evaluate({"t": 1.0, "gpu0_mem_frac": 0.9, "gpu1_mem_frac": 0.1})
    assert [(a.series, a.state) for a in changes] == [("gpu0_mem_frac", "firing")]


def test_delivery_to_callbacks_log_metrics_and_events(reg, caplog):
    got = []
    am = AlertManager(default_rules(0.8), reg)
    am.on_alert(got.append)
    am.on_alert(lambda a: 1 / 0)  # a broken callback must not stop delivery
    with caplog.at_level(logging.WARNING, logger="noodle.monitor"):
        am.evaluate({"t": 1.0, "cpu": 0.2, "mem": 0.85})
        am.evaluate({"t": 2.0, "cpu": 0.2, "mem": 0.86})  # same level: de-duplicated
    assert [(a.rule, a.severity) for a in got] == [("memory_high", "warning")]
    assert any("memory_high" in r.getMessage() for r in caplog.records)
    assert reg.get("noodle_alerts_total").value("warning", "firing") == 1
    assert [e.data["rule"] for e in reg.events("alert")] == ["memory_high"]
    assert am.active()[0].value == pytest.approx(0.86)  # the active alert tracks the latest value


def test_manual_alerts_are_deduplicated_and_resolvable(reg):
    am = AlertManager([], reg)
    a = am.raise_alert("planted", "critical", "test alert")
    b = am.raise_alert("planted", "critical", "test alert", value=2.0)
    assert a is b and len(am.history()) == 1
    assert am.resolve("planted").state == "resolved"
    assert am.active() == [] and am.resolve("planted") is None
    with pytest.raises(MonitorError, match="severity"):
        am.raise_alert("x", "fatal", "bad")


def test_bad_rules_are_rejected():
    with pytest.raises(MonitorError, match="levels"):
        AlertRule("r", "cpu", {"urgent": 0.5})
    with pytest.raises(MonitorError, match="hysteresis"):
        AlertRule("r", "cpu", {"warning": 0.5}, hysteresis=-1)


def test_default_rules_use_the_threshold():
    rules = {r.name: r for r in default_rules(0.6)}
    assert rules["memory_high"].levels["warning"] == 0.6
    assert rules["memory_high"].levels["critical"] > 0.6
    assert rules["gpu_memory_high"].levels["warning"] == 0.6
    assert isinstance(Registry(), Registry)


def test_a_saturated_cpu_is_no_alert_but_memory_pressure_is(reg):
    """A numeric job using every core is healthy; memory about to run out needs a person."""
    am = AlertManager(default_rules(0.8), reg)
    assert _feed(am, [1.0] * 30) == []  # 30 samples of a fully busy CPU
    changes = _feed(am, [0.97, 0.97], field="mem")
    assert [(a.rule, a.severity, a.state) for a in changes] == [("memory_high", "critical", "firing")]


def test_worker_stalled_rule_reads_the_dist_map_gauges(reg):
    """Seconds without a chunk over max(floor, 2 x the longest wait between chunks; half the timeout before
    the first); 0 once no map is active, so the alert resolves however the map ended."""
    from noodle.monitor.alerts import STALL_FIELD, stall_fields

    assert stall_fields(reg, 100.0) == {}  # this process never imported noodle.dist
    active = reg.gauge("noodle_dist_maps_active", "")
    last = reg.gauge("noodle_dist_map_last_chunk_timestamp_seconds", "")
    gap = reg.gauge("noodle_dist_map_chunk_gap_seconds", "")
    timeout = reg.gauge("noodle_dist_map_timeout_seconds", "")
    assert stall_fields(reg, 100.0) == {STALL_FIELD: 0.0}
    active.set(1)
    last.set(1000.0)
    timeout.set(300.0)
    assert stall_fields(reg, 1075.0, floor=60) == {STALL_FIELD: pytest.approx(0.5)}  # no chunk yet: 150 s
    gap.set(45.0)
    assert stall_fields(reg, 1075.0, floor=60) == {STALL_FIELD: pytest.approx(75 / 90)}  # 2 x 45 s
    gap.set(5.0)
    assert stall_fields(reg, 1075.0, floor=60) == {STALL_FIELD: pytest.approx(75 / 60)}  # the floor

    am = AlertManager(default_rules(0.8), reg)
    fired = am.evaluate({"t": 1.0, **stall_fields(reg, 1075.0, floor=60)})
    assert [(a.rule, a.severity, a.state) for a in fired] == [("worker_stalled", "warning", "firing")]
    assert am.evaluate({"t": 2.0, **stall_fields(reg, 1080.0, floor=60)}) == []  # still stalled: one alert
    active.set(0)  # the map ended (failed, say): the gauge of its last chunk no longer matters
    resolved = am.evaluate({"t": 3.0, **stall_fields(reg, 1200.0, floor=60)})
    assert [(a.rule, a.state) for a in resolved] == [("worker_stalled", "resolved")]
