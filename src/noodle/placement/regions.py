"""Choose the backend and device of each fused region, and say why.

Why per region: one program mixes a tiny reduction, an ``exp``-heavy float32
chain and a matmul; the backend that wins one loses another (IREE's vectorized
``exp`` against its 16-50 µs call; Numba's 1 µs call against NumPy's ``exp``;
the interpreter's per-op passes against a compile). The JIT describes each
region (:func:`region_of`), lists the backends it could use (:class:`Option`),
and :func:`choose_region` picks the cheapest estimate from the calibrated
:mod:`~noodle.placement.costs` model. A backend that cannot translate one of
the region's ops, is not installed, or could not be calibrated is excluded
with the reason, and an explicit ``backend=`` is obeyed. Pure: no I/O, no
measuring, so every rule is tested with injected rates.

Example::

    >>> from noodle.placement.costs import BackendRates
    >>> region = Region(0, ("exp",), 16, "float64", cost=RegionCost(16, "float64", 256,
    ...                 (OpCost("exp", 16, 256, "float64"),)))
    >>> fast_call = BackendRates("numba", call_overhead=1e-6, transcendental={"float64": 1e8})
    >>> slow_call = BackendRates("iree", call_overhead=30e-6, transcendental={"float64": 1e9})
    >>> choose_region(region, [Option("numba", rates=fast_call), Option("iree", rates=slow_call)]).backend
    'numba'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from noodle.ir.graph import Program
from noodle.ir.ops import OPS, OpKind
from noodle.placement.costs import (
    TRANSCENDENTAL,
    BackendRates,
    OpCost,
    RegionCost,
    overhead_share,
    region_seconds,
    transcendental_share,
)
from noodle.placement.model import format_seconds

SupportsFn = Callable[[str], tuple[bool, str]]
#: a fused backend within this factor of a cheaper per-op one (the interpreter) is preferred: the
#: estimates are that uncertain on a busy machine, and one pass makes no temporaries (less memory)
FUSED_MARGIN = 1.15


@dataclass(frozen=True)
class Region:
    """One fused region as explain shows it: its ops, size, dtype, and the model's summary."""

    index: int                       # position among the program's fused regions
    ops: tuple[str, ...]             # op names, in program order
    elems: int                       # iteration-space elements
    dtype: str
    on_gpu: bool = False             # operands live in GPU memory (CuPy)
    cost: RegionCost | None = None

    def __str__(self) -> str:
        shown = ", ".join(self.ops[:8]) + (f", ... ({len(self.ops)} ops)" if len(self.ops) > 8 else "")
        return f"region {self.index}: {shown} on {self.elems:,} {self.dtype}"


@dataclass(frozen=True)
class Option:
    """A backend the JIT could use for a region: its rates, or why it cannot be used at all."""

    backend: str
    device: str = "cpu"
    rates: BackendRates | None = None
    supports: SupportsFn | None = None     # the backend's op-table check; None: every op
    unavailable: str = ""                   # non-empty: excluded everywhere, with this reason
    gpu: bool = False                       # runs on GPU memory (CuPy arrays in and out)


@dataclass(frozen=True)
class Candidate:
    """One backend considered for a region: its estimate, or why it was excluded."""

    backend: str
    device: str
    seconds: float | None            # None when excluded
    excluded: str = ""

    def __str__(self) -> str:
        if self.excluded:
            return f"{self.backend} excluded: {self.excluded}"
        return f"{self.backend} ({self.device}) {format_seconds(self.seconds or 0.0)}"


@dataclass(frozen=True)
class RegionChoice:
    """Where one region runs, every candidate with its estimate, and the reason in words."""

    region: Region
    backend: str
    device: str
    reason: str
    candidates: tuple[Candidate, ...] = ()
    fallbacks: tuple[str, ...] = ()   # the next-cheapest usable backends, in order (if the chosen fails to compile)

    def __str__(self) -> str:
        lines = [f"{self.region} -> {self.backend} ({self.device}): {self.reason}"]
        lines += [f"    {c}" for c in self.candidates]
        return "\n".join(lines)


@dataclass(frozen=True)
class Plan:
    """The placement of every fused region of one program (what ``f.explain(*args)`` returns)."""

    program: str
    requested: str | None            # the backend= asked for (None/"auto": placement chose)
    regions: tuple[RegionChoice, ...] = ()
    interpreted_nodes: int = 0       # lone nodes (reshape, a reduction of an input) the interpreter runs
    notes: tuple[str, ...] = field(default_factory=tuple)

    def counts(self) -> dict[str, int]:
        """Regions per chosen backend."""
        out: dict[str, int] = {}
        for r in self.regions:
            out[r.backend] = out.get(r.backend, 0) + 1
        return out

    @property
    def backends(self) -> tuple[str, ...]:
        """The chosen backends, each once, in region order."""
        return tuple(dict.fromkeys(r.backend for r in self.regions))

    def __str__(self) -> str:
        head = f"{self.program}: {len(self.regions)} fused region(s)"
        head += f", backend={self.requested!r}" if self.requested not in (None, "auto") else ", placed per region"
        if self.interpreted_nodes:
            head += f"; {self.interpreted_nodes} lone node(s) run by the interpreter"
        return "\n".join([head, *(str(r) for r in self.regions), *self.notes])



