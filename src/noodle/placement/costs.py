"""Per-backend cost model of one fused region, and its fit from a few probes.

Why per backend and not per device: on one CPU the interpreter (one NumPy pass
over memory per op), Numba (one fused loop, but NumPy's ``exp`` for libm ops)
and IREE (one fused, vectorized loop with its own ``exp``, but 16-50 µs per
call) differ by 4x in both directions depending on the region's size and op
mix. A roofline per backend (call overhead + the slower of memory traffic and
arithmetic, with transcendental throughput per dtype) captures that, and its
few parameters are fitted from short probes measured on this machine.

Example::

    >>> rates = BackendRates("numba", call_overhead=1e-6, bandwidth=10e9, flops=4e9,
    ...                      transcendental={"float64": 2e8})
    >>> region = RegionCost(elems=1_000_000, dtype="float64", io_bytes=48_000_000,
    ...                     ops=(OpCost("add", 1_000_000, 24_000_000, "float64"),))
    >>> round(region_seconds(rates, region) * 1e3, 2)   # memory-bound: 48 MB at 10 GB/s
    4.8
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from noodle.ir.ops import OPS, OpKind

# ops whose per-element cost is a math-library call (not one instruction): their
# throughput is measured separately, per dtype (float32 exp is 2-10x float64 where vectorized)
TRANSCENDENTAL = frozenset(name for name, row in OPS.items() if row.libm)
PROBE_ELEMS = 1_000_000      # large enough to leave the caches, small enough to probe in milliseconds
ARITH_CHAIN = 8              # the arithmetic probe is ``x = x * c + d`` this many times (2 ops each)


@dataclass(frozen=True)
class OpCost:
    """One op of a region: its name, elements it touches, bytes it would move alone, result dtype."""

    op: str
    elems: int
    bytes_alone: int        # operands + result, as one NumPy call would read and write them
    dtype: str
    flops: float = 0.0      # only for matmul: 2*m*n*k


@dataclass(frozen=True)
class RegionCost:
    """What the cost model needs to know about one fused region."""

    elems: int              # iteration-space elements
    dtype: str              # the dtype the region computes in (its widest float result)
    io_bytes: int           # bytes a fused kernel reads and writes (inputs + outputs, once each)
    ops: tuple[OpCost, ...]


@dataclass(frozen=True)
class BackendRates:
    """Fitted throughputs of one backend on one device (one calibration entry).

    ``fused``: the backend runs a region as one pass (Numba, IREE, CUDA); False: one pass
    per op (the interpreter), so ``call_overhead`` is paid per op and memory per op.
    """

    backend: str
    device: str = "cpu"
    fused: bool = True
    call_overhead: float = 2e-6                  # seconds per call (per op when not fused)
    bandwidth: float = 10e9                      # bytes/s, streaming
    flops: float = 1e9                           # cheap elementwise ops/s (add, multiply, compare, ...)
    transcendental: dict[str, float] = field(default_factory=dict)   # libm elements/s by dtype
    matmul: dict[str, float] = field(default_factory=dict)           # flop/s by dtype ({}: not calibrated)
    toolchain: str = ""                          # the backend's version: a new one is re-probed
    measured_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BackendRates:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def exp_rate(self, dtype: str) -> float:
        """libm elements/s for ``dtype`` (float64's rate when the dtype was not probed)."""
        rate = self.transcendental.get(dtype) or self.transcendental.get("float64")
        return rate if rate else self.flops / 20.0


def _op_seconds(rates: BackendRates, op: OpCost) -> float:
    """Arithmetic seconds of one op (no memory, no overhead)."""
    if OPS[op.op].kind is OpKind.MATMUL:
        rate = rates.matmul.get(op.dtype) or max(rates.matmul.values(), default=0.0)
        return op.flops / rate if rate > 0 else float("inf")
    if op.op in TRANSCENDENTAL:
        return op.elems / rates.exp_rate(op.dtype)
    if OPS[op.op].kind is OpKind.SHAPE:
        return 0.0
    return op.elems / rates.flops


def region_seconds(rates: BackendRates, region: RegionCost) -> float:
    """Estimated seconds for one call of ``region`` on the backend ``rates`` describes (data resident)."""
    bw = max(rates.bandwidth, 1.0)
    if not rates.fused:
        return sum(rates.call_overhead + max(op.bytes_alone / bw, _op_seconds(rates, op)) for op in region.ops)
    matmul = sum(_op_seconds(rates, op) for op in region.ops if OPS[op.op].kind is OpKind.MATMUL)
    work = sum(_op_seconds(rates, op) for op in region.ops if OPS[op.op].kind is not OpKind.MATMUL)
    return rates.call_overhead + matmul + max(region.io_bytes / bw, work)


def overhead_share(rates: BackendRates, region: RegionCost) -> float:
    """The fraction of the estimate that is per-call overhead (explain says 'small region' above 1/2)."""
    total = region_seconds(rates, region)
    calls = rates.call_overhead * (1 if rates.fused else len(region.ops))
    return calls / total if total > 0 else 1.0


def transcendental_share(rates: BackendRates, region: RegionCost) -> float:
    """The fraction of the estimate spent in libm ops (explain says 'exp-heavy' above 1/2)."""
    total = region_seconds(rates, region)
    libm = sum(op.elems / rates.exp_rate(op.dtype) for op in region.ops if op.op in TRANSCENDENTAL)
    return min(libm / total, 1.0) if total > 0 else 0.0


# The probes every backend runs once (name, dtype, elements): a one-op stream at two sizes
# (overhead and bandwidth), a cheap arithmetic chain (flop rate) and exp per float dtype
# (transcendental rate). The JIT turns each into a kernel of the backend being probed.
PROBES: tuple[tuple[str, str, int], ...] = (
    ("stream", "float64", 16),
    ("stream", "float64", PROBE_ELEMS),
    ("arith", "float64", PROBE_ELEMS),
    ("exp", "float32", PROBE_ELEMS),
    ("exp", "float64", PROBE_ELEMS),
)


def fit(backend: str, seconds: Mapping[tuple[str, str, int], float], fused: bool, device: str = "cpu",
        matmul: Mapping[str, float] | None = None, toolchain: str = "", measured_at: float = 0.0) -> BackendRates:
    """BackendRates from the probe timings ``seconds`` (keyed like :data:`PROBES`).

    The one-op stream at 16 elements is the per-call overhead; the large probes'
    seconds above it give bytes/s, op/s and libm elements/s. Not fused (the
    interpreter): the arithmetic chain pays the overhead once per op.
    """
    tiny = 1e-12
    n = PROBE_ELEMS
    overhead = seconds[("stream", "float64", 16)]
    bandwidth = 3 * 8 * n / max(seconds[("stream", "float64", n)] - overhead, tiny)
    ops = 2 * ARITH_CHAIN
    arith = seconds[("arith", "float64", n)] - overhead * (1 if fused else ops)
    flops = ops * n / max(arith, tiny)
    trans = {dt: n / max(seconds[("exp", dt, n)] - overhead, tiny)
             for dt in ("float32", "float64") if ("exp", dt, n) in seconds}
    return BackendRates(backend, device, fused, overhead, bandwidth, flops, trans, dict(matmul or {}),
                        toolchain, measured_at)


__all__ = ["ARITH_CHAIN", "PROBES", "PROBE_ELEMS", "BackendRates", "OpCost", "RegionCost", "fit",
           "overhead_share", "region_seconds", "transcendental_share"]
