"""Measured placement: the cost model's close calls settled by timing, once per machine.

Why: the per-backend roofline (:mod:`noodle.placement.costs`) is right about large
gaps and wrong about close ones. At 1e5 float32 elements the fused chain took
0.26 ms on Numba, 0.36 ms on IREE and 0.23 ms in NumPy while the model ranked IREE
first; per-call overheads, thread launches and vectorized ``exp`` loops move by 2x
with the op mix. So, under ``backend="auto"``, every candidate whose estimate is
within :data:`TUNE_FACTOR` of the cheapest, and the interpreter (what plain NumPy
costs), is compiled and timed on the region's own shapes and dtypes,
interleaved, and the fastest wins. The decision is kept per region signature,
CPU and toolchain in ``<NOODLE_CACHE_DIR>/placement_measured.json``, so a later
process (and ``f.explain``) reuses it without timing again.

Not measured: regions on GPU operands (the model's transfer terms decide),
regions with one usable candidate, injected calibrations (tests and what-if
studies ask the model), and everything when ``NOODLE_PLACE_MEASURE=0``.

Example::

    >>> import numpy as np
    >>> from noodle.trace import trace
    >>> from noodle.passes import optimize
    >>> prog = optimize(trace(lambda a: a * 2.0 + 1.0, (np.ones(4),)))
    >>> len(region_key(prog, region_units(prog)[0]))
    40
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from noodle.config import get_settings
from noodle.ir.graph import Program
from noodle.passes.schedule import Unit, units
from noodle.placement import calibrate
from noodle.placement.model import format_seconds
from noodle.placement.regions import Plan, RegionChoice

log = logging.getLogger("noodle.jit")

#: candidates whose model estimate is within this factor of the cheapest one are timed
TUNE_FACTOR = 4.0
#: seconds of timing one region may spend after the warm-up round (at least MIN_ROUNDS rounds)
BUDGET_S = 0.3
MIN_ROUNDS, MAX_ROUNDS = 3, 15
#: timing stops after this many seconds whatever the rounds (a region of slow calls)
HARD_BUDGET_S = 1.0
#: regions whose cheapest estimate is above this, or whose inputs are above MAX_SAMPLE_BYTES, are
#: left to the model: timing them would cost seconds at the first compile, and at that size the
#: model's bandwidth and libm terms dominate and rank well
MAX_ESTIMATE_S = 0.1
MAX_SAMPLE_BYTES = 1 << 30
#: one compile measures for at most this long over all its regions (the rest: the model, noted)
PROGRAM_BUDGET_S = 3.0
#: calls per candidate in one round: as many as take BLOCK_S, between 2 and BLOCK_CALLS
BLOCK_S, BLOCK_CALLS = 0.01, 20
#: a candidate this many times slower than the best after the warm-up round is not timed further
DROP_FACTOR = 2.0
#: the model's pick stays unless another candidate measured this much faster: a parallel kernel's
#: best time on a shared 2-core machine moved by 30-50% from one timing to the next, a NumPy
#: pass's by 5%, so a near tie is noise, not evidence
KEEP_MARGIN = 0.10
#: most decisions the file keeps (the oldest go first)
MAX_DECISIONS = 4096
FILE_VERSION = 1

_lock = threading.Lock()
_decisions: dict[str, dict[str, Any]] | None = None


def enabled() -> bool:
    """Whether close calls are measured: ``NOODLE_PLACE_MEASURE`` (default true) and a calibration
    that is this machine's own (an injected one asks for the model's answers)."""
    return bool(get_settings().place_measure) and not calibrate.injected()


def region_units(program: Program) -> list[Unit]:
    """The fused regions of ``program``, in the order the runner compiles them."""
    from noodle.jit.lower import is_region  # noqa: PLC0415 - lower imports placing, which imports this

    return [u for u in units(program) if is_region(program, u)]


def region_key(program: Program, unit: Unit) -> str:
    """A digest of what the region computes and on what shapes: its members (op, dtype, shape,
    attributes, operands by position) and its inputs (dtype, shape). Values do not enter it."""
    nodes = program.nodes
    pos = {v: ("i", k) for k, v in enumerate(unit.inputs)}
    pos.update({m: ("m", k) for k, m in enumerate(unit.members)})
    parts: list[Any] = [[nodes[v].dtype, list(nodes[v].shape)] for v in unit.inputs]
    for m in unit.members:
        node = nodes[m]
        parts.append([node.op, node.dtype, list(node.shape), [pos[a] for a in node.args],
                      repr(tuple(kv for kv in node.attrs if kv[0] != "group"))])
    parts.append([pos[o] for o in unit.outputs])
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()


def _path() -> Path:
    return Path(get_settings().cache_dir) / "placement_measured.json"


def _fingerprint() -> str:
    return calibrate.fingerprint([])


def _load() -> dict[str, dict[str, Any]]:
    global _decisions
    if _decisions is None:
        data: dict[str, dict[str, Any]] = {}
        try:
            raw = json.loads(_path().read_text())
            if raw.get("version") == FILE_VERSION and raw.get("fingerprint") == _fingerprint():
                data = {k: {"seconds": secs} for k, v in raw.get("decisions", {}).items()
                        if isinstance(k, str) and (secs := _valid_seconds(v)) is not None}
        except Exception:  # noqa: BLE001 - none yet, unreadable or hostile: decisions are measured again
            data = {}
        _decisions = data
    return _decisions


def _valid_seconds(entry: Any) -> dict[str, float] | None:
    """The ``seconds`` of a saved decision if it is a map of backend names to finite positive
    seconds (anything else in the file is ignored: it is data, never trusted)."""
    secs = entry.get("seconds") if isinstance(entry, dict) else None
    if not isinstance(secs, dict) or not secs:
        return None
    out: dict[str, float] = {}
    for name, sec in secs.items():
        if not isinstance(name, str) or isinstance(sec, bool) or not isinstance(sec, (int, float)):
            return None
        if not math.isfinite(sec) or sec <= 0:
            return None
        out[name] = float(sec)
    return out


def _save(decisions: dict[str, dict[str, Any]]) -> None:
    payload = {"version": FILE_VERSION, "fingerprint": _fingerprint(), "decisions": decisions}
    try:
        calibrate.write_json(_path(), payload, indent=1)
    except OSError as exc:
        log.warning("noodle.jit: could not save measured placements to %s (%s); they will be measured "
                    "again in the next process", _path(), exc)


def forget() -> None:
    """Drop the measured decisions of this process (the file stays; tests and re-measuring)."""
    global _decisions
    with _lock:
        _decisions = None


def _toolchains(names: Sequence[str]) -> str:
    """The candidates' compiler versions (a new one is timed again)."""
    from noodle.jit.placing import toolchain  # noqa: PLC0415 - placing imports this module

    return ",".join(f"{n}={toolchain(n)}" for n in sorted(names))


