"""Publishing cache statistics to ``noodle.metrics`` in bulk.

Why in bulk: a prometheus-style ``labels(...).inc()`` costs more than a whole
local cache hit, so managers count in plain ints and this module adds the
deltas to the registry on a timer (every second while any manager lives), on
``stats()``, at ``close()`` and whenever the report or an exporter asks
(:func:`publish`). Metrics: ``noodle_cache_{hits,misses,evictions}_total{tier}``,
``noodle_cache_bytes{tier}``, ``noodle_cache_get_seconds{tier}``,
``noodle_cache_decode_errors_total``, ``noodle_cache_redis_down_total``.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from noodle import metrics

HITS = metrics.counter("noodle_cache_hits_total", "cache hits per tier", ["tier"])
MISSES = metrics.counter("noodle_cache_misses_total", "cache misses per tier", ["tier"])
EVICTIONS = metrics.counter("noodle_cache_evictions_total", "entries evicted to respect a bound", ["tier"])
BYTES = metrics.gauge("noodle_cache_bytes", "bytes held per tier (local: estimated)", ["tier"])
GET_SECONDS = metrics.histogram("noodle_cache_get_seconds", "cache get latency (local: sampled)", ["tier"])
DECODE_ERRORS = metrics.counter("noodle_cache_decode_errors_total",
                                "shared-tier payloads that did not decode (served as misses)")
REDIS_DOWN = metrics.counter("noodle_cache_redis_down_total", "times the Redis tier became unreachable")

_FIELDS = (("hits", HITS, "local"), ("misses", MISSES, "local"), ("evictions", EVICTIONS, "local"),
           ("redis_hits", HITS, "redis"), ("redis_misses", MISSES, "redis"))

_managers: weakref.WeakSet[Any] = weakref.WeakSet()
_published: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()
_thread: threading.Thread | None = None
_stop = threading.Event()


def track(manager: Any) -> None:
    """Include ``manager`` in every publish (held weakly) and make sure the timer runs."""
    global _thread
    with _lock:
        _managers.add(manager)
        _published[manager] = {}
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_loop, name="noodle-cache-stats", daemon=True)
            _thread.start()


def _loop() -> None:
    while not _stop.wait(1.0):
        try:
            publish()
        except Exception:  # never let a metrics hiccup kill the timer
            pass


def publish() -> None:
    """Add every tracked manager's counts since the last publish to the metrics registry."""
    with _lock:
        managers = list(_managers)
        local_bytes = 0
        for m in managers:
            last = _published.setdefault(m, {})
            for attr, metric, tier in _FIELDS:
                now = getattr(m, attr)
                delta = now - last.get(attr, 0)
                if delta:
                    metric.labels(tier).inc(delta)
                    last[attr] = now
            for attr, metric in (("decode_errors", DECODE_ERRORS), ("redis_down_count", REDIS_DOWN)):
                now = getattr(m, attr)
                delta = now - last.get(attr, 0)
                if delta:
                    metric.labels().inc(delta)
                    last[attr] = now
            samples = m._latency[:]
            del m._latency[:len(samples)]  # in place: the manager's get closure holds this list
            for tier, seconds in samples:
                GET_SECONDS.labels(tier).observe(seconds)
            local_bytes += m._bytes
        BYTES.labels("local").set(local_bytes)


__all__ = ["publish", "track"]
