"""``noodle bench memory``: region-based memory (``noodle.region()``) against the heap, same run.

Rows (speedup = heap time / region time; > 1 means the region is faster). Every
RSS figure comes from a fresh process per side (``ru_maxrss`` for peaks,
``/proc/self/statm`` for RSS now), since a process's RSS high-water mark
never goes down; ``tracemalloc`` is shown beside it because it does not see
region chunks (``mmap`` memory) and would flatter the region.

- cyclic objects: math objects holding 8 MB arrays in reference cycles, built
  and dropped in a loop. On the heap they wait for the garbage collector,
  which counts container allocations, not bytes; in a region they are broken
  apart at each exit. Target: region peak RSS <= 50% of the heap's.
- cyclic step, exit vs collector: the cost of that exit against a
  ``gc.collect()`` per step, which frees the same memory (interleaved, here).
- eager chain: 4 eager ops on 1e7 float64 repeated in a loop, each repetition
  in a region or not. The region's outputs reuse warm chunks instead of
  faulting fresh pages. Time interleaved in one process; peak RSS and page
  faults (``getrusage``) in one fresh process per side. Target: >= 1.3x faster
  with at most the same peak RSS.
- RSS after exit: a region holding 256 MiB of temporaries at once, keeping
  24 MiB (two exported copies, one escaped array). Target: RSS after the exit,
  above the process's starting RSS, <= live data + one chunk (live data: the
  live bytes, or the heap run's RSS growth when larger, which adds the
  interpreter's own allocations), with the
  default manager (a scope that ran once keeps no free chunk mapped; only a
  scope that repeats keeps up to 512 MiB warm, which is what makes the next
  region of a loop fast). Shown too: a manager bounded to one chunk, and the
  default manager after ``trim()``.
- ``make run``: ``examples/dense_layers.py`` (what ``make run`` runs) inside one
  region against outside (time and peak RSS). No target.
- dist map: 200 chunks (60 with --quick) on 2 workers, each building cyclic
  objects around 8 MB arrays and returning a 1 MB array, with and without
  ``region=True``. Target: worker RSS after the map within 10% of its
  baseline (RSS after a warm-up map of the same function) with regions.
- where regions do not help: small arrays (heap below 1 MiB by design), a
  reduction (its output is a scalar) and plain NumPy operators (they do not go
  through noodle, and NumPy already reuses temporaries of an expression).

Two shared, loaded cores: timings are noisy; compare ratios from one run.
"""

from __future__ import annotations

import gc
import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import noodle as nd
from noodle.benchtools import Row, Timing, time_pair
from noodle.metrics.process import peak_rss_bytes as _peak_rss
from noodle.metrics.process import rss_bytes as _rss

TITLE = "noodle bench memory (regions vs the heap; RSS from fresh processes)"
MiB = 1 << 20
BIG = 1 << 20                 # float64 elements of an 8 MiB array
CHAIN_N = 10_000_000
ROOT = Path(__file__).resolve().parent.parent


class Node:
    """A math object of the kind regions are for: data plus links to other objects (cycles)."""

    def __init__(self, data: Any, meta: dict | None = None) -> None:
        self.data = data
        self.meta = meta or {}
        self.peer: Node | None = None


# --------------------------------------------------------------------------- measurements


def _faults() -> int:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_minflt + ru.ru_majflt


