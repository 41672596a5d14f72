"""The cost model: estimated seconds for one op on each device.

Why a model and not a size threshold: whether the GPU wins depends on the op's
arithmetic intensity (matmul at 1000² is compute-bound, an add is
bandwidth-bound), on where the operands already live (a transfer over PCIe can
cost more than the op), and on this machine's measured throughputs. The
estimate is deliberately simple (roofline: the slower of compute and memory
traffic, plus transfers and a fixed launch cost) so it is cheap and explainable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from noodle.ir.ops import OpDef, OpKind


@dataclass(frozen=True)
class DeviceRates:
    """Measured throughputs of one device (calibration output)."""

    bandwidth: float            # bytes/s for streaming elementwise work
    flops: float                # elementwise arithmetic, flop/s
    transcendental: float       # elementwise exp/log/sin..., elements/s
    matmul_flops: dict[str, float] = field(default_factory=dict)   # by dtype name
    call_overhead: float = 2e-6   # seconds per op call
    h2d: float = 0.0            # host->device bytes/s (GPU only)
    d2h: float = 0.0            # device->host bytes/s (GPU only)


@dataclass(frozen=True)
class OpShape:
    """What the model needs to know about one call."""

    op: OpDef
    out_elems: int
    in_bytes: int               # bytes read from all operands
    out_bytes: int              # bytes written
    itemsize: int
    dtype: str
    flops: float                # total arithmetic work
    host_bytes: int             # operand bytes currently in host memory
    device_bytes: int           # operand bytes currently in GPU memory


def op_shape(op: OpDef, shapes: list[tuple[int, ...]], itemsizes: list[int], on_gpu: list[bool],
             out_elems: int, out_itemsize: int, dtype: str) -> OpShape:
    """Summarise one call (operands' shapes, sizes and locations) for the cost model."""
    in_bytes = host = dev = 0
    for shape, isz, g in zip(shapes, itemsizes, on_gpu, strict=True):
        n = 1
        for d in shape:
            n *= d
        b = n * isz
        in_bytes += b
        if g:
            dev += b
        else:
            host += b
    if op.kind is OpKind.MATMUL and len(shapes) == 2 and shapes[0] and shapes[1]:
        k = shapes[0][-1]
        flops = 2.0 * out_elems * k
    elif op.kind is OpKind.REDUCE:
        flops = float(sum(_prod(s) for s in shapes)) * op.flops
    else:
        flops = out_elems * op.flops
    return OpShape(op, out_elems, in_bytes, out_elems * out_itemsize, out_itemsize, dtype, flops, host, dev)


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


_TRANSCENDENTAL = frozenset({"exp", "log", "sin", "cos", "tanh", "power"})


def compute_seconds(rates: DeviceRates, s: OpShape) -> float:
    """Roofline estimate of the op itself on a device, data already resident."""
    mem = (s.in_bytes + s.out_bytes) / rates.bandwidth if rates.bandwidth > 0 else 0.0
    if s.op.kind is OpKind.MATMUL:
        rate = rates.matmul_flops.get(s.dtype) or max(rates.matmul_flops.values(), default=rates.flops)
        work = s.flops / rate
    elif s.op.name in _TRANSCENDENTAL:
        work = s.out_elems / rates.transcendental
    else:
        work = s.flops / rates.flops
    return max(mem, work) + rates.call_overhead


def estimate(cpu: DeviceRates, gpu: DeviceRates | None, s: OpShape) -> dict[str, float]:
    """Estimated seconds on each device including moving the operands there (results stay put)."""
    costs = {"cpu": compute_seconds(cpu, s) + (s.device_bytes / gpu.d2h if gpu and gpu.d2h else 0.0)}
    if gpu is not None:
        costs["gpu"] = compute_seconds(gpu, s) + (s.host_bytes / gpu.h2d if gpu.h2d else 0.0)
    return costs


def format_seconds(sec: float) -> str:
    """An estimate or a timing as explain prints it: µs below a millisecond, else ms."""
    return f"{sec * 1e6:.1f} µs" if sec < 1e-3 else f"{sec * 1e3:.2f} ms"
