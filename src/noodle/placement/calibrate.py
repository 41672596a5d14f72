"""Measure this machine's device throughputs once, cache them on disk.

Why measure: published peak numbers say little about what NumPy, Numba or
CuPy reach on *this* machine (a 2-vCPU VM under contention, a shared GPU). A
few short micro-benchmarks (well under a second on the CPU) give the rates the
cost model needs. The result is keyed by a hardware fingerprint, so it is
redone automatically when the hardware or the numeric libraries change.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from noodle.config import get_settings
from noodle.placement.costs import BackendRates
from noodle.placement.model import DeviceRates

log = logging.getLogger("noodle.placement")

CALIBRATION_VERSION = 2


@dataclass
class Calibration:
    """Rates per device, the measured Numba-vs-NumPy ratio for binary elementwise ops, and the
    per-backend region rates (``backends``, probed lazily the first time placement considers
    a backend: see :func:`backend_rates`)."""

    fingerprint: str
    cpu: DeviceRates
    gpus: dict[int, DeviceRates] = field(default_factory=dict)
    numba_binary_speedup: float | None = None   # >1: Numba's parallel loop beats NumPy at >= 1e5
    measured_at: float = 0.0
    backends: dict[str, BackendRates] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": CALIBRATION_VERSION, "fingerprint": self.fingerprint, "cpu": asdict(self.cpu),
            "gpus": {str(k): asdict(v) for k, v in self.gpus.items()},
            "numba_binary_speedup": self.numba_binary_speedup, "measured_at": self.measured_at,
            "backends": {k: v.to_json() for k, v in self.backends.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        if data.get("version") != CALIBRATION_VERSION:
            raise ValueError("old calibration format")
        return cls(
            fingerprint=str(data["fingerprint"]), cpu=DeviceRates(**data["cpu"]),
            gpus={int(k): DeviceRates(**v) for k, v in data.get("gpus", {}).items()},
            numba_binary_speedup=data.get("numba_binary_speedup"), measured_at=float(data["measured_at"]),
            backends={str(k): BackendRates.from_json(v) for k, v in data.get("backends", {}).items()},
        )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(gpu_names: list[str]) -> str:
    """What the calibration depends on: CPU model and count, memory, library versions, GPUs."""
    import psutil

    try:
        import numba

        numba_version = numba.__version__
    except Exception:  # numba is a dependency, but calibration must never fail on it
        numba_version = "none"
    mem_gib = round(psutil.virtual_memory().total / 2**30)
    parts = [_cpu_model(), str(os.cpu_count()), f"{mem_gib}GiB", f"numpy{np.__version__}",
             f"numba{numba_version}", *gpu_names]
    return "|".join(parts)


def best_time(fn: Callable[[], Any], repeat: int = 5, inner: int = 1) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def measure_cpu() -> DeviceRates:
    """Streaming bandwidth, arithmetic and transcendental rates, BLAS matmul and call overhead."""
    n = 2_000_000
    a = np.random.rand(n)
    b = np.random.rand(n)
    o = np.empty_like(a)
    bandwidth = 3 * a.nbytes / best_time(lambda: np.add(a, b, out=o))
    small = np.random.rand(8192)
    small_o = np.empty_like(small)
    flops = small.size / best_time(lambda: np.multiply(small, small, out=small_o), inner=20)
    transcendental = small.size / best_time(lambda: np.exp(small, out=small_o), inner=10)
    matmul: dict[str, float] = {}
    for dtype in ("float64", "float32"):
        # Best rate over two sizes and several runs: BLAS threads are easily disturbed by
        # other work on a shared machine, and a too-low rate would stick in the cache.
        rates = []
        for size in (256, 512):
            m = np.random.rand(size, size).astype(dtype)
            rates.append(2 * size**3 / best_time(lambda m=m: m @ m, repeat=7))
        matmul[dtype] = max(rates)
    tiny = np.random.rand(16)
    overhead = best_time(lambda: np.add(tiny, tiny), inner=200)
    return DeviceRates(bandwidth, flops, transcendental, matmul, overhead)


def measure_gpu(index: int) -> DeviceRates | None:
    """The same rates on one CUDA GPU plus host<->device bandwidth; None if it cannot be measured."""
    try:
        import cupy as cp

        with cp.cuda.Device(index):
            sync = cp.cuda.runtime.deviceSynchronize

            def timed(fn: Callable[[], Any], repeat: int = 5) -> float:
                def run() -> None:
                    fn()
                    sync()
                return best_time(run, repeat)

            n = 32_000_000
            a = cp.random.rand(n)
            b = cp.random.rand(n)
            o = cp.empty_like(a)
            bandwidth = 3 * a.nbytes / timed(lambda: cp.add(a, b, out=o))
            flops = n / timed(lambda: cp.multiply(a, b, out=o))
            transcendental = n / timed(lambda: cp.exp(a, out=o))
            matmul = {}
            for dtype in ("float64", "float32"):
                m = cp.random.rand(2048, 2048).astype(dtype)
                matmul[dtype] = 2 * 2048**3 / timed(lambda m=m: m @ m, 3)
            host = np.empty(8_000_000)
            h2d = host.nbytes / timed(lambda: cp.asarray(host), 3)
            dev = cp.asarray(host)
            d2h = host.nbytes / timed(lambda: cp.asnumpy(dev), 3)
            tiny = cp.random.rand(16)
            overhead = timed(lambda: cp.add(tiny, tiny), 20)
            return DeviceRates(bandwidth, flops, transcendental, matmul, overhead, h2d, d2h)
    except Exception as exc:  # a GPU we cannot measure is a GPU we do not place work on
        log.warning("could not calibrate GPU %d (%s); it will not be chosen by device='auto'", index, exc)
        return None


_lock = threading.Lock()
_current: Calibration | None = None


def _path() -> Path:
    return Path(get_settings().cache_dir) / "calibration.json"


def _gpu_names() -> list[str]:
    devices = importlib.import_module("noodle.devices")

    return [f"{d.name}" for d in devices.devices() if d.kind == "cuda"]


def _read_saved(fp: str) -> Calibration | None:
    """The saved calibration if it is readable and was measured on this hardware."""
    path = _path()
    if not path.is_file():
        return None
    try:
        cal = Calibration.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        log.info("calibration file %s unreadable; it will be measured again", path)
        return None
    if cal.fingerprint != fp:
        log.info("hardware changed since the last calibration; it will be measured again")
        return None
    return cal


_tried_saved = False


def load_cached() -> Calibration | None:
    """The calibration saved for this hardware, if there is one (reads a small file once; never measures)."""
    global _current, _tried_saved
    if _current is not None or _tried_saved:
        return _current
    with _lock:
        if _current is None and not _tried_saved:
            _current = _read_saved(fingerprint(_gpu_names()))
        _tried_saved = True
        return _current


def load_or_measure(force: bool = False) -> Calibration:
    """The cached calibration for this hardware, measuring (and saving) it if absent or stale."""
    global _current
    with _lock:
        if _current is not None and not force:
            return _current
        fp = fingerprint(_gpu_names())
        cal = None if force else _read_saved(fp)
        if cal is None:
            cal = Calibration(fp, measure_cpu(), measured_at=time.time())
            devices = importlib.import_module("noodle.devices")
            for index in range(devices.gpu_count()):
                rates = measure_gpu(index)
                if rates is not None:
                    cal.gpus[index] = rates
            _save(cal)
        _current = cal
        return cal


def current() -> Calibration | None:
    """The calibration if it has been loaded or measured in this process, else None."""
    return _current


def update_numba_speedup(value: float | None) -> None:
    """Record the Numba measurement (made later, in the background) and persist it."""
    with _lock:
        if _current is not None:
            _current.numba_binary_speedup = value
            if not _injected:
                _save(_current)


def write_json(path: Path, payload: Any, indent: int) -> None:
    """``payload`` as JSON at ``path``, atomically: written to a per-process temporary file that then
    replaces ``path`` (a reader never sees half a file). OSError when it cannot be written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=indent))
    tmp.replace(path)