def _decision_key(region: str, names: Sequence[str]) -> str:
    return region + "|" + _toolchains(names)


def _contenders(choice: RegionChoice) -> list[str]:
    """The usable candidates whose estimate is within TUNE_FACTOR of the cheapest (cheapest first)."""
    est = [(c.seconds, c.backend) for c in choice.candidates if c.seconds is not None and not c.excluded]
    if len(est) < 2 or choice.region.on_gpu or any(c.device != "cpu" for c in choice.candidates
                                                    if c.seconds is not None):
        return []
    best = min(s for s, _ in est)
    close = [b for s, b in sorted(est) if s <= best * TUNE_FACTOR]
    # the interpreter is what plain NumPy costs: always timed, so auto is never slower than NumPy
    # (its per-op estimate is the least reliable one: cached temporaries at 1e5 elements are 10x
    # cheaper than the page-faulting ones the probe sees at 1e6)
    if "interpret" not in close and any(b == "interpret" for _, b in est):
        close.append("interpret")
    return close


def _sample(node: Any) -> np.ndarray:
    """Timing data of ``node``'s shape and dtype: positive, moderate values (every op is on its
    fast path: no NaN from log/sqrt, no overflow in exp), built in its own dtype."""
    dt = np.dtype(node.dtype)
    shape = tuple(node.shape)
    size = int(np.prod(shape, dtype=np.int64))
    k = np.arange(1021)   # a pattern, tiled: no full-size float64 temporary
    if dt.kind == "b":
        pattern: np.ndarray = (k % 3) == 0
    elif dt.kind in "iu":
        pattern = (k % 97 + 1).astype(dt)
    elif dt.kind == "c":
        pattern = (0.1 + 0.9 * k / 1021 + 0.5j).astype(dt)
    else:
        pattern = (0.1 + 0.9 * k / 1021).astype(dt)
    return np.resize(pattern, size).reshape(shape)