def _nbytes(shape: tuple[int, ...], dtype: str) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def region_of(program: Program, index: int, members: Sequence[int], inputs: Sequence[int],
              outputs: Sequence[int], on_gpu: bool = False) -> Region:
    """Describe the fused region ``members`` of ``program`` (reading ``inputs``, leaving ``outputs``)."""
    nodes = program.nodes
    ops: list[OpCost] = []
    elems = 0
    for m in members:
        node = nodes[m]
        row = OPS[node.op]
        arg_bytes = sum(_nbytes(nodes[a].shape, nodes[a].dtype) for a in node.args if nodes[a].shape)
        n = int(np.prod(node.shape, dtype=np.int64))
        flops = 0.0
        if row.kind is OpKind.REDUCE:
            n = int(np.prod(nodes[node.args[0]].shape, dtype=np.int64))
        elif row.kind is OpKind.MATMUL:
            a = nodes[node.args[0]].shape
            flops = 2.0 * n * (a[-1] if a else 1)
        ops.append(OpCost(node.op, n, arg_bytes + _nbytes(node.shape, node.dtype), node.dtype, flops))
        elems = max(elems, n)
    floats = [nodes[m].dtype for m in members if nodes[m].dtype.startswith("float")]
    dtype = max(floats, key=_width) if floats else nodes[members[-1]].dtype
    io = sum(_nbytes(nodes[v].shape, nodes[v].dtype) for v in inputs if nodes[v].shape)
    io += sum(_nbytes(nodes[v].shape, nodes[v].dtype) for v in outputs)
    cost = RegionCost(elems, dtype, io, tuple(ops))
    return Region(index, tuple(nodes[m].op for m in members), elems, dtype, on_gpu, cost)


def _width(dtype: str) -> int:
    return np.dtype(dtype).itemsize


def choose_region(region: Region, options: Sequence[Option], forced: str | None = None) -> RegionChoice:
    """The backend for ``region``: ``forced`` if given, else the cheapest usable option."""
    candidates: list[Candidate] = []
    usable: list[tuple[float, Option]] = []
    for opt in options:
        why = _excluded(region, opt)
        if why:
            candidates.append(Candidate(opt.backend, opt.device, None, why))
            continue
        assert opt.rates is not None and region.cost is not None
        sec = region_seconds(opt.rates, region.cost)
        candidates.append(Candidate(opt.backend, opt.device, sec))
        usable.append((sec, opt))
    usable.sort(key=lambda t: t[0])
    usable = _prefer_fused(usable)
    order = tuple(o.backend for _, o in usable)
    if forced not in (None, "auto"):
        device = next((o.device for o in options if o.backend == forced), "cpu")
        return RegionChoice(region, forced, device, f"backend={forced!r} was asked for", tuple(candidates))
    if not usable:
        return RegionChoice(region, "interpret", "cpu", "no compiled backend can run it: "
                            + "; ".join(str(c) for c in candidates), tuple(candidates))
    best_sec, best = usable[0]
    return RegionChoice(region, best.backend, best.device, _why(region, usable), tuple(candidates), order[1:])


def _prefer_fused(usable: list[tuple[float, Option]]) -> list[tuple[float, Option]]:
    """``usable`` (cheapest first) with the cheapest fused option first when it is within FUSED_MARGIN
    of a cheaper per-op one."""
    if not usable or usable[0][1].rates is None or usable[0][1].rates.fused:
        return usable
    for i, (sec, opt) in enumerate(usable):
        if opt.rates is not None and opt.rates.fused:
            if sec <= usable[0][0] * FUSED_MARGIN:
                return [usable[i], *usable[:i], *usable[i + 1:]]
            break
    return usable


def _excluded(region: Region, opt: Option) -> str:
    if opt.unavailable:
        return opt.unavailable
    if opt.gpu != region.on_gpu and opt.backend != "interpret":
        return ("its operands live in GPU memory; this backend takes host arrays" if region.on_gpu else
                "its operands are NumPy arrays and the caller gets NumPy back; this backend works on GPU arrays")
    if opt.supports is not None:
        for op in dict.fromkeys(region.ops):
            ok, why = opt.supports(op)
            if not ok:
                return f"cannot translate {op!r}: {why}" if why else f"cannot translate {op!r}"
    if opt.rates is None or region.cost is None:
        return "not calibrated on this machine"
    if any(OPS[op].kind is OpKind.MATMUL for op in region.ops) and not opt.rates.matmul:
        return "its matmul throughput is not calibrated (matmul regions stay on BLAS)"
    return ""


def _why(region: Region, usable: list[tuple[float, Option]]) -> str:
    sec, best = usable[0]
    assert best.rates is not None and region.cost is not None
    parts = [f"cheapest estimate ({format_seconds(sec)})"]
    if len(usable) > 1 and usable[1][0] < sec:
        parts = [f"estimate {format_seconds(sec)}, within {FUSED_MARGIN:.2f}x of {usable[1][1].backend} "
                 f"({format_seconds(usable[1][0])}): one fused pass is preferred (no temporaries)"]
    elif len(usable) > 1:
        parts.append(f"next {usable[1][1].backend} {format_seconds(usable[1][0])}")
    if overhead_share(best.rates, region.cost) > 0.5:
        parts.append(f"small region: call overhead dominates and {best.backend}'s is the lowest")
    elif any(o.rates is not None and transcendental_share(o.rates, region.cost) > 0.5 for _, o in usable) and \
            best.rates.exp_rate(region.dtype) >= max(o.rates.exp_rate(region.dtype) for _, o in usable if o.rates):
        libm = "/".join(sorted({o for o in region.ops if o in TRANSCENDENTAL}))
        parts.append(f"{libm}-heavy {region.dtype}: {best.backend} has the fastest measured {libm} for it")
    return "; ".join(parts)


__all__ = ["Candidate", "Option", "Plan", "Region", "RegionChoice", "choose_region", "region_of"]