def _save(cal: Calibration) -> None:
    path = _path()
    try:
        write_json(path, cal.to_json(), indent=2)
    except OSError as exc:
        log.warning("could not save calibration to %s (%s); it will be measured again next time", path, exc)


def backend_rates(name: str, measure: Callable[[], BackendRates], toolchain: str = "") -> BackendRates:
    """The region rates of backend ``name``, probing them with ``measure`` only when this machine's
    calibration has none for ``toolchain`` (then saved with the rest, under the same fingerprint).

    Why lazy: a probe compiles a few kernels (a second or two for Numba or IREE the first time);
    a program that never asks for ``backend="auto"`` must not pay it.
    """
    cal = load_or_measure()
    rates = cal.backends.get(name)
    if rates is not None and rates.toolchain == toolchain:
        return rates
    t0 = time.perf_counter()
    rates = measure()
    log.info("calibrated backend %s in %.2f s", name, time.perf_counter() - t0)
    with _lock:
        cal.backends[name] = rates
        if cal is _current and not _injected:
            _save(cal)
    return rates


_injected = False


def install(cal: Calibration | None) -> None:
    """Use ``cal`` as this process's calibration (never saved; None: forget it and read the file again).

    Why: tests and what-if studies give placement known rates instead of this machine's.
    """
    global _current, _tried_saved, _injected
    with _lock:
        _current = cal
        _tried_saved = cal is not None
        _injected = cal is not None


def injected() -> bool:
    """Whether this process's calibration was given with :func:`install` (not measured here)."""
    return _injected


def reset() -> None:
    """Forget the in-process calibration (tests)."""
    global _current, _tried_saved, _injected
    with _lock:
        _current = None
        _tried_saved = False
        _injected = False