def _inputs_of(program: Program, ins: Sequence[int]) -> list[Any]:
    nodes = program.nodes
    out: list[Any] = []
    for v in ins:
        node = nodes[v]
        if node.op == "const":
            out.append(program.consts[node.attr("index")])
        else:
            out.append(_sample(node))
    return out


def measure_region(program: Program, unit: Unit, names: Sequence[str]) -> dict[str, float]:
    """Best seconds per call of each backend in ``names`` on ``unit``, timed interleaved on sample
    data of its shapes; a backend that fails to compile is left out."""
    from noodle.backends.registry import get_backend  # noqa: PLC0415
    from noodle.jit.lower import _compile_unit  # noqa: PLC0415

    calls: dict[str, Callable[[], Any]] = {}
    for name in names:
        try:
            fn, ins, _ = _compile_unit(program, unit, name if name == "interpret" else get_backend(name))
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot compile is not a candidate
            log.info("noodle.jit: %s cannot compile a region (%s: %s); not measured", name,
                     type(exc).__name__, exc)
            continue
        try:
            args = _inputs_of(program, ins)
        except MemoryError:
            log.info("noodle.jit: no memory for sample inputs of a region; not measured")
            return {}
        calls[name] = lambda fn=fn, args=args: fn(*args)
    best: dict[str, float] = {}
    with np.errstate(all="ignore"):
        for name in list(calls):       # warm-up: lazy variants compile, pages fault in
            sec = _timed(name, calls[name])
            if sec is None:
                del calls[name]
            else:
                best[name] = sec
        live = list(calls)
        # blocks of calls per candidate, the order alternating: a backend's worker threads may
        # spin on after its call (IREE's do), slowing whatever runs next on a small machine, so
        # each block's best call is one that follows a call of the same backend
        block = {n: max(1, min(BLOCK_CALLS, int(BLOCK_S / max(best[n], 1e-7)))) for n in live}
        start = time.perf_counter()
        rounds = 0
        while live and rounds < MAX_ROUNDS and (rounds < MIN_ROUNDS or time.perf_counter() - start < BUDGET_S):
            for name in (live if rounds % 2 == 0 else live[::-1]):
                for _ in range(block[name]):
                    sec = _timed(name, calls[name])
                    if sec is None:
                        best.pop(name, None)
                        break
                    best[name] = min(best[name], sec)
            rounds += 1
            live = [n for n in live if n in best]
            if not live or time.perf_counter() - start > HARD_BUDGET_S:
                break
            fastest = min(best[n] for n in live)
            live = [n for n in live if best[n] <= fastest * DROP_FACTOR]
    return best


def _timed(name: str, fn: Callable[[], Any]) -> float | None:
    """Seconds of one call of ``fn``; None (and the reason logged) when it raises: a candidate that
    fails on sample data is dropped, the others are still compared."""
    t0 = time.perf_counter()
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - MemoryError, a kernel's own check: not this candidate
        log.info("noodle.jit: %s failed on sample data while being timed (%s: %s); not a candidate",
                 name, type(exc).__name__, exc)
        return None
    return time.perf_counter() - t0


