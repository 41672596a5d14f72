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
from noodle.placement.regions import Plan, RegionChoice

log = logging.getLogger("noodle.jit")

#: candidates whose model estimate is within this factor of the cheapest one are timed
TUNE_FACTOR = 4.0
#: seconds of timing one region may spend after the warm-up round (at least MIN_ROUNDS rounds)
BUDGET_S = 0.3
MIN_ROUNDS, MAX_ROUNDS = 3, 15
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
                      repr(node.attrs)])
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
                data = {k: v for k, v in raw.get("decisions", {}).items()
                        if isinstance(v, dict) and isinstance(v.get("order"), list)}
        except (OSError, ValueError, AttributeError):
            pass   # none yet, or unreadable: decisions are measured again
        _decisions = data
    return _decisions


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


def _decision_key(region: str, names: Sequence[str]) -> str:
    from noodle.jit.placing import toolchain  # noqa: PLC0415 - placing imports this module

    return region + "|" + ",".join(f"{n}={toolchain(n)}" for n in sorted(names))


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
    fast path: no NaN from log/sqrt, no overflow in exp)."""
    dt = np.dtype(node.dtype)
    shape = tuple(node.shape)
    size = int(np.prod(shape, dtype=np.int64))
    if dt.kind == "b":
        flat = (np.arange(size) % 3) == 0
    elif dt.kind in "iu":
        flat = (np.arange(size) % 97 + 1).astype(dt)
    elif dt.kind == "c":
        flat = (np.linspace(0.1, 1.0, size) + 0.5j).astype(dt)
    else:
        flat = np.linspace(0.1, 1.0, size, dtype=np.float64).astype(dt)
    return flat.reshape(shape)


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
        args = _inputs_of(program, ins)
        calls[name] = lambda fn=fn, args=args: fn(*args)
    best: dict[str, float] = {}
    live = list(calls)
    with np.errstate(all="ignore"):
        for name in live:              # warm-up: lazy variants compile, pages fault in
            t0 = time.perf_counter()
            calls[name]()
            best[name] = time.perf_counter() - t0
        # blocks of calls per candidate, the order alternating: a backend's worker threads may
        # spin on after its call (IREE's do), slowing whatever runs next on a small machine, so
        # each block's best call is one that follows a call of the same backend
        block = {n: max(2, min(BLOCK_CALLS, int(BLOCK_S / max(best[n], 1e-7)))) for n in live}
        start = time.perf_counter()
        rounds = 0
        while live and rounds < MAX_ROUNDS and (rounds < MIN_ROUNDS or time.perf_counter() - start < BUDGET_S):
            for name in (live if rounds % 2 == 0 else live[::-1]):
                fn = calls[name]
                for _ in range(block[name]):
                    t0 = time.perf_counter()
                    fn()
                    best[name] = min(best[name], time.perf_counter() - t0)
            rounds += 1
            fastest = min(best[n] for n in live)
            live = [n for n in live if best[n] <= fastest * DROP_FACTOR]
    return best


def _measured_choice(choice: RegionChoice, seconds: dict[str, float]) -> RegionChoice:
    order = sorted(seconds, key=seconds.__getitem__)
    model = choice.backend
    if model in seconds and order[0] != model and seconds[model] <= seconds[order[0]] * (1 + KEEP_MARGIN):
        order = [model, *(b for b in order if b != model)]   # within the noise: the model's pick stays
    rest = [b for b in (choice.backend, *choice.fallbacks) if b not in order]
    shown = ", ".join(f"{b} {_fmt(seconds[b])}" for b in order)
    reason = f"measured on its shapes: {shown}"
    return replace(choice, backend=order[0], device="cpu", reason=reason, fallbacks=(*order[1:], *rest))


def _fmt(sec: float) -> str:
    return f"{sec * 1e6:.1f} µs" if sec < 1e-3 else f"{sec * 1e3:.2f} ms"


def tune(program: Program, plan: Plan, measure: bool = True) -> Plan:
    """``plan`` with each close call replaced by the measured fastest backend (from the saved
    decisions, or timed now when ``measure``); unchanged when measuring is off."""
    if plan.requested not in (None, "auto") or not plan.regions or not enabled():
        return plan
    regions = region_units(program)
    if len(regions) != len(plan.regions):
        return plan
    new: list[RegionChoice] = []
    notes: list[str] = []
    changed = False
    for unit, choice in zip(regions, plan.regions, strict=True):
        names = _contenders(choice)
        if len(names) < 2:
            new.append(choice)
            continue
        key = _decision_key(region_key(program, unit), names)
        with _lock:
            saved = _load().get(key)
        if saved is None and measure:
            seconds = measure_region(program, unit, names)
            if len(seconds) >= 2:
                saved = {"order": sorted(seconds, key=seconds.__getitem__), "seconds": seconds,
                         "at": time.time()}
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
        if len(seconds) < 2:
            new.append(choice)
            continue
        new.append(_measured_choice(choice, seconds))
        changed = True
    if not changed and not notes:
        return plan
    return replace(plan, regions=tuple(new), notes=(*plan.notes, *notes))


__all__ = ["TUNE_FACTOR", "enabled", "forget", "measure_region", "region_key", "region_units", "tune"]