def _timing(samples: list[float]) -> Timing:
    s = sorted(samples)
    return Timing(s[0], s[len(s) // 2], len(s))


# --------------------------------------------------------------------------- workloads
def _cyclic_step(alloc: Any, i: int) -> float:
    """Two objects around 8 MB arrays, linked both ways, then dropped."""
    if alloc is None:
        a, b = Node(np.full(BIG, float(i)), {"step": i}), Node(np.ones(BIG), {"step": i})
    else:
        a = alloc.create(Node(alloc.full(BIG, float(i)), {"step": i}))
        b = alloc.create(Node(alloc.full(BIG, 1.0), {"step": i}))
    a.peer, b.peer = b, a
    a.data += b.data
    return float(a.data[-1])


def _chain(x: np.ndarray) -> float:
    y = nd.add(x, 1.0)
    y = nd.multiply(y, 2.0)
    y = nd.subtract(y, x)
    y = nd.sqrt(y)
    return float(y[-1])


def _chain_in_region(x: np.ndarray) -> float:
    with nd.region("bench-chain"):
        return _chain(x)


def _dist_item(i: int) -> np.ndarray:
    """One map chunk: cyclic objects around 8 MB arrays, eager ops, and a 1 MB array as the result."""
    from noodle.memory import current_region

    r = current_region()
    x = np.full(BIG, float(i)) if r is None else r.full(BIG, float(i))
    a, b = Node(x), Node(nd.add(x, 1.0))
    a.peer, b.peer = b, a
    if r is not None:
        r.create(a)
        r.create(b)
    y = nd.multiply(b.data, 2.0)
    return nd.multiply(y[: BIG // 8], 0.5)      # 1 MiB: lands in the region, copied out by the map


def _worker_rss() -> int:
    return _rss()


# --------------------------------------------------------------------------- child processes
def _child_cyclic(mode: str, steps: int) -> dict[str, Any]:
    import tracemalloc

    base = _rss()
    tracemalloc.start()
    f0, t0 = _faults(), time.perf_counter()
    for i in range(steps):
        if mode == "region":
            with nd.region("bench-cyclic") as r:
                _cyclic_step(r, i)
        else:
            _cyclic_step(None, i)
    seconds = time.perf_counter() - t0
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"seconds": seconds, "base_rss": base, "peak_rss": _peak_rss(), "traced_peak": traced,
            "faults": _faults() - f0}


def _child_chain(mode: str, reps: int) -> dict[str, Any]:
    x = np.random.default_rng(0).random(CHAIN_N)
    fn = _chain_in_region if mode == "region" else _chain
    fn(x)
    f0 = _faults()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return {"times": times, "peak_rss": _peak_rss(), "faults_per_rep": (_faults() - f0) / reps}


def _child_chain_timing(reps: int) -> dict[str, Any]:
    x = np.random.default_rng(0).random(CHAIN_N)
    a, b = time_pair(lambda: _chain_in_region(x), lambda: _chain(x), min_time=0.0, min_runs=reps, max_runs=reps)
    return {"region": [a.min, a.median, a.runs], "heap": [b.min, b.median, b.runs]}


def _child_exit(mode: str, held: int) -> dict[str, Any]:
    from noodle.memory import RegionEscapeWarning, RegionManager, default_manager

    warnings.simplefilter("ignore", RegionEscapeWarning)
    mgr = RegionManager(max_retained_bytes=8 * MiB) if mode == "bounded" else default_manager()
    escaped: list[np.ndarray] = []
    base = _rss()
    t0 = time.perf_counter()
    if mode == "heap":
        temps = [np.full(BIG, float(i)) for i in range(held)]
        keep = [temps[0].copy(), temps[1].copy(), temps[2]]
        del temps
    else:
        with mgr.create_region("bench-exit") as r:
            temps = [r.full(BIG, float(i)) for i in range(held)]            # held at once
            parts = [r.zeros(1 << 16) for _ in range(32)]                      # 512 KiB pieces, shared chunks
            keep = [r.export(temps[0]), r.export(temps[1])]
            escaped.append(temps[2])                                           # escapes: stays valid
            del temps, parts
        keep.append(escaped.pop())
        if mode == "trim":
            mgr.trim()
    seconds = time.perf_counter() - t0
    live = sum(a.nbytes for a in keep)
    assert float(keep[2][0]) == 2.0
    return {"seconds": seconds, "base_rss": base, "after_rss": _rss(), "live": live,
            "retained": mgr.stats()["retained_bytes"], "chunk": mgr.chunk_bytes}


def _child_make_run(mode: str, runs: int) -> dict[str, Any]:
    import contextlib
    import importlib.util
    import io

    spec = importlib.util.spec_from_file_location("dense_layers", ROOT / "examples" / "dense_layers.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.argv = ["dense_layers.py"]
    times = []
    for i in range(runs + 1):          # the first run warms up (calibration, compiles, BLAS threads)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            if mode == "region":
                with nd.region("make-run"):
                    mod.main()
            else:
                mod.main()
        if i:
            times.append(time.perf_counter() - t0)
    return {"times": times, "peak_rss": _peak_rss()}


def _child_dist(mode: str, items: int) -> dict[str, Any]:
    from noodle import metrics
    from noodle.dist import Processor

    region = mode == "region"
    with Processor(n_workers=2, threads_per_worker=1, port=0) as proc:
        proc.map(_dist_item, range(8), chunk_size=1, region=region)       # warm-up: imports, warm chunks
        time.sleep(0.5)
        base = proc.client.run(_worker_rss)
        t0 = time.perf_counter()
        out = proc.map(_dist_item, range(items), chunk_size=1, region=region)
        seconds = time.perf_counter() - t0
        ok = all(float(v[0]) == float(i) + 1.0 for i, v in enumerate(out))
        del out
        time.sleep(0.5)                # Dask drops released results on the workers asynchronously
        after = proc.client.run(_worker_rss)
    figures = {name: metrics.registry.get(name).total() if metrics.registry.get(name) is not None else 0.0
               for name in ("noodle_dist_region_tasks_total", "noodle_dist_region_copied_bytes_total",
                            "noodle_dist_region_chunks_total", "noodle_dist_region_chunks_reused_total",
                            "noodle_dist_region_objects_cleared_total")}
    return {"seconds": seconds, "base": base, "after": after, "correct": ok, "figures": figures}


_CHILDREN = {"cyclic": _child_cyclic, "chain": _child_chain, "exit": _child_exit, "make-run": _child_make_run,
             "dist": _child_dist}


def _child(case: str, *args: Any, timeout: float = 600) -> dict[str, Any]:
    """Run one measurement in a fresh Python process; its JSON answer."""
    cmd = [sys.executable, str(Path(__file__).resolve()), case, *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))
    if proc.returncode != 0:
        raise RuntimeError(f"bench memory child {' '.join(cmd[2:])} failed ({proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- rows
def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    steps = 40 if quick else 120
    heap, region = _child("cyclic", "heap", steps), _child("cyclic", "region", steps)
    rows.append(Row("memory", f"cyclic objects, 8 MB arrays, {steps} steps", "region", "heap + gc",
                    _timing([region["seconds"]]), _timing([heap["seconds"]]),
                    {"peak_rss_region": region["peak_rss"], "peak_rss_heap": heap["peak_rss"],
                     "base_rss_region": region["base_rss"], "base_rss_heap": heap["base_rss"],
                     "traced_peak_region": region["traced_peak"], "traced_peak_heap": heap["traced_peak"],
                     "faults_region": region["faults"], "faults_heap": heap["faults"]}))
    rows.append(_exit_vs_collect(quick))

    reps = 8 if quick else 20
    timing = _child("chain-timing", reps)
    heap, region = _child("chain", "heap", reps), _child("chain", "region", reps)
    rows.append(Row("memory", "eager chain 4 ops x 1e7 float64, repeated", "region", "heap",
                    Timing(*timing["region"]), Timing(*timing["heap"]),
                    {"peak_rss_region": region["peak_rss"], "peak_rss_heap": heap["peak_rss"],
                     "faults_per_rep_region": region["faults_per_rep"], "faults_per_rep_heap": heap["faults_per_rep"],
                     "min_alone_region": min(region["times"]), "min_alone_heap": min(heap["times"])}))

    held = 32
    exits = {mode: _child("exit", mode, held) for mode in ("heap", "bounded", "trim", "default")}
    rows.append(Row("memory", f"RSS after exit ({held} x 8 MiB held, 24 MiB kept)", "region, manager bounded to 1 chunk",
                    "heap", _timing([exits["bounded"]["seconds"]]), _timing([exits["heap"]["seconds"]]),
                    {mode: {k: v for k, v in e.items() if k != "seconds"} for mode, e in exits.items()}))

    runs = 1 if quick else 2
    heap, region = _child("make-run", "heap", runs), _child("make-run", "region", runs)
    rows.append(Row("memory", "make run (examples/dense_layers.py)", "one region", "heap",
                    _timing(region["times"]), _timing(heap["times"]),
                    {"peak_rss_region": region["peak_rss"], "peak_rss_heap": heap["peak_rss"]}))

    items = 60 if quick else 200
    heap, region = _child("dist", "heap", items), _child("dist", "region", items)
    rows.append(Row("memory", f"dist map, {items} array-producing chunks, 2 workers", "region=True", "no region",
                    _timing([region["seconds"]]), _timing([heap["seconds"]]),
                    {"base_region": region["base"], "after_region": region["after"], "base_heap": heap["base"],
                     "after_heap": heap["after"], "correct": region["correct"] and heap["correct"],
                     "figures": region["figures"]}))
    rows.extend(_no_help_rows(quick))
    return rows


def _exit_vs_collect(quick: bool) -> Row:
    """The region's exit against a full collection per step, both freeing the cycle at once."""
    counter = iter(range(10**9))

    def in_region() -> None:
        with nd.region("bench-cyclic-step") as r:
            _cyclic_step(r, next(counter))

    def collect() -> None:
        _cyclic_step(None, next(counter))
        gc.collect()

    a, b = time_pair(in_region, collect, min_time=0.05 if quick else 0.3, min_runs=5)
    return Row("memory", "cyclic step: region exit vs gc.collect()", "region", "gc.collect() per step", a, b,
               {"objects_tracked": len(gc.get_objects())})


def _no_help_rows(quick: bool) -> list[Row]:
    """Where regions do not help (ratios near 1 are the expected result)."""
    min_time = 0.05 if quick else 0.2
    rows = []
    small = np.random.default_rng(1).random(10_000)          # 80 KB: heap below eager_min_bytes (1 MiB)

    def small_chain() -> None:
        for _ in range(20):
            _chain(small)

    def small_in_region() -> None:
        with nd.region("bench-small"):
            small_chain()

    a, b = time_pair(small_in_region, small_chain, min_time=min_time)
    rows.append(Row("memory", "no help: 20 chains of 1e4 float64 (80 KB)", "region", "heap", a, b))
    x = np.random.default_rng(2).random(CHAIN_N // 2)

    def reduce_heap() -> float:
        return float(nd.sum(x))

    def reduce_region() -> float:
        with nd.region("bench-reduce"):
            return float(nd.sum(x))

    a, b = time_pair(reduce_region, reduce_heap, min_time=min_time)
    rows.append(Row("memory", "no help: nd.sum of 5e6 float64", "region", "heap", a, b))

    def numpy_expr() -> float:
        return float(((x + 1.0) * 2.0 - x)[-1])

    def numpy_in_region() -> float:
        with nd.region("bench-numpy"):
            return numpy_expr()

    a, b = time_pair(numpy_in_region, numpy_expr, min_time=min_time)
    rows.append(Row("memory", "no help: NumPy operators (x + 1) * 2 - x, 5e6", "region", "heap", a, b))
    return rows


# --------------------------------------------------------------------------- notes
def _mib(n: float) -> str:
    return f"{n / MiB:,.1f} MiB"


def notes(rows: list[Row]) -> list[str]:
    """RSS and page-fault figures the timing table does not show, then the targets as PASS/FAIL lines."""
    out: list[str] = []
    checks: list[str] = []

    def check(label: str, ok: bool, detail: str) -> None:
        checks.append(f"[{'PASS' if ok else 'FAIL'}] {label}: {detail}")

    for r in rows:
        e = r.extra
        if r.case.startswith("cyclic objects"):
            ratio = e["peak_rss_region"] / e["peak_rss_heap"]
            out.append(f"  {r.case}: peak RSS region {_mib(e['peak_rss_region'])} vs heap {_mib(e['peak_rss_heap'])} "
                       f"(starting RSS {_mib(e['base_rss_region'])} / {_mib(e['base_rss_heap'])}); tracemalloc peak "
                       f"{_mib(e['traced_peak_region'])} vs {_mib(e['traced_peak_heap'])} (it does not see region "
                       f"chunks); page faults {e['faults_region']:,} vs {e['faults_heap']:,}")
            check("cyclic workload: region peak RSS <= 50% of the heap's", ratio <= 0.5,
                  f"{ratio:.1%} ({e['peak_rss_heap'] / e['peak_rss_region']:.1f}x less)")
        elif r.case.startswith("cyclic step"):
            out.append(f"  {r.case}: region step {r.candidate_time.min * 1e3:.2f} ms vs step + gc.collect() "
                       f"{r.baseline_time.min * 1e3:.2f} ms ({e['objects_tracked']:,} objects tracked here)")
        elif r.case.startswith("eager chain"):
            out.append(f"  {r.case}: peak RSS region {_mib(e['peak_rss_region'])} vs heap {_mib(e['peak_rss_heap'])}; "
                       f"page faults per repetition {e['faults_per_rep_region']:,.0f} vs {e['faults_per_rep_heap']:,.0f}; "
                       f"alone in its process {e['min_alone_region'] * 1e3:.1f} vs {e['min_alone_heap'] * 1e3:.1f} ms")
            slack = 2 * MiB
            check("eager chain >= 1.3x faster in a region, peak RSS at most the heap's (2 MiB slack)",
                  r.ratio >= 1.3 and e["peak_rss_region"] <= e["peak_rss_heap"] + slack,
                  f"{r.ratio:.2f}x, peak {_mib(e['peak_rss_region'])} vs {_mib(e['peak_rss_heap'])}")
        elif r.case.startswith("RSS after exit"):
            for mode, label in (("heap", "heap"), ("bounded", "region, manager bounded to 1 chunk"),
                                ("trim", "region, default manager + trim()"),
                                ("default", "region, default manager (one region of the scope)")):
                f = e[mode]
                grew = f["after_rss"] - f["base_rss"]
                out.append(f"  RSS after exit, {label}: +{_mib(grew)} over the start, live {_mib(f['live'])}, "
                           f"kept warm {_mib(f.get('retained', 0))}")
            out.append("  (this row's times are one cold run each, in fresh processes: not a speed comparison)")
            f = e["default"]
            grew = f["after_rss"] - f["base_rss"]
            # the live data's resident size: its bytes, or what the same work leaves on the heap (live
            # bytes plus the interpreter's own allocations of the run), whichever is larger
            h = e["heap"]
            live = max(f["live"], h["after_rss"] - h["base_rss"])
            check("RSS after region exit (default manager) <= live data + one chunk",
                  grew <= live + f["chunk"], f"+{_mib(grew)} vs {_mib(live)} + {_mib(f['chunk'])}")
        elif r.case.startswith("make run"):
            out.append(f"  {r.case}: {r.ratio:.2f}x; peak RSS one region {_mib(e['peak_rss_region'])} vs heap "
                       f"{_mib(e['peak_rss_heap'])}")
        elif r.case.startswith("dist map"):
            worst = 0.0
            for mode in ("heap", "region"):
                base, after = e[f"base_{mode}"], e[f"after_{mode}"]
                parts = []
                for w in sorted(base):
                    change = (after.get(w, 0) - base[w]) / base[w]
                    parts.append(f"{_mib(base[w])} -> {_mib(after.get(w, 0))} ({change:+.1%})")
                    if mode == "region":
                        worst = max(worst, abs(change))
                out.append(f"  {r.case}, {'region=True' if mode == 'region' else 'no region'}: worker RSS "
                           + "; ".join(parts))
            fig = e["figures"]
            out.append(f"  per-task regions: {fig['noodle_dist_region_tasks_total']:g} tasks, "
                       f"{fig['noodle_dist_region_chunks_total']:g} chunks used, "
                       f"{fig['noodle_dist_region_chunks_reused_total']:g} served warm, "
                       f"{fig['noodle_dist_region_objects_cleared_total']:g} objects cleared, "
                       f"{_mib(fig['noodle_dist_region_copied_bytes_total'])} of results copied out")
            check("dist map with region=True: worker RSS after the map within 10% of its baseline",
                  worst <= 0.10 and e["correct"], f"worst worker {worst:+.1%}, results correct: {e['correct']}")
        elif r.case.startswith("no help"):
            out.append(f"  {r.case}: {r.ratio:.2f}x")
    out.extend(checks)
    out.append("Where regions do not help: arrays below 1 MiB (eager outputs) or 64 KiB (alloc.*) use the heap, "
               "where malloc already recycles warm memory; reductions and other small outputs (a scalar); NumPy's own "
               "operators (x + 1.0 bypasses noodle, and NumPy already reuses an expression's temporaries); and work "
               "whose time is compute, not page faults (the make run workload is BLAS-bound). Timings come from a "
               "shared, loaded 2-core machine: noisy, compare ratios from one run.")
    return out


def _child_main(argv: list[str]) -> None:
    case, *args = argv
    if case == "chain-timing":
        result = _child_chain_timing(int(args[0]))
    else:
        result = _CHILDREN[case](args[0], int(args[1]))
    print(json.dumps(result))


if __name__ == "__main__":
    _child_main(sys.argv[1:])
