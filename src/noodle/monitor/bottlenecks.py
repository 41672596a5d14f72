"""Bottleneck rules: name the dominant cost, how bad it is, the evidence, and what to do.

Why rules and not a model: each finding must be explainable to the user in
one sentence with the numbers behind it. A rule reads the recent sample
history (CPU, memory, GPU, and per-tick deltas of noodle's own counters) and
the metrics registry (per-program JIT timings), and returns a
:class:`Bottleneck` with a severity in 0..1, or nothing. Metrics that do not
exist (no GPU, no cache in use, no JIT yet) make a rule silent, never wrong.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from noodle.metrics import Registry
from noodle.metrics import registry as default_registry
from noodle.monitor.sampler import runtime_counters

PCIE_BYTES_PER_SECOND = 12e9  # an effective host<->device copy rate, to turn bytes into time


@dataclass
class Bottleneck:
    """One finding: ``kind`` names the cost, ``severity`` is 0..1 (1 = dominates everything)."""

    kind: str
    severity: float
    evidence: str
    recommendation: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _clip(x: float) -> float:
    return max(0.0, min(1.0, x))


@dataclass
class Context:
    """What the rules see: samples in the window, runtime counter totals for it, and the registry."""

    samples: list[dict[str, float]]
    runtime: dict[str, float]
    registry: Registry
    window: float

    def series(self, key: str) -> list[float]:
        return [s[key] for s in self.samples if isinstance(s.get(key), (int, float))]

    def totals(self, *keys: str) -> tuple[float, ...]:
        """Runtime counter totals in the window, in the order asked; 0.0 for a counter never seen.

        Why one place for the default: a counter that does not exist yet (no cache, no JIT)
        must read as zero so the rule that needs it stays silent rather than failing.
        Example: ``hits, misses = ctx.totals("cache_hits", "cache_misses")``.
        """
        runtime = self.runtime
        return tuple(runtime.get(key, 0.0) for key in keys)

    def gpu_keys(self, suffix: str) -> list[str]:
        keys: set[str] = set()
        for s in self.samples:
            keys.update(k for k in s if k.startswith("gpu") and k.endswith(suffix))
        return sorted(keys)


def cpu_bound(ctx: Context) -> Bottleneck | None:
    cpu = ctx.series("cpu")
    if len(cpu) < 3:
        return None
    mean = statistics.fmean(cpu)
    if mean < 0.85:
        return None
    return Bottleneck(
        "cpu_bound", _clip((mean - 0.7) / 0.3),
        f"CPU averaged {mean:.0%} over {len(cpu)} samples (max {max(cpu):.0%})",
        "the CPU is saturated: fuse loops with @nd.jit, let large array ops go to a GPU "
        "(device='auto'), or spread independent work with nd.dist",
    )


def memory_bound(ctx: Context) -> Bottleneck | None:
    mem = ctx.series("mem")
    if len(mem) < 3:
        return None
    mean, peak = statistics.fmean(mem), max(mem)
    if mean < 0.85 and peak < 0.95:
        return None
    return Bottleneck(
        "memory_bound", _clip(max((mean - 0.75) / 0.25, (peak - 0.85) / 0.15)),
        f"system memory averaged {mean:.0%} and peaked at {peak:.0%} over {len(mem)} samples",
        "memory is nearly exhausted: use float32 instead of float64, smaller batches "
        "(NOODLE_SYNTAX_FIXER_BATCH_SIZE_AUTO), or a smaller cache (NOODLE_SYNTAX_FIXER_CACHE_SIZE)",
    )


def gpu_idle_cpu_busy(ctx: Context) -> Bottleneck | None:
    cpu = ctx.series("cpu")
    utils = [ctx.series(k) for k in ctx.gpu_keys("_util")]
    utils = [u for u in utils if u]
    if len(cpu) < 3 or not utils:
        return None
    cpu_mean = statistics.fmean(cpu)
    gpu_mean = max(statistics.fmean(u) for u in utils)
    if cpu_mean < 0.7 or gpu_mean > 0.2:
        return None
    return Bottleneck(
        "gpu_idle_cpu_busy", _clip((cpu_mean - 0.5) * 2 * (1 - gpu_mean / 0.2 * 0.5)),
        f"CPU averaged {cpu_mean:.0%} while the busiest GPU averaged {gpu_mean:.0%}",
        "work stays on the CPU although a GPU is idle: check nd.explain(op, ...) for the placement reason, "
        "lower NOODLE_GPU_THRESHOLD, or keep data on the device with nd.Matrix",
    )


def transfer_bound(ctx: Context) -> Bottleneck | None:
    moved, op_seconds = ctx.totals("transfer_bytes", "op_seconds")
    if moved <= 0 or op_seconds <= 0:
        return None
    copy_seconds = moved / PCIE_BYTES_PER_SECOND
    share = copy_seconds / op_seconds
    if share < 0.3:
        return None
    return Bottleneck(
        "transfer_bound", _clip(share),
        f"{moved / 1e6:.1f} MB moved between devices (~{copy_seconds * 1e3:.1f} ms of copies) "
        f"against {op_seconds * 1e3:.1f} ms of op time ({share:.0%})",
        "data goes back and forth between host and GPU: keep intermediates on the device (nd.Matrix, "
        "call .numpy() once at the end) or fuse the chain with @nd.jit",
    )


def cache_thrashing(ctx: Context) -> Bottleneck | None:
    hits, misses, evictions = ctx.totals("cache_hits", "cache_misses", "cache_evictions")
    lookups = hits + misses
    if lookups < 100 or misses <= 0:
        return None
    miss_ratio = misses / lookups
    evict_ratio = min(1.0, evictions / misses)
    if miss_ratio < 0.5 or evict_ratio < 0.5:
        return None
    return Bottleneck(
        "cache_thrashing", _clip(miss_ratio * evict_ratio),
        f"{miss_ratio:.0%} of {int(lookups)} cache lookups missed and {int(evictions)} entries were evicted "
        f"({evict_ratio:.0%} of misses): entries leave before they are reused",
        "the working set does not fit: raise NOODLE_SYNTAX_FIXER_CACHE_SIZE, switch the policy "
        "(NOODLE_SYNTAX_FIXER_CACHE_STRATEGY=lfu or adaptive), or add the Redis tier",
    )


def compile_storm(ctx: Context) -> Bottleneck | None:
    compiles, seconds = ctx.totals("jit_compiles", "jit_compile_seconds")
    if compiles < 10:
        return None
    share = seconds / ctx.window if ctx.window > 0 else 0.0
    per_min = compiles / max(ctx.window / 60.0, 1e-9)
    if share < 0.1 and per_min < 30:
        return None
    return Bottleneck(
        "compile_storm", _clip(max(share * 2, per_min / 120.0)),
        f"{int(compiles)} JIT compiles taking {seconds:.2f} s in a {ctx.window:.0f} s window "
        f"({per_min:.0f}/min, {share:.0%} of wall time)",
        "functions are recompiled over and over: keep argument shapes and dtypes stable (each new "
        "signature compiles again) and keep the compiled-kernel cache enabled",
    )


def interpreted_hot_program(ctx: Context) -> Bottleneck | None:
    metric = ctx.registry.get("noodle_jit_program_seconds")
    if metric is None or "program" not in metric.labelnames or "mode" not in metric.labelnames:
        return None
    ip, im = metric.labelnames.index("program"), metric.labelnames.index("mode")
    per: dict[str, dict[str, tuple[int, float]]] = {}
    total = 0.0
    for key, child in metric.children():
        per.setdefault(key[ip], {})[key[im]] = (child.count, child.sum)
        total += child.sum
    if total <= 0:
        return None
    worst = max(per, key=lambda p: per[p].get("interpreted", (0, 0.0))[1])
    calls, seconds = per[worst].get("interpreted", (0, 0.0))
    share = seconds / total
    if calls < 20 or share < 0.3:
        return None
    return Bottleneck(
        "interpreted_hot_program", _clip(share),
        f"program {worst!r} ran interpreted {calls} times for {seconds:.3f} s, "
        f"{share:.0%} of all JIT program time",
        f"{worst!r} is hot but not compiled: look at noodle_fallbacks_total and the compile log for why "
        "(an unsupported op or dtype), and rewrite that part so the backend can compile it",
    )


RULES: list[Callable[[Context], Bottleneck | None]] = [
    cpu_bound, memory_bound, gpu_idle_cpu_busy, transfer_bound, cache_thrashing, compile_storm,
    interpreted_hot_program,
]


def _window_runtime(samples: list[dict[str, float]], registry: Registry) -> dict[str, float]:
    """Runtime counter totals in the window from sample deltas, or the registry's totals if none."""
    deltas = [s for s in samples if any(k.startswith("d_") for k in s)]
    if not deltas:
        return runtime_counters(registry)
    out: dict[str, float] = {}
    for s in deltas:
        for k, v in s.items():
            if k.startswith("d_"):
                out[k[2:]] = out.get(k[2:], 0.0) + v
    return out


def detect(samples: list[dict[str, float]] | None = None, registry: Registry | None = None,
           window: float | None = None) -> list[Bottleneck]:
    """Run every rule; findings sorted by severity, most severe first.

    Example::

        for b in detect(history.since(time.time() - 300)):
            print(b.kind, round(b.severity, 2), b.evidence, "->", b.recommendation)
    """
    reg = registry or default_registry
    samples = samples or []
    if window is None:
        times = [s["t"] for s in samples if "t" in s]
        window = (max(times) - min(times)) if len(times) >= 2 else 60.0
    ctx = Context(samples, _window_runtime(samples, reg), reg, max(float(window), 1.0))
    found = [b for b in (rule(ctx) for rule in RULES) if b is not None]
    return sorted(found, key=lambda b: -b.severity)
