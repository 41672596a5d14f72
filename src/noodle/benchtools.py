"""Timing harness shared by every benchmark suite.

Why a harness: every figure noodle reports is a *ratio* against a baseline
measured in the same process and run, because these machines are shared and
noisy; absolute times from different runs are not comparable. Each row times
noodle and its baseline interleaved (A, B, A, B, ...) so drift hits both.
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Timing:
    """Min and median seconds per call over repeated runs."""

    min: float
    median: float
    runs: int


@dataclass
class Row:
    """One benchmark row: a candidate against its baseline, measured in the same run."""

    suite: str
    case: str
    candidate: str
    baseline: str
    candidate_time: Timing
    baseline_time: Timing
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Speedup of the candidate over the baseline (min vs min): >1 means faster."""
        return self.baseline_time.min / self.candidate_time.min if self.candidate_time.min > 0 else float("inf")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = self.ratio
        return d


def per_unit(row: Row, count: int, count_key: str, candidate_key: str, baseline_key: str,
             scale: float, digits: int) -> Row:
    """Record in ``row.extra`` the fastest time per unit of work, for both sides of ``row``.

    Why: a row that times a batch of ``count`` operations (cache hits, submitted tasks)
    is read per operation; ``scale`` picks the unit (1e9 for ns, 1e3 for ms) and the keys
    name it in the saved JSON. Example: ``per_unit(row, 1000, "ops_per_call",
    "candidate_ns", "baseline_ns", 1e9, 1)``.
    """
    row.extra.update({count_key: count,
                      candidate_key: round(row.candidate_time.min / count * scale, digits),
                      baseline_key: round(row.baseline_time.min / count * scale, digits)})
    return row


def time_call(fn: Callable[[], Any], min_time: float = 0.2, max_runs: int = 1000, min_runs: int = 5) -> Timing:
    """Time ``fn`` repeatedly: at least ``min_runs`` runs and ``min_time`` seconds in all."""
    return time_pair(fn, None, min_time, max_runs, min_runs)[0]


def _inner_count(fn: Callable[[], Any]) -> int:
    """How many calls to batch per sample so one sample lasts >= ~50 µs (timer resolution)."""
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    if dt >= 5e-5:
        return 1
    return int(min(10000, max(1, 5e-5 / max(dt, 1e-8))))


def time_pair(a: Callable[[], Any], b: Callable[[], Any] | None, min_time: float = 0.2,
              max_runs: int = 1000, min_runs: int = 5) -> tuple[Timing, Timing | None]:
    """Time ``a`` and ``b`` interleaved, so machine noise affects both alike."""
    fns = [f for f in (a, b) if f is not None]
    for f in fns:  # warm up (compiles, caches, page faults of first use)
        f()
    inner = [_inner_count(f) for f in fns]
    samples: list[list[float]] = [[] for _ in fns]
    gc_was = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        runs = 0
        order = list(range(len(fns)))
        while runs < max_runs and (runs < min_runs or time.perf_counter() - start < min_time * len(fns)):
            order.reverse()   # A B, B A, A B ...: neither side always runs first (caches, allocator state)
            for i in order:
                f = fns[i]
                n = inner[i]
                t0 = time.perf_counter()
                for _ in range(n):
                    f()
                samples[i].append((time.perf_counter() - t0) / n)
            runs += 1
    finally:
        if gc_was:
            gc.enable()
    timings = [Timing(min(s), statistics.median(s), len(s)) for s in samples]
    return timings[0], (timings[1] if b is not None else None)


def render_table(rows: list[Row], title: str) -> Any:
    """A rich table of rows: case, both timings and the ratio."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("case", "noodle", "min", "median", "baseline", "min", "median", "speedup"):
        table.add_column(col, justify="right" if col in ("min", "median", "speedup") else "left")
    for r in rows:
        table.add_row(
            r.case, r.candidate, _fmt(r.candidate_time.min), _fmt(r.candidate_time.median),
            r.baseline, _fmt(r.baseline_time.min), _fmt(r.baseline_time.median), f"{r.ratio:.2f}x",
        )
    return table


def _fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def save_rows(rows: list[Row], path: Path, meta: dict[str, Any] | None = None) -> None:
    """Write rows as JSON (atomically: a partial file is never left behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta or {}, "rows": [r.to_json() for r in rows]}, indent=2))
    tmp.replace(path)
