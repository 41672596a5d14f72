import time

import pytest

from noodle.errors import MonitorError
from noodle.monitor import Sampler


def test_tick_reads_resources_and_runtime_deltas(reg, plant_ops):
    s = Sampler(interval=1.0, registry=reg, gpu=False)
    first = s.tick()
    for key in ("t", "cpu", "proc_cpu", "mem", "mem_used"):
        assert key in first
    assert 0.0 <= first["mem"] <= 1.0 and first["mem_used"] > 0
    plant_ops(reg, n=7)
    reg.counter("noodle_jit_calls_total", "c", ("mode",)).labels("compiled").inc(3)
    second = s.tick()
    assert second["d_ops"] == 7 and second["d_jit_compiled"] == 3 and second["d_jit_interpreted"] == 0
    assert second["disk_read_bps"] >= 0 and second["net_recv_bps"] >= 0
    assert s.last_tick_seconds > 0


def test_interval_below_one_second_is_refused():
    with pytest.raises(MonitorError, match=">= 1.0"):
        Sampler(interval=0.5)


def test_background_thread_records_history_and_alerts(reg):
    from noodle.monitor import AlertRule, Monitor

    # a rule every machine trips: memory used is always > 0 bytes
    m = Monitor(interval=1.0, registry=reg, rules=[AlertRule("mem_any", "mem_used", {"info": 1.0})])
    m.start()
    try:
        deadline = time.time() + 10
        while len(m.history) < 3 and time.time() < deadline:
            time.sleep(0.2)
    finally:
        m.stop()
    assert len(m.history) >= 3
    assert [a.rule for a in m.alerts.active()] == ["mem_any"]
    assert len(m.alerts.history()) == 1  # de-duplicated across ticks
    assert reg.get("noodle_monitor_tick_seconds").labels().count >= 3


@pytest.mark.gpu
def test_gpu_fields_from_nvml(reg):
    s = Sampler(interval=1.0, registry=reg, gpu=True)
    assert s.has_gpu
    sample = s.tick()
    assert 0.0 <= sample["gpu0_util"] <= 1.0 and 0.0 < sample["gpu0_mem_frac"] <= 1.0
    assert sample["gpu0_temp_c"] > 0 and sample["gpu0_power_w"] > 0


def test_no_gpu_fields_without_a_gpu(reg):
    s = Sampler(interval=1.0, registry=reg, gpu=True)
    if s.has_gpu:
        pytest.skip("this machine has a GPU; the gpu-marked test covers it")
    assert not any(k.startswith("gpu") for k in s.tick())
