"""Placement: the cost model's choices on synthetic device rates, explain(), calibration caching."""

from __future__ import annotations

import json

import numpy as np
import pytest

import noodle as nd
from noodle.ir.ops import OPS
from noodle.placement import calibrate
from noodle.placement.model import DeviceRates, estimate, op_shape

CPU = DeviceRates(bandwidth=30e9, flops=8e9, transcendental=1e9, matmul_flops={"float64": 90e9, "float32": 180e9},
                  call_overhead=2e-6)
GPU = DeviceRates(bandwidth=3e12, flops=30e12, transcendental=1e12, matmul_flops={"float64": 50e12, "float32": 60e12},
                  call_overhead=10e-6, h2d=20e9, d2h=20e9)


def _shape(op, shapes, on_gpu, dtype="float64"):
    isz = np.dtype(dtype).itemsize
    if op == "matmul":
        out = shapes[0][0] * shapes[1][1]
    else:
        out = int(np.prod(np.broadcast_shapes(*shapes)))
    return op_shape(OPS[op], shapes, [isz] * len(shapes), on_gpu, out, isz, dtype)


def test_big_matmul_goes_to_gpu_even_with_transfer() -> None:
    s = _shape("matmul", [(4000, 4000), (4000, 4000)], [False, False])
    costs = estimate(CPU, GPU, s)
    assert costs["gpu"] < costs["cpu"]


def test_add_on_host_data_stays_on_cpu_because_of_transfer() -> None:
    s = _shape("add", [(10_000_000,), (10_000_000,)], [False, False])
    costs = estimate(CPU, GPU, s)
    assert costs["cpu"] < costs["gpu"]


def test_add_on_device_data_stays_on_gpu() -> None:
    s = _shape("add", [(10_000_000,), (10_000_000,)], [True, True])
    costs = estimate(CPU, GPU, s)
    assert costs["gpu"] < costs["cpu"]


def test_tiny_ops_prefer_cpu() -> None:
    s = _shape("add", [(16,), (16,)], [False, False])
    costs = estimate(CPU, GPU, s)
    assert costs["cpu"] < costs["gpu"]


def test_explain_without_gpu_names_the_reason() -> None:
    d = nd.explain("matmul", np.ones((100, 100)), np.ones((100, 100)))
    assert d.device == "cpu"
    assert "GPU" in d.reason
    assert d.costs["cpu"] > 0
    assert "matmul -> cpu" in str(d)
    d2 = nd.explain("add", np.ones(10), np.ones(10), device="cpu")
    assert d2.reason.startswith("device='cpu'")


def test_explain_rejects_unknown_op() -> None:
    with pytest.raises(nd.errors.NoodleError, match="unknown op"):
        nd.explain("frobnicate", np.ones(3))


def test_disable_gpu_reason(monkeypatch) -> None:
    from noodle import config
    from noodle.devices import refresh

    monkeypatch.setenv("NOODLE_DISABLE_GPU", "true")
    config.reload()
    refresh()
    try:
        d = nd.explain("add", np.ones(10), np.ones(10))
        assert d.device == "cpu" and "NOODLE_DISABLE_GPU" in d.reason
    finally:
        monkeypatch.delenv("NOODLE_DISABLE_GPU")
        config.reload()
        refresh()


def test_calibration_cached_and_redone_when_hardware_changes(tmp_path, monkeypatch) -> None:
    from noodle import config

    monkeypatch.setenv("NOODLE_CACHE_DIR", str(tmp_path))
    config.reload()
    calibrate.reset()
    try:
        cal = calibrate.load_or_measure()
        path = tmp_path / "calibration.json"
        assert path.is_file()
        assert cal.cpu.bandwidth > 1e8 and cal.cpu.matmul_flops["float64"] > 1e8
        # A second process-level load reads the file instead of measuring.
        calibrate.reset()
        data = json.loads(path.read_text())
        data["cpu"]["bandwidth"] = 12345.0
        path.write_text(json.dumps(data))
        assert calibrate.load_or_measure().cpu.bandwidth == 12345.0
        # Different hardware: the fingerprint no longer matches, so it is measured again.
        calibrate.reset()
        data["fingerprint"] = "some other machine"
        path.write_text(json.dumps(data))
        assert calibrate.load_or_measure().cpu.bandwidth != 12345.0
        # A corrupt file is measured again, not an error.
        calibrate.reset()
        path.write_text("{not json")
        assert calibrate.load_or_measure().cpu.bandwidth > 1e8
    finally:
        monkeypatch.undo()
        config.reload()
        calibrate.reset()
