"""Threshold alerts with severities, hysteresis and de-duplication.

Why hysteresis and state: a value hovering at a threshold (memory at 79-81 %)
would otherwise raise and clear an alert every sample. A rule here keeps a
level per series; it goes *up* as soon as the value reaches a higher level's
threshold for ``for_samples`` consecutive samples, and comes *down* only when
the value falls below the current level's threshold minus ``hysteresis``. Only
level changes are delivered (to the log, to callbacks, to the metrics event
ring and the API), so a condition that persists is one alert, not thousands.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from noodle.errors import MonitorError
from noodle.metrics import Gauge, Registry
from noodle.metrics import registry as default_registry

log = logging.getLogger("noodle.monitor")

SEVERITIES = ("info", "warning", "critical")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass
class AlertRule:
    """Raise an alert when sample field(s) matching ``field`` reach a level's threshold.

    ``levels`` maps severity -> threshold (values in the sample's units: fractions
    0..1 for utilisation). ``field`` may be a glob (``gpu*_mem_frac``): each
    matching series gets its own state.

    Example::

        AlertRule("memory_high", "mem", {"warning": 0.8, "critical": 0.95}, "memory nearly full")
    """

    name: str
    field: str
    levels: dict[str, float]
    message: str = ""
    hysteresis: float = 0.05
    for_samples: int = 1

    def __post_init__(self) -> None:
        bad = [s for s in self.levels if s not in _RANK]
        if bad or not self.levels:
            raise MonitorError(
                f"alert rule {self.name!r}: levels must map some of {SEVERITIES} to thresholds, got {self.levels!r}"
            )
        if self.hysteresis < 0 or self.for_samples < 1:
            raise MonitorError(f"alert rule {self.name!r}: hysteresis must be >= 0 and for_samples >= 1")

    def ordered(self) -> list[tuple[str, float]]:
        return sorted(self.levels.items(), key=lambda kv: _RANK[kv[0]])


@dataclass
class Alert:
    """One level change of one series: ``state`` is 'firing' or 'resolved'."""

    rule: str
    series: str
    severity: str
    state: str
    value: float
    threshold: float
    message: str
    time: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


STALL_FIELD = "dist_map_stall"  # derived sample field: a map's seconds without a chunk / its stall limit
STALL_FLOOR_SECONDS = 60.0  # the worker_stalled alert never fires before a map went this long without a chunk
STALL_CHUNK_FACTOR = 2.0  # ... nor before twice the longest wait between its chunks so far


def stall_fields(registry: Registry, now: float, floor: float = STALL_FLOOR_SECONDS,
                 factor: float = STALL_CHUNK_FACTOR) -> dict[str, float]:
    """``{"dist_map_stall": ratio}`` from noodle.dist's map gauges, for the worker_stalled rule; {} before
    this process imported noodle.dist.

    ratio = seconds since the last chunk of the active map that has waited longest (its start before
    any chunk) / its limit: max(``floor``, ``factor`` x the longest wait between its chunks so far), and
    before its first chunk max(``floor``, half the map's own timeout). It is 0 when no map is active,
    so the alert resolves once the map ends in any way (succeeded, failed, timed out, cancelled), and
    it falls to about 0 as soon as a chunk finishes.

    Why that limit: a slow chunk and a stuck worker differ only in time. The longest wait between
    completions so far is about the slowest healthy chunk, so a map of long chunks does not cry wolf;
    before the first chunk nothing is known but the timeout the map was given (the user's own bound on
    a chunk, 300 s by default); the floor keeps short maps from alerting on a pause of a few seconds.
    """
    def gauge(name: str) -> float | None:
        metric = registry.get(name)
        return metric.value() if isinstance(metric, Gauge) else None

    active = gauge("noodle_dist_maps_active")
    if active is None:
        return {}
    last = gauge("noodle_dist_map_last_chunk_timestamp_seconds") or 0.0
    if active <= 0 or last <= 0:
        return {STALL_FIELD: 0.0}
    gap = gauge("noodle_dist_map_chunk_gap_seconds") or 0.0
    limit = max(floor, factor * gap) if gap > 0 else max(floor, (gauge("noodle_dist_map_timeout_seconds") or 0) / 2)
    return {STALL_FIELD: max(0.0, now - last) / max(limit, 1e-9)}


def default_rules(threshold: float = 0.8) -> list[AlertRule]:
    """The built-in rules: only conditions that need a person. ``threshold`` is
    NOODLE_SYNTAX_FIXER_ALERT_THRESHOLD, the warning level for memory and GPU memory.

    ``worker_stalled`` fires when a distributed map is active and no chunk of it has finished for
    max(60 s, 2 x the longest wait between its chunks so far; half the map's timeout before its first
    chunk) (see :func:`stall_fields`): a worker may be stopped, swapped out or stuck. It fires well before the map gives up by itself (its timeout,
    NOODLE_SYNTAX_FIXER_WORKER_TIMEOUT, 300 s by default), while it can still be saved, and resolves when
    a chunk finishes again or the map ends.

    Why no CPU rule: a numeric job that keeps its cores busy is the normal, healthy case; a
    critical alert for it cries wolf on every ``noodle run``. CPU saturation is reported as the
    ``cpu_bound`` bottleneck, with advice, instead. What does need a person is memory about to run
    out (the OS will swap or kill the job), GPU memory near its limit (the next allocation fails)
    and a GPU at its thermal limit (it throttles). Add a CPU rule yourself when you want one::

        monitor.alerts.add_rule(AlertRule("cpu_high", "cpu", {"warning": 0.9}, for_samples=60))
    """
    critical = threshold + (1.0 - threshold) * 0.75
    return [
        AlertRule("memory_high", "mem", {"warning": threshold, "critical": critical},
                  "system memory is nearly full: the job may swap or be killed"),
        AlertRule("gpu_memory_high", "gpu*_mem_frac", {"warning": threshold, "critical": critical},
                  "GPU memory is nearly full: the next allocation may fail"),
        AlertRule("gpu_temperature_high", "gpu*_temp_c", {"warning": 83.0, "critical": 90.0},
                  "GPU is hot (degrees C) and may throttle", hysteresis=3.0),
        AlertRule("worker_stalled", STALL_FIELD, {"warning": 1.0},
                  "a distributed map is running but no chunk has finished for max(60 s, 2 x the longest wait "
                  "between its chunks, or half its timeout before the first): a worker may be stalled (stopped, swapped out, deadlocked); see "
                  "'noodle workers' (value: seconds without a chunk / that limit)", hysteresis=0.5),
    ]


class AlertManager:
    """Evaluates rules on each sample and delivers level changes.

    Example::

        am = AlertManager(default_rules(0.8))
        am.on_alert(lambda a: print(a.rule, a.severity, a.state))
        am.evaluate({"t": time.time(), "mem": 0.93})
        am.active()
    """

    def __init__(self, rules: list[AlertRule] | None = None, registry: Registry | None = None,
                 capacity: int = 1000) -> None:
        self.rules = list(rules) if rules is not None else default_rules()
        self.registry = registry or default_registry
        self._level: dict[tuple[str, str], int] = {}  # (rule, series) -> level index, -1 = clear
        self._pending: dict[tuple[str, str], tuple[int, int]] = {}  # (rule, series) -> (level, count)
        self._active: dict[tuple[str, str], Alert] = {}
        self._log: deque[Alert] = deque(maxlen=capacity)
        self._callbacks: list[Callable[[Alert], None]] = []
        self._lock = threading.Lock()

    def add_rule(self, rule: AlertRule) -> None:
        with self._lock:
            self.rules.append(rule)

    def on_alert(self, callback: Callable[[Alert], None]) -> None:
        """Call ``callback(alert)`` on every level change (exceptions in it are logged, not raised)."""
        self._callbacks.append(callback)

    def evaluate(self, sample: dict[str, float]) -> list[Alert]:
        """Check one sample against every rule; returns the alerts it raised or resolved."""
        changes: list[Alert] = []
        with self._lock:
            for rule in self.rules:
                fields = [rule.field] if rule.field in sample else (
                    [k for k in sample if fnmatch.fnmatchcase(k, rule.field)] if "*" in rule.field else [])
                for series in fields:
                    value = sample[series]
                    if not isinstance(value, (int, float)):
                        continue
                    alert = self._step(rule, series, float(value), sample.get("t", time.time()))
                    if alert is not None:
                        changes.append(alert)
        for alert in changes:
            self._deliver(alert)
        return changes

    def _step(self, rule: AlertRule, series: str, value: float, now: float) -> Alert | None:
        key = (rule.name, series)
        levels = rule.ordered()
        current = self._level.get(key, -1)
        target = -1
        for i, (_, thr) in enumerate(levels):
            if value >= thr:
                target = i
        if target < current:  # going down only past the hysteresis band of each level
            new = current
            while new >= 0 and value < levels[new][1] - rule.hysteresis:
                new -= 1
            target = new
        if target > current:
            lvl, count = self._pending.get(key, (target, 0))
            count = count + 1 if lvl == target else 1
            self._pending[key] = (target, count)
            if count < rule.for_samples:
                return None
        self._pending.pop(key, None)
        if target == current:
            active = self._active.get(key)
            if active is not None:
                active.value = value
            return None
        self._level[key] = target
        if target < 0:
            prev = self._active.pop(key, None)
            sev, thr = levels[current]
            alert = Alert(rule.name, series, prev.severity if prev else sev, "resolved", value, thr,
                          rule.message, now)
        else:
            sev, thr = levels[target]
            alert = Alert(rule.name, series, sev, "firing", value, thr, rule.message, now)
            self._active[key] = alert
        self._log.append(alert)
        return alert

    def _deliver(self, alert: Alert) -> None:
        level = logging.INFO if alert.state == "resolved" or alert.severity == "info" else (
            logging.WARNING if alert.severity == "warning" else logging.ERROR)
        log.log(level, "alert %s %s [%s] %s=%.3g (threshold %.3g): %s", alert.state, alert.rule,
                alert.severity, alert.series, alert.value, alert.threshold, alert.message)
        self.registry.counter("noodle_alerts_total", "Alert level changes by severity and state",
                              ("severity", "state")).labels(alert.severity, alert.state).inc()
        self.registry.emit("alert", **alert.to_json())
        for callback in list(self._callbacks):
            try:
                callback(alert)
            except Exception:
                log.exception("alert callback %r failed", callback)

    def raise_alert(self, rule: str, severity: str, message: str, value: float = 1.0,
                    series: str = "manual") -> Alert:
        """Raise an alert by hand (from user code or a bottleneck); de-duplicated by (rule, series)."""
        if severity not in _RANK:
            raise MonitorError(f"unknown alert severity {severity!r}: use one of {SEVERITIES}")
        key = (rule, series)
        with self._lock:
            existing = self._active.get(key)
            if existing is not None and existing.severity == severity:
                existing.value = value
                return existing
            alert = Alert(rule, series, severity, "firing", value, value, message)
            self._active[key] = alert
            self._log.append(alert)
        self._deliver(alert)
        return alert

    def resolve(self, rule: str, series: str = "manual") -> Alert | None:
        """Clear an alert raised by :meth:`raise_alert`; returns the 'resolved' record or None."""
        with self._lock:
            prev = self._active.pop((rule, series), None)
            if prev is None:
                return None
            alert = Alert(rule, series, prev.severity, "resolved", prev.value, prev.threshold, prev.message)
            self._log.append(alert)
        self._deliver(alert)
        return alert

    def active(self) -> list[Alert]:
        """Alerts currently firing, most severe first."""
        with self._lock:
            return sorted(self._active.values(), key=lambda a: (-_RANK[a.severity], -a.time))

    def history(self, since: float = 0.0) -> list[Alert]:
        """Every level change delivered since ``since`` (bounded ring)."""
        with self._lock:
            return [a for a in self._log if a.time >= since]
