"""The :class:`Monitor`: sampler + history + alerts + bottlenecks + summary, wired together.

Why one object: the HTTP API, ``noodle run`` and user code all need the same
view (one history, one set of active alerts), and the sampler must run once
per process. :func:`get_monitor` returns the process-wide instance built from
the settings (interval, retention, alert threshold); tests build their own
with a private registry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from noodle.metrics import Registry
from noodle.metrics import registry as default_registry
from noodle.monitor.alerts import (
    STALL_FLOOR_SECONDS,
    Alert,
    AlertManager,
    AlertRule,
    default_rules,
    stall_fields,
)
from noodle.monitor.bottlenecks import Bottleneck, detect
from noodle.monitor.history import History
from noodle.monitor.sampler import Sampler
from noodle.monitor.summary import Summarizer

BOTTLENECK_ALERT_SEVERITY = 0.7  # a bottleneck this severe (of an ALERTING kind) is also raised as a warning
# Bottleneck kinds that need a person and so are also raised as alerts. Saturation (cpu_bound,
# gpu_idle_cpu_busy, transfer_bound, ...) is a performance finding a busy job normally has: it is
# reported as a bottleneck with advice, never as an alert.
ALERTING_BOTTLENECKS = frozenset({"memory_bound"})
BOTTLENECK_EVERY = 10  # ticks between automatic bottleneck checks


class Monitor:
    """Samples resources in the background and answers questions about them.

    Example::

        m = Monitor(interval=1.0).start()
        ...
        m.history.since(time.time() - 60); m.alerts.active(); m.bottlenecks(); m.summary()
        m.stop()
    """

    def __init__(self, interval: float | None = None, retention: float | None = None,
                 threshold: float | None = None, registry: Registry | None = None,
                 rules: list[AlertRule] | None = None, gpu: bool = True, summary_window: float = 60.0) -> None:
        from noodle.config import get_settings

        settings = get_settings()
        self.registry = registry or default_registry
        self.interval = float(interval if interval is not None else settings.monitoring_interval)
        self.retention = float(retention if retention is not None else settings.metrics_retention)
        self.threshold = float(threshold if threshold is not None else settings.alert_threshold)
        self.history = History(retention=self.retention)
        self.alerts = AlertManager(rules if rules is not None else default_rules(self.threshold), self.registry)
        # the worker_stalled rule's floor (seconds a map may go without a chunk); tests lower it
        self.stall_seconds = STALL_FLOOR_SECONDS
        self.summarizer = Summarizer(self.registry, window=summary_window)
        self.sampler = Sampler(self.interval, on_sample=self._on_sample, registry=self.registry, gpu=gpu)
        self.started = time.time()
        self._ticks = 0
        self._lock = threading.Lock()
        self._sample_callbacks: list[Callable[[dict[str, float]], None]] = []
        self.profilers: list[Any] = []
        self._prom: Any = None  # the prometheus-client registry /metrics scrapes, built on first use
        self.tick_seconds = self.registry.histogram(
            "noodle_monitor_tick_seconds", "Cost of one sampler tick", (),
            buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2))

    # sampling -------------------------------------------------------------
    def _on_sample(self, sample: dict[str, float]) -> None:
        self.tick_seconds.observe(self.sampler.last_tick_seconds)
        self.history.add(sample)
        # dist's map gauges are judged with the resources but not kept in the history (not a resource)
        self.alerts.evaluate({**sample, **stall_fields(self.registry, sample.get("t", time.time()),
                                                       self.stall_seconds)})
        self.summarizer.mark()
        with self._lock:
            self._ticks += 1
            check = self._ticks % BOTTLENECK_EVERY == 0
        if check:
            severe = {b.kind: b for b in self.bottlenecks(window=max(60.0, self.interval * BOTTLENECK_EVERY))
                      if b.severity >= BOTTLENECK_ALERT_SEVERITY and b.kind in ALERTING_BOTTLENECKS}
            for kind, b in severe.items():
                self.alerts.raise_alert(f"bottleneck_{kind}", "warning", b.evidence, b.severity, series=kind)
            # a bottleneck alert this monitor raised resolves once the bottleneck is gone, like the
            # threshold alerts do; otherwise it would stay "active" for the rest of the process
            for alert in self.alerts.active():
                if alert.series not in severe and alert.rule == f"bottleneck_{alert.series}":
                    self.alerts.resolve(alert.rule, alert.series)
        for callback in list(self._sample_callbacks):
            callback(sample)

    def add_profiler(self, profiler: Any) -> None:
        """Attach a :class:`~noodle.monitor.profiler.SamplingProfiler` (the seed's
        ``ResourceMonitor.add_profiler``): it is stopped with the monitor, and its session becomes
        the latest profile that ``/api/profile`` serves."""
        self.profilers.append(profiler)

    def on_sample(self, callback: Callable[[dict[str, float]], None]) -> None:
        """Call ``callback(sample)`` after every tick (the dashboard server does not need this)."""
        self._sample_callbacks.append(callback)

    def tick(self) -> dict[str, float]:
        """Take and process one sample now (what the background thread does every interval)."""
        sample = self.sampler.tick()
        self._on_sample(sample)
        return sample

    def start(self) -> Monitor:
        """Start the background sampler (takes a first sample at once so charts are never empty)."""
        self.tick()
        self.sampler.start()
        return self

    def stop(self) -> None:
        """Stop the sampler and any attached profiler still running."""
        self.sampler.stop()
        for prof in self.profilers:
            if prof.running:
                prof.stop()

    @property
    def running(self) -> bool:
        return self.sampler._thread is not None

    # questions ------------------------------------------------------------
    def resources(self) -> dict[str, float]:
        """The newest resource sample (CPU, memory, disk, network, GPU where present), with its time ``t``.

        Why a fresh tick when there is none yet: ``/api/metrics`` of a monitor that has not sampled
        must still say what the machine is doing rather than answer with nothing.
        """
        latest = self.history.latest()
        return latest if latest is not None else self.sampler.tick()

    def prometheus_text(self) -> str:
        """Everything ``/metrics`` serves: noodle's metrics (resource gauges included) plus the standard
        ``process_*``, ``python_info`` and ``python_gc_*`` collectors of prometheus-client.

        Why here and not in the registry: the registry is noodle's own numbers and stays a leaf; a
        scrape of the monitoring server is also expected to describe the process serving it.
        """
        from prometheus_client import generate_latest

        with self._lock:
            if self._prom is None:
                from prometheus_client import (
                    CollectorRegistry,
                    GCCollector,
                    PlatformCollector,
                    ProcessCollector,
                )

                prom = CollectorRegistry(auto_describe=False)
                prom.register(self.registry)
                ProcessCollector(registry=prom)
                PlatformCollector(registry=prom)
                GCCollector(registry=prom)
                self._prom = prom
            prom = self._prom
        return generate_latest(prom).decode("utf-8")

    def bottlenecks(self, window: float = 300.0) -> list[Bottleneck]:
        """Findings over the last ``window`` seconds, most severe first."""
        return detect(self.history.since(time.time() - window), self.registry, window)

    def active_alerts(self) -> list[Alert]:
        return self.alerts.active()

    def summary(self, window: float | None = None) -> dict[str, Any]:
        """The performance summary (see :mod:`noodle.monitor.summary`)."""
        w = window or self.summarizer.window
        return self.summarizer.summary(w, self.history.since(time.time() - 2 * w - self.interval))


_monitor: Monitor | None = None
_monitor_lock = threading.Lock()


def get_monitor() -> Monitor:
    """The process-wide monitor (created on first use from the settings; not started)."""
    global _monitor
    with _monitor_lock:
        if _monitor is None:
            _monitor = Monitor()
        return _monitor
