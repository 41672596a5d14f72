"""The resource sampler: one background thread that records CPU, memory, disk, network and GPU.

Why a thread with cheap calls rather than a subprocess or an agent: a tick has
to cost well under a millisecond (psutil's calls take 30-160 µs each), so a
tick makes exactly one call per resource, derives rates from the previous
tick, and reads noodle's own counters from the local registry without taking
any global lock. GPU figures come from NVML only where a GPU is present; on a
machine without one the GPU fields are simply absent from the sample.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

from noodle.errors import MonitorError
from noodle.metrics import Registry
from noodle.metrics import registry as default_registry

log = logging.getLogger("noodle.monitor")

MIN_INTERVAL = 1.0  # seconds: the configured interval may not go below this

# sample key -> (gauge name, help): what each tick publishes to the metrics registry
RESOURCE_GAUGES: dict[str, tuple[str, str]] = {
    "t": ("noodle_monitor_last_sample_timestamp_seconds", "Unix time of the newest resource sample"),
    "cpu": ("noodle_cpu_utilization_ratio", "Machine CPU utilisation, 0..1 of all cores"),
    "proc_cpu": ("noodle_process_cpu_utilization_ratio", "This process's CPU use, 0..1 of all cores"),
    "mem": ("noodle_memory_utilization_ratio", "Machine memory in use, 0..1 of the total"),
    "mem_used": ("noodle_memory_used_bytes", "Machine memory in use (total - available), bytes"),
    "disk_read_bps": ("noodle_disk_read_bytes_per_second", "Disk reads since the previous sample, bytes/s"),
    "disk_write_bps": ("noodle_disk_write_bytes_per_second", "Disk writes since the previous sample, bytes/s"),
    "net_recv_bps": ("noodle_network_receive_bytes_per_second",
                     "Network bytes received since the previous sample, bytes/s"),
    "net_sent_bps": ("noodle_network_transmit_bytes_per_second",
                     "Network bytes sent since the previous sample, bytes/s"),
}
# GPU sample key suffix (gpu<i>_<suffix>) -> (gauge name labelled by gpu index, help)
GPU_GAUGES: dict[str, tuple[str, str]] = {
    "util": ("noodle_gpu_utilization_ratio", "GPU utilisation, 0..1"),
    "mem_used": ("noodle_gpu_memory_used_bytes", "GPU memory in use, bytes"),
    "mem_frac": ("noodle_gpu_memory_utilization_ratio", "GPU memory in use, 0..1 of the total"),
    "temp_c": ("noodle_gpu_temperature_celsius", "GPU temperature, degrees C"),
    "power_w": ("noodle_gpu_power_watts", "GPU power draw, watts"),
}


class _Nvml:
    """GPU readings through NVML, or nothing when there is no usable GPU.

    NVML is loaded and initialised by the device layer (one cached probe per process, shared
    with ``noodle devices``), not again here for every sampler.
    """

    def __init__(self) -> None:
        from noodle.devices.detect import _nvml

        self.handles: list[Any] = []
        self._nv, _reason = _nvml()
        if self._nv is None:  # no driver, no library: no GPU fields
            return
        try:
            self.handles = [self._nv.nvmlDeviceGetHandleByIndex(i) for i in range(self._nv.nvmlDeviceGetCount())]
        except Exception:  # no device or a driver error: no GPU fields
            self.handles = []

    def read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        nv = self._nv
        for i, h in enumerate(self.handles):
            try:
                util = nv.nvmlDeviceGetUtilizationRates(h)
                mem = nv.nvmlDeviceGetMemoryInfo(h)
                out[f"gpu{i}_util"] = util.gpu / 100.0
                out[f"gpu{i}_mem_used"] = float(mem.used)
                out[f"gpu{i}_mem_frac"] = mem.used / mem.total if mem.total else 0.0
                out[f"gpu{i}_temp_c"] = float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
                out[f"gpu{i}_power_w"] = nv.nvmlDeviceGetPowerUsage(h) / 1000.0
            except Exception:  # a transient NVML error costs one reading, not the sampler
                continue
        return out


def _counter_total(reg: Registry, name: str, label: str | None = None, value: str | None = None) -> float:
    metric = reg.get(name)
    if metric is None:
        return 0.0
    total = 0.0
    idx = metric.labelnames.index(label) if label and label in metric.labelnames else None
    for key, child in metric.children():
        if idx is None or key[idx] == value:
            total += getattr(child, "value", 0.0) or getattr(child, "count", 0)
    return total


def _hist_totals(reg: Registry, name: str) -> tuple[float, float]:
    metric = reg.get(name)
    if metric is None:
        return 0.0, 0.0
    count = total = 0.0
    for _, child in metric.children():
        count += child.count
        total += child.sum
    return count, total


def runtime_counters(reg: Registry) -> dict[str, float]:
    """Cumulative noodle counters the charts and rules need, read without global locks."""
    ops, op_seconds = _hist_totals(reg, "noodle_op_seconds")
    _, compile_seconds = _hist_totals(reg, "noodle_jit_compile_seconds")
    return {
        "ops": ops,
        "op_seconds": op_seconds,
        "cache_hits": _counter_total(reg, "noodle_cache_hits_total"),
        "cache_misses": _counter_total(reg, "noodle_cache_misses_total"),
        "cache_evictions": _counter_total(reg, "noodle_cache_evictions_total"),
        "jit_compiled": _counter_total(reg, "noodle_jit_calls_total", "mode", "compiled"),
        "jit_interpreted": _counter_total(reg, "noodle_jit_calls_total", "mode", "interpreted"),
        "jit_compiles": _counter_total(reg, "noodle_jit_compiles_total"),
        "jit_compile_seconds": compile_seconds,
        "place_cpu": _counter_total(reg, "noodle_placement_decisions_total", "device", "cpu"),
        "place_gpu": _counter_total(reg, "noodle_placement_decisions_total", "device", "gpu")
        + _counter_total(reg, "noodle_placement_decisions_total", "device", "cuda"),
        "transfer_bytes": _counter_total(reg, "noodle_transfer_bytes_total"),
        "fallbacks": _counter_total(reg, "noodle_fallbacks_total"),
    }


class Sampler:
    """Takes one sample per tick; ``start()`` runs ticks on a daemon thread every ``interval`` seconds.

    Example::

        s = Sampler(interval=1.0, on_sample=history.add)
        s.start(); ...; s.stop()
        sample = s.tick()   # or take one by hand
    """

    def __init__(self, interval: float = 5.0, on_sample: Callable[[dict[str, float]], None] | None = None,
                 registry: Registry | None = None, gpu: bool = True) -> None:
        if not isinstance(interval, (int, float)) or interval < MIN_INTERVAL:
            raise MonitorError(
                f"sampler interval {interval!r} is too small: use a number of seconds >= {MIN_INTERVAL} "
                "(NOODLE_SYNTAX_FIXER_MONITORING_INTERVAL)"
            )
        self.interval = float(interval)
        self.on_sample = on_sample
        self.registry = registry or default_registry
        self._gpu = _Nvml() if gpu else None
        self._proc = psutil.Process()
        self._cores = psutil.cpu_count() or 1
        self._prev: tuple[float, Any, Any, dict[str, float]] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_tick_seconds = 0.0
        psutil.cpu_percent(interval=None)  # prime: the first call only sets the reference point
        self._proc.cpu_percent(interval=None)

    @property
    def has_gpu(self) -> bool:
        return bool(self._gpu and self._gpu.handles)

    def tick(self) -> dict[str, float]:
        """Take one sample now: utilisations as fractions 0..1, bytes, and rates per second."""
        t0 = time.perf_counter()
        now = time.time()
        vm = psutil.virtual_memory()
        try:
            disk = psutil.disk_io_counters()
        except Exception:
            disk = None
        try:
            net = psutil.net_io_counters()
        except Exception:
            net = None
        sample: dict[str, float] = {
            "t": now,
            "cpu": psutil.cpu_percent(interval=None) / 100.0,
            # psutil counts one busy core as 100 %: divide by the cores so this is a share of the machine
            "proc_cpu": self._proc.cpu_percent(interval=None) / 100.0 / self._cores,
            "mem": vm.percent / 100.0,
            "mem_used": float(vm.total - vm.available),
        }
        rt = runtime_counters(self.registry)
        if self._prev is not None:
            pt, pdisk, pnet, prt = self._prev
            dt = max(now - pt, 1e-6)
            if disk is not None and pdisk is not None:
                sample["disk_read_bps"] = max(0.0, (disk.read_bytes - pdisk.read_bytes) / dt)
                sample["disk_write_bps"] = max(0.0, (disk.write_bytes - pdisk.write_bytes) / dt)
            if net is not None and pnet is not None:
                sample["net_recv_bps"] = max(0.0, (net.bytes_recv - pnet.bytes_recv) / dt)
                sample["net_sent_bps"] = max(0.0, (net.bytes_sent - pnet.bytes_sent) / dt)
            for key, value in rt.items():  # per-tick deltas: what happened since the last sample
                sample[f"d_{key}"] = max(0.0, value - prt.get(key, 0.0))
        self._prev = (now, disk, net, rt)
        if self._gpu is not None and self._gpu.handles:
            sample.update(self._gpu.read())
        self._publish(sample)
        self.last_tick_seconds = time.perf_counter() - t0
        return sample

    def _publish(self, sample: dict[str, float]) -> None:
        """Set the resource gauges from a sample, so ``/metrics`` and ``/api/metrics`` export them.

        Why gauges in the registry: every exporter (Prometheus text, the JSON snapshot, a report)
        already reads the registry; the sample itself lives only in the monitor's history.
        """
        reg = self.registry
        for key, (name, help_) in RESOURCE_GAUGES.items():
            value = sample.get(key)
            if value is not None:
                reg.gauge(name, help_).set(value)
        for key, value in sample.items():
            if key.startswith("gpu") and "_" in key:
                index, _, what = key[3:].partition("_")
                spec = GPU_GAUGES.get(what)
                if spec is not None and index.isdigit():
                    reg.gauge(spec[0], spec[1], ("gpu",)).labels(index).set(value)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                sample = self.tick()
                if self.on_sample is not None:
                    self.on_sample(sample)
            except Exception:  # one bad tick is logged, the sampler keeps going
                log.exception("monitor sampler tick failed")

    def start(self) -> Sampler:
        """Start the background thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="noodle-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 2)
            self._thread = None
