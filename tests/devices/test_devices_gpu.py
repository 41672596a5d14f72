"""GPUAccelerator on a real CUDA GPU (marked ``gpu``: skipped where none exists)."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

from noodle import metrics
from noodle.devices import (
    GPUAccelerator,
    array_device,
    backend_status,
    cupy_module,
    devices,
    get_accelerator,
    gpu_count,
    gpu_infos,
    is_gpu_array,
    parse_device,
    pick_least_loaded,
)
from noodle.errors import DeviceMemoryError, DeviceTimeoutError, DeviceUnavailableError

pytestmark = pytest.mark.gpu
MB = 1024 * 1024


@pytest.fixture
def cp():
    module = cupy_module()
    assert module is not None
    return module


@pytest.fixture
def acc():
    accelerator = GPUAccelerator(0, memory_limit_mb=256)
    yield accelerator
    gc.collect()
    accelerator.free_cached()
    accelerator.close()


def test_gpus_are_detected_with_their_properties() -> None:
    assert backend_status()["cuda"].available
    assert gpu_count() >= 1
    gpus = devices()[1:]
    assert len(gpus) == gpu_count()
    for i, d in enumerate(gpus):
        assert d.kind == "cuda" and d.index == i and d.id == f"cuda:{i}"
        assert d.name and d.compute_capability and "." in d.compute_capability
        assert d.memory_total > 0 and 0 <= d.memory_available <= d.memory_total


def test_device_strings_and_array_location(cp) -> None:
    assert parse_device("gpu") == ("cuda", None)
    assert parse_device("cuda:0") == ("cuda", 0)
    with pytest.raises(DeviceUnavailableError):
        parse_device(f"cuda:{gpu_count()}")
    x = cp.ones(4)
    assert is_gpu_array(x) and array_device(x) == "cuda:0"


def test_round_trip_and_transfer_bytes(acc, cp) -> None:
    transfers = metrics.counter("noodle_transfer_bytes_total", "", ("direction",))
    h2d, d2h = transfers.value("h2d"), transfers.value("d2h")
    host = np.random.default_rng(0).standard_normal((300, 200))
    dev = acc.to_device(host)
    assert is_gpu_array(dev) and array_device(dev) == "cuda:0"
    assert acc.to_device(dev) is dev  # already there: no copy
    back = acc.to_host(dev)
    assert isinstance(back, np.ndarray) and np.array_equal(back, host)
    assert transfers.value("h2d") == h2d + host.nbytes
    assert transfers.value("d2h") == d2h + host.nbytes


def test_memory_limit_is_enforced(acc, cp) -> None:
    assert acc.memory_limit_bytes == 256 * MB
    small = acc.empty(64 * MB // 8)  # 64 MB of float64 fits
    with pytest.raises(DeviceMemoryError) as info:
        acc.empty(512 * MB // 8)
    assert "NOODLE_SYNTAX_FIXER_GPU_MEMORY_LIMIT" in str(info.value)
    with pytest.raises(DeviceMemoryError):
        acc.run(lambda: cp.zeros(512 * MB // 8))
    del small


def test_allocations_and_frees_are_accounted(acc, cp) -> None:
    gauge = metrics.gauge("noodle_gpu_memory_bytes", "", ("device",))
    held_before = gauge.value("cuda:0")
    before = acc.memory_stats()
    x = acc.to_device(np.ones(1_000_000))
    y = acc.run(lambda a: a * 2, x)
    stats = acc.memory_stats()
    assert stats["allocations"] == before["allocations"] + 2
    assert stats["in_use_bytes"] == before["in_use_bytes"] + 16_000_000
    assert stats["peak_bytes"] >= stats["in_use_bytes"]
    assert gauge.value("cuda:0") == held_before + 16_000_000
    assert float(y.sum()) == 2_000_000.0
    del x, y
    gc.collect()
    after = acc.memory_stats()
    assert after["frees"] == before["frees"] + 2
    assert after["in_use_bytes"] == before["in_use_bytes"]
    assert gauge.value("cuda:0") == held_before


def test_gpu_work_past_the_timeout_raises(acc, cp) -> None:
    spin = cp.RawKernel(r"""
    extern "C" __global__ void spin(long long cycles) {
        long long start = clock64();
        while (clock64() - start < cycles) { }
    }""", "spin")

    def busy() -> None:
        spin((1,), (1,), (np.int64(4_000_000_000),))  # a few seconds of one busy thread

    with pytest.raises(DeviceTimeoutError) as info:
        acc.run(busy, timeout_ms=200, op="spin")
    assert "spin" in str(info.value) and "200 ms" in str(info.value)
    acc.synchronize()  # let the kernel finish before the next test
    assert acc.run(lambda: cp.arange(3).sum(), timeout_ms=30_000).item() == 3


def test_auto_picks_the_least_loaded_gpu() -> None:
    expected = pick_least_loaded(gpu_infos())
    with GPUAccelerator() as chosen:
        assert chosen.index == expected
    assert get_accelerator() is get_accelerator()


def test_twenty_threads_share_one_accelerator(cp) -> None:
    shared = get_accelerator(0)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((128, 128))
    shared_a = shared.to_device(a)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            local = np.random.default_rng(seed).standard_normal((128, 128))
            for _ in range(20):
                d = shared.to_device(local)
                out = shared.to_host(shared.run(cp.matmul, shared_a, d))
                np.testing.assert_allclose(out, a @ local, rtol=1e-10, atol=1e-10)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert shared.memory_stats()["allocations"] >= 1 + 20 * 20 * 2
