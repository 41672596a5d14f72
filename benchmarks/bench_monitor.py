"""Overhead of monitoring and profiling, each measured against itself switched off in the same run.

Rows (ratio = off / on: 1.00 means free, 0.98 means 2 % slower):
- ops workload, monitoring on vs off: an MLP forward pass of eager noodle ops. "On" is the
  background sampler at its fastest interval (1 s) plus the per-op accounting every op does;
  "off" has no sampler and the accounting call replaced by a no-op. Bound: >= 0.98.
- ops workload, profiler on vs off (default 5 ms interval). Bound: >= 0.95.
- recursive fib, profiler on vs off. Bound: >= 0.67 (at most 1.5x slower).
- recursive fib, pyinstrument vs off: the anchor (it hooks every call).
- sampler tick vs a 1 ms budget: ratio > 1 means one tick costs less than 1 ms.

On and off blocks alternate (many short rounds) so machine noise hits both alike; the ratio
is min against min (the harness' convention), and the notes add the median ratio.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from noodle.benchtools import Row, Timing

TITLE = "noodle bench monitor (ratio = off / on; 1.00 = no overhead)"


def _mlp() -> Callable[[], Any]:
    import noodle as nd

    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 256))
    ws = [rng.standard_normal((256, 256)) * 0.05, rng.standard_normal((256, 128)) * 0.05,
          rng.standard_normal((128, 10)) * 0.05]
    bs = [rng.standard_normal(256), rng.standard_normal(128), rng.standard_normal(10)]

    def forward() -> Any:
        h = x
        for w, b in zip(ws, bs):
            h = nd.maximum(nd.add(nd.matmul(h, w), b), 0.0)
        z = nd.subtract(h, nd.max(h, axis=1, keepdims=True))
        e = nd.exp(z)
        return nd.divide(e, nd.sum(e, axis=1, keepdims=True))

    return forward


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def _blocks(work: Callable[[], Any], on: Callable[[], Any], off: Callable[[], Any], rounds: int,
            per_block: int) -> tuple[Timing, Timing]:
    """Alternate on/off blocks; returns (on, off) timings per call of ``work``."""
    samples: dict[str, list[float]] = {"on": [], "off": []}
    work()
    for r in range(rounds):
        for mode in (("on", "off") if r % 2 == 0 else ("off", "on")):
            stop = (on if mode == "on" else off)()
            try:
                for _ in range(per_block):
                    t0 = time.perf_counter()
                    work()
                    samples[mode].append(time.perf_counter() - t0)
            finally:
                if stop is not None:
                    stop()
    return tuple(Timing(min(s), statistics.median(s), len(s)) for s in (samples["on"], samples["off"]))


def _row(case: str, candidate: str, baseline: str, on: Timing, off: Timing, **extra: Any) -> Row:
    return Row("monitor", case, candidate, baseline, on, off, extra)


def run(quick: bool = False) -> list[Row]:
    from noodle.array import dispatch
    from noodle.metrics import Registry
    from noodle.monitor import Monitor, Sampler, SamplingProfiler

    rows: list[Row] = []
    rounds = 8 if quick else 40
    mlp = _mlp()

    # 1. monitoring on (sampler at 1 s + per-op accounting) vs off (neither)
    real_record = dispatch.record

    def monitoring_on() -> Callable[[], None]:
        m = Monitor(interval=1.0, registry=Registry()).start()
        return m.stop

    def monitoring_off() -> None:
        dispatch.record = lambda *a: None

        def restore() -> None:
            dispatch.record = real_record
        return restore  # type: ignore[return-value]

    per_block = 50 if quick else 60
    on, off = _blocks(mlp, monitoring_on, monitoring_off, rounds, per_block)
    rows.append(_row("ops workload (MLP forward), monitoring", "on", "off", on, off, bound=0.98))

    # 2. profiler on vs off on the same workload
    def prof_on() -> Callable[[], Any]:
        p = SamplingProfiler().start()
        return p.stop

    on, off = _blocks(mlp, prof_on, lambda: None, rounds, per_block)
    rows.append(_row("ops workload (MLP forward), profiler 5 ms", "profiled", "plain", on, off, bound=0.95))

    # 3. recursive fib under our sampler, and under pyinstrument (the anchor)
    n = 20 if quick else 23
    on, off = _blocks(lambda: fib(n), prof_on, lambda: None, rounds, 5 if quick else 10)
    rows.append(_row(f"recursive fib({n}), profiler 5 ms", "profiled", "plain", on, off, bound=0.67))
    try:
        import pyinstrument

        def pyi_on() -> Callable[[], Any]:
            p = pyinstrument.Profiler(interval=0.005)
            p.start()
            return p.stop

        on, off = _blocks(lambda: fib(n), pyi_on, lambda: None, max(2, rounds // 2), 3 if quick else 5)
        rows.append(_row(f"recursive fib({n}), pyinstrument 5 ms (anchor)", "pyinstrument", "plain", on, off))
    except ImportError:
        pass

    # 4. one sampler tick against its 1 ms budget
    s = Sampler(interval=1.0, registry=Registry())
    s.tick()
    ticks = []
    for _ in range(20 if quick else 100):
        t0 = time.perf_counter()
        s.tick()
        ticks.append(time.perf_counter() - t0)
    rows.append(_row("sampler tick (psutil + registry)", "Sampler.tick", "1 ms budget",
                     Timing(min(ticks), statistics.median(ticks), len(ticks)), Timing(1e-3, 1e-3, 1)))
    return rows


def notes(rows: list[Row]) -> list[str]:
    out = []
    for r in rows:
        bound = r.extra.get("bound")
        if bound is not None:
            med = r.baseline_time.median / r.candidate_time.median
            verdict = "within" if r.ratio >= bound else "OUTSIDE"
            out.append(f"{r.case}: ratio {r.ratio:.3f} by min, {med:.3f} by median (bound >= {bound}) -> "
                       f"{verdict} bound by min (medians are noisy on a busy machine)")
    return out