def _measured_choice(choice: RegionChoice, seconds: dict[str, float]) -> RegionChoice:
    order = sorted(seconds, key=seconds.__getitem__)
    model = choice.backend
    if model in seconds and order[0] != model and seconds[model] <= seconds[order[0]] * (1 + KEEP_MARGIN):
        order = [model, *(b for b in order if b != model)]   # within the noise: the model's pick stays
    rest = [b for b in (choice.backend, *choice.fallbacks) if b not in order]
    shown = ", ".join(f"{b} {format_seconds(seconds[b])}" for b in order)
    reason = f"measured on its shapes: {shown}"
    return replace(choice, backend=order[0], device="cpu", reason=reason, fallbacks=(*order[1:], *rest))



def _worth_timing(program: Program, unit: Unit, choice: RegionChoice) -> bool:
    """Small enough to time at a compile: cheapest estimate and sample inputs under the caps."""
    est = [c.seconds for c in choice.candidates if c.seconds is not None]
    if not est or min(est) > MAX_ESTIMATE_S:
        return False
    nodes = program.nodes
    size = sum(int(np.prod(nodes[v].shape, dtype=np.int64)) * np.dtype(nodes[v].dtype).itemsize
               for v in unit.inputs)
    return size <= MAX_SAMPLE_BYTES


def tune(program: Program, plan: Plan, measure: bool = True, regions: Sequence[Unit] | None = None) -> Plan:
    """``plan`` with each close call replaced by the measured fastest backend (from the saved
    decisions, or timed now when ``measure``); unchanged when measuring is off. ``regions``: the
    plan's region units when the caller has them (else :func:`region_units`)."""
    if plan.requested not in (None, "auto") or not plan.regions or not enabled():
        return plan
    if regions is None:
        regions = region_units(program)
    if len(regions) != len(plan.regions):
        return plan
    new: list[RegionChoice] = []
    notes: list[str] = []
    changed = False
    started = time.perf_counter()
    for unit, choice in zip(regions, plan.regions, strict=True):
        names = _contenders(choice)
        if len(names) < 2:
            new.append(choice)
            continue
        key = _decision_key(region_key(program, unit), names)
        with _lock:
            saved = _load().get(key)
        if saved is None and measure and not _worth_timing(program, unit, choice):
            new.append(choice)
            continue
        if saved is None and measure and time.perf_counter() - started > PROGRAM_BUDGET_S:
            notes.append(f"region {choice.region.index}: not timed (this compile's {PROGRAM_BUDGET_S:g} s of "
                         "timing was spent); the model's pick")
            new.append(choice)
            continue
        if saved is None and measure:
            seconds = measure_region(program, unit, names)
            # kept even when only one candidate compiled: else every later compile would try the
            # failing one again (an IREE compile is a second) and time the rest again
            if seconds:
                saved = {"seconds": seconds}
                with _lock:
                    decisions = _load()
                    decisions[key] = saved
                    while len(decisions) > MAX_DECISIONS:
                        decisions.pop(next(iter(decisions)))
                    _save(decisions)
        if saved is None:
            if not measure:
                notes.append(f"region {choice.region.index}: {', '.join(names)} are within "
                             f"{TUNE_FACTOR:g}x; the first compile times them and keeps the fastest")
            new.append(choice)
            continue
        seconds = {b: float(s) for b, s in saved.get("seconds", {}).items() if b in names}
        if not seconds:
            new.append(choice)
            continue
        new.append(_measured_choice(choice, seconds))
        changed = True
    if not changed and not notes:
        return plan
    return replace(plan, regions=tuple(new), notes=(*plan.notes, *notes))


__all__ = ["TUNE_FACTOR", "enabled", "forget", "measure_region", "region_key", "region_units", "tune"]
