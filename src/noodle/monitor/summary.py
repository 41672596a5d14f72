"""Performance summary over a window, compared with the window before it.

Why marks of bucket counts: the registry's histograms are cumulative since
start, so a per-window percentile needs the counts at the window's start.
:class:`Summarizer` keeps a few sparse *marks* (bucket counts and counter
totals, taken at most every quarter window), and a window's figures are the
difference between now and a mark, with percentiles interpolated inside the
histogram buckets the way Prometheus' ``histogram_quantile`` does.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from typing import Any

from noodle.metrics import Registry
from noodle.metrics import registry as default_registry
from noodle.monitor.bottlenecks import detect
from noodle.monitor.sampler import runtime_counters

_HISTS = ("noodle_op_seconds", "noodle_jit_program_seconds", "noodle_fixer_seconds")


def capture(registry: Registry) -> dict[str, Any]:
    """The cumulative state a window is measured against (bucket counts, sums, counter totals)."""
    hists: dict[str, dict[tuple[str, ...], tuple[list[int], int, float]]] = {}
    bounds: dict[str, tuple[float, ...]] = {}
    for name in _HISTS:
        metric = registry.get(name)
        if metric is None or getattr(metric, "kind", "") != "histogram":
            continue
        bounds[name] = metric.buckets
        series = {}
        for key, child in metric.children():
            with child._lock:
                series[key] = (list(child.counts), child.count, child.sum)
        hists[name] = series
    labelnames = {n: registry.get(n).labelnames for n in hists}
    return {"t": time.time(), "hists": hists, "bounds": bounds, "labelnames": labelnames,
            "counters": runtime_counters(registry)}


def quantile(q: float, bounds: tuple[float, ...], counts: list[int]) -> float | None:
    """The q-quantile (0..1) from per-bucket counts (last bucket is +Inf), interpolated linearly."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    acc = 0
    for i, n in enumerate(counts):
        if acc + n >= rank and n > 0:
            lo = bounds[i - 1] if i > 0 else 0.0
            if i >= len(bounds):  # +Inf bucket: the best we can say is the last finite bound
                return bounds[-1]
            hi = bounds[i]
            return lo + (hi - lo) * ((rank - acc) / n)
        acc += n
    return bounds[-1]


def _diff(now: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"seconds": now["t"] - base["t"] if base else None, "ops": {}, "programs": {},
                           "fixer": {}, "counters": {}}
    targets = {"noodle_op_seconds": out["ops"], "noodle_fixer_seconds": out["fixer"]}
    for name, series in now["hists"].items():
        bounds = now["bounds"][name]
        before = (base or {}).get("hists", {}).get(name, {})
        for key, (counts, count, total) in series.items():
            b_counts, b_count, b_total = before.get(key, ([0] * len(counts), 0, 0.0))
            d_counts = [a - b for a, b in zip(counts, b_counts)]
            d_count = count - b_count
            if d_count <= 0:
                continue
            labels = dict(zip(now["labelnames"][name], key))
            row = {"labels": labels, "count": d_count, "seconds": total - b_total,
                   "mean": (total - b_total) / d_count,
                   "p50": quantile(0.5, bounds, d_counts), "p95": quantile(0.95, bounds, d_counts),
                   "p99": quantile(0.99, bounds, d_counts)}
            target = targets.get(name, out["programs"])
            ident = "/".join(key)
            target[ident] = row
    base_c = (base or {}).get("counters", {})
    out["counters"] = {k: v - base_c.get(k, 0.0) for k, v in now["counters"].items()}
    return out


def _cache(counters: dict[str, float]) -> dict[str, Any]:
    hits, misses = counters.get("cache_hits", 0.0), counters.get("cache_misses", 0.0)
    return {"hits": hits, "misses": misses, "evictions": counters.get("cache_evictions", 0.0),
            "hit_ratio": hits / (hits + misses) if hits + misses else None}


def _resources(samples: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"samples": len(samples)}
    for key in ("cpu", "mem", "proc_cpu"):
        vals = [s[key] for s in samples if isinstance(s.get(key), (int, float))]
        if vals:
            out[key] = {"mean": statistics.fmean(vals), "max": max(vals)}
    return out


def _change(cur: float | None, prev: float | None) -> float | None:
    if cur is None or prev is None or prev == 0:
        return None
    return cur / prev - 1.0


class Summarizer:
    """Builds window summaries from sparse marks of the registry.

    Example::

        s = Summarizer(window=60)
        s.mark()            # the monitor calls this on every sampler tick
        s.summary()["ops"]  # per-op count, p50/p95/p99 in the last 60 s
    """

    def __init__(self, registry: Registry | None = None, window: float = 60.0, keep: int = 64) -> None:
        self.registry = registry or default_registry
        self.window = float(window)
        self._marks: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def mark(self, force: bool = False) -> None:
        """Remember the current state if the last mark is older than a quarter window."""
        with self._lock:
            if force or not self._marks or time.time() - self._marks[-1]["t"] >= self.window / 4:
                self._marks.append(capture(self.registry))

    def _mark_before(self, t: float) -> dict[str, Any] | None:
        best = None
        for m in self._marks:
            if m["t"] <= t:
                best = m
        return best

    def summary(self, window: float | None = None, samples: list[dict[str, float]] | None = None,
                top: int = 5) -> dict[str, Any]:
        """Figures for the last ``window`` seconds and their change against the window before."""
        window = float(window or self.window)
        now = capture(self.registry)
        with self._lock:
            # no mark that old: the window reaches back past the first mark, so count from zero
            start = self._mark_before(now["t"] - window)
            prev_start = self._mark_before(start["t"] - window) if start else None
        cur = _diff(now, start)
        prev = _diff(start, prev_start) if start is not None else None
        samples = samples or []
        t_from = start["t"] if start else 0.0
        cur_samples = [s for s in samples if s.get("t", 0.0) >= t_from]
        programs = sorted(cur["programs"].items(), key=lambda kv: -kv[1]["seconds"])[:top]
        cache = _cache(cur["counters"])
        out: dict[str, Any] = {
            "generated": now["t"],
            "window_seconds": cur["seconds"] if cur["seconds"] is not None else window,
            "ops": cur["ops"],
            "hottest_programs": [{"program": k, **v} for k, v in programs],
            "fixer": cur["fixer"],  # syntax fixes by result kind: count, p50/p95/p99 seconds
            "cache": cache,
            "jit": {k: cur["counters"].get(k, 0.0) for k in
                    ("jit_compiled", "jit_interpreted", "jit_compiles", "jit_compile_seconds", "fallbacks")},
            "placement": {k: cur["counters"].get(k, 0.0) for k in ("place_cpu", "place_gpu")},
            "resources": _resources(cur_samples),
            "bottlenecks": [b.to_json() for b in detect(cur_samples, self.registry)][:top],
            "previous": None,
        }
        if prev is not None:
            prev_cache = _cache(prev["counters"])
            out["previous"] = {
                "window_seconds": prev["seconds"],
                "ops": prev["ops"],
                "cache": prev_cache,
                "change": {
                    "ops_count": _change(sum(r["count"] for r in cur["ops"].values()) or None,
                                         sum(r["count"] for r in prev["ops"].values()) or None),
                    "p50_by_op": {k: _change(v["p50"], prev["ops"][k]["p50"])
                                  for k, v in cur["ops"].items() if k in prev["ops"]},
                    "cache_hit_ratio": (cache["hit_ratio"] - prev_cache["hit_ratio"])
                    if cache["hit_ratio"] is not None and prev_cache["hit_ratio"] is not None else None,
                },
            }
        return out
