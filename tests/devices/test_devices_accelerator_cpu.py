"""The accelerator's logic that needs no GPU: arguments, selection, limits, the bounded runner."""

from __future__ import annotations

import threading
import time

import pytest

from noodle import metrics
from noodle.devices import (
    DeviceInfo,
    GPUAccelerator,
    effective_limit_bytes,
    get_accelerator,
    gpu_count,
    pick_least_loaded,
    run_bounded,
)
from noodle.errors import ConfigError, DeviceTimeoutError, DeviceUnavailableError

GiB = 1024**3


@pytest.mark.skipif(gpu_count() > 0, reason="a GPU is usable here (covered by the gpu tests)")
def test_constructing_an_accelerator_without_a_gpu_says_why() -> None:
    for make in (GPUAccelerator, lambda: GPUAccelerator(0), lambda: GPUAccelerator("cuda:0"), get_accelerator):
        with pytest.raises(DeviceUnavailableError) as info:
            make()
        assert "device='cpu'" in str(info.value)


def test_accelerator_refused_when_settings_disable_gpu(settings_env) -> None:
    settings_env(NOODLE_SYNTAX_FIXER_GPU_ACCELERATION="false")
    with pytest.raises(DeviceUnavailableError) as info:
        GPUAccelerator()
    assert "NOODLE_SYNTAX_FIXER_GPU_ACCELERATION" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"memory_limit_mb": 0}, "memory_limit_mb"), ({"memory_limit_mb": 1.5}, "memory_limit_mb"),
     ({"memory_fraction": 0.0}, "memory_fraction"), ({"memory_fraction": 1.2}, "memory_fraction"),
     ({"timeout_ms": 0}, "timeout_ms"), ({"timeout_ms": True}, "timeout_ms")],
)
def test_bad_arguments_fail_before_touching_a_device(kwargs, name) -> None:
    with pytest.raises(ConfigError) as info:
        GPUAccelerator(**kwargs)
    assert info.value.name == name


def test_limit_is_the_smaller_of_size_and_fraction() -> None:
    assert effective_limit_bytes(16 * GiB, 4096, 0.8) == 4 * GiB
    assert effective_limit_bytes(4 * GiB, 4096, 0.5) == 2 * GiB
    assert effective_limit_bytes(80 * GiB, 100_000, 1.0) == 80 * GiB


def _gpu(index: int, free_gib: float | None, util: float | None) -> DeviceInfo:
    free = None if free_gib is None else int(free_gib * GiB)
    return DeviceInfo("cuda", index, f"gpu{index}", memory_total=80 * GiB, memory_available=free,
                      utilization_percent=util)


def test_least_loaded_prefers_free_memory_then_low_utilization() -> None:
    assert pick_least_loaded([_gpu(0, 10, 5.0), _gpu(1, 40, 90.0)]) == 1
    assert pick_least_loaded([_gpu(0, 40, 70.0), _gpu(1, 40, 20.0)]) == 1
    assert pick_least_loaded([_gpu(0, 40, 20.0), _gpu(1, 40, 20.0)]) == 0
    assert pick_least_loaded([_gpu(0, None, None), _gpu(1, 1, 99.0)]) == 1
    cpu = DeviceInfo("cpu", None, "cpu")
    assert pick_least_loaded([cpu, _gpu(3, 5, None)]) == 3
    with pytest.raises(DeviceUnavailableError):
        pick_least_loaded([cpu])


def test_bounded_run_returns_the_value_and_raises_the_error() -> None:
    assert run_bounded(lambda: sum(range(10)), 5000, "sum", "cpu") == 45

    def boom() -> None:
        raise ValueError("inside the worker")

    with pytest.raises(ValueError, match="inside the worker"):
        run_bounded(boom, 5000, "boom", "cpu")


def test_bounded_run_times_out_with_a_clear_error_and_a_metric() -> None:
    timeouts = metrics.counter("noodle_gpu_timeouts_total", "", ("device",))
    before = timeouts.value("test:0")
    release = threading.Event()
    started = time.perf_counter()
    with pytest.raises(DeviceTimeoutError) as info:
        run_bounded(lambda: release.wait(30), 100, "slow_matmul", "test:0")
    waited = time.perf_counter() - started
    release.set()
    message = str(info.value)
    assert "slow_matmul" in message and "100 ms" in message and "NOODLE_SYNTAX_FIXER_GPU_TIMEOUT" in message
    assert isinstance(info.value, TimeoutError)
    assert waited < 25  # returned at the timeout, not when the work finished (30 s)
    assert timeouts.value("test:0") == before + 1
    assert any(e.data.get("op") == "slow_matmul" for e in metrics.events("gpu_timeout"))
