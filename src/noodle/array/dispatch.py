"""How one eager op call is carried out: unwrap, place, run, account.

Why this is its own module: every public op goes through the same few steps
(accept NumPy/CuPy arrays, Matrix objects, scalars or JIT tracers; decide the
device; move operands if needed; run on NumPy, Numba or CuPy; translate
errors; record time per op/device/backend), and the CPU-only fast path must
stay within a couple of microseconds of calling NumPy directly. Keeping it in
one place keeps that budget auditable.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from time import perf_counter
from typing import Any

import numpy as np

from noodle import metrics
from noodle.errors import (
    DeviceError,
    DeviceMemoryError,
    DeviceTimeoutError,
    DTypeError,
    ShapeError,
)
from noodle.ir.ops import OpDef

_devices = importlib.import_module("noodle.devices")  # the module, not the nd.devices() function

log = logging.getLogger("noodle.array")

_OP_SECONDS = metrics.histogram(
    "noodle_op_seconds", "Wall time of eager noodle ops", ("op", "device", "backend"))
_PLACEMENT = metrics.counter(
    "noodle_placement_decisions_total", "Placement decisions of device='auto' ops", ("op", "device"))
_FALLBACKS = metrics.counter(
    "noodle_fallbacks_total", "Work that fell back to a slower correct path", ("component", "reason"))

_NUMERIC_KINDS = frozenset("biufc")
_ndarray = np.ndarray
_children: dict[tuple[str, str, str], Any] = {}
_placement_children: dict[tuple[str, str], Any] = {}


def record(op: str, device: str, backend: str, seconds: float, placed: bool = False) -> None:
    """Account one op call (a cached histogram child: one dict lookup and one observe).

    ``placed``: device='auto' chose ``device`` for this call, so it also counts as a placement.
    """
    key = (op, device, backend)
    child = _children.get(key)
    if child is None:
        child = _children[key] = _OP_SECONDS.labels(op, device, backend)
    child.observe(seconds)
    if placed:
        count_placement(op, device)


def count_placement(op: str, device: str) -> None:
    key = (op, device)
    child = _placement_children.get(key)
    if child is None:
        child = _placement_children[key] = _PLACEMENT.labels(op, device)
    child.inc()


def unwrap(x: Any) -> Any:
    """The raw array behind a Matrix; anything else unchanged."""
    data = getattr(x, "_noodle_data", None)
    return x if data is None else data


def tracer_of(args: tuple[Any, ...]) -> Any:
    """The first argument that is a JIT tracer (has ``__noodle_op__``), or None."""
    for a in args:
        if hasattr(type(a), "__noodle_op__"):
            return a
    return None


def check_dtype(op: OpDef, x: Any) -> None:
    dtype = getattr(x, "dtype", None)
    if dtype is not None and dtype.kind not in _NUMERIC_KINDS:
        raise DTypeError(
            f"{op.name}: operand has dtype {dtype}, which noodle does not compute with; "
            f"expected a numeric dtype (bool, integer, float or complex). Convert it with .astype(...)."
        )


def shape_error(op: OpDef, args: tuple[Any, ...], exc: Exception) -> ShapeError:
    shapes = ", ".join(str(getattr(a, "shape", "scalar")) for a in args)
    return ShapeError(f"{op.name}: operand shapes {shapes} do not fit together ({exc}). "
                      f"Reshape or transpose an operand so they broadcast.")


def dtype_error(op: OpDef, args: tuple[Any, ...], exc: Exception) -> DTypeError:
    dtypes = ", ".join(str(getattr(a, "dtype", type(a).__name__)) for a in args)
    return DTypeError(f"{op.name}: operand dtypes {dtypes} cannot be combined ({exc}). "
                      f"Cast an operand with .astype(...) first.")


def translate(op: OpDef, args: tuple[Any, ...], exc: Exception) -> Exception:
    """The noodle error for a TypeError/ValueError NumPy raised on ``op(*args)``."""
    if isinstance(exc, TypeError):
        for a in args:
            check_dtype(op, a)
        return dtype_error(op, args, exc)
    return shape_error(op, args, exc)   # ValueError, AxisError among them


def run_numpy(op: OpDef, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call the NumPy function, translating NumPy's errors into noodle's."""
    try:
        return fn(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise translate(op, args, exc) from None


def resolve(op: OpDef, arrays: tuple[Any, ...], device: str, out_elems: int) -> tuple[str, int | None]:
    """Where to run: ("cpu", None) or ("cuda", index). Raises for impossible requests."""
    if device == "cpu":
        return "cpu", None
    kind, index = _devices.parse_device(device)   # raises DeviceError / DeviceUnavailableError
    if kind == "cpu":
        return "cpu", None
    if kind == "cuda":
        return "cuda", index or 0
    from noodle.placement import decide

    decision = decide(op, arrays, out_elems)
    count_placement(op.name, decision.device)
    return ("cpu", None) if decision.device == "cpu" else ("cuda", decision.index)


def to_host(x: Any) -> Any:
    """``x`` in host memory (a counted copy if it lives on a GPU)."""
    if _devices.is_gpu_array(x):
        return _devices.get_accelerator(_devices.gpu_index(x)).to_host(x)
    return x


def to_gpu(x: Any, index: int) -> Any:
    """``x`` on GPU ``index`` (a counted copy unless it is already there; scalars stay as they are)."""
    if isinstance(x, _ndarray) or (_devices.is_gpu_array(x) and _devices.gpu_index(x) != index):
        return _devices.get_accelerator(index).to_device(x)
    return x


def run_gpu(op: OpDef, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], index: int,
            auto: bool) -> Any:
    """Run ``cupy.<name>`` on GPU ``index`` bounded by the timeout; under auto, fall back to the CPU."""
    cp = _devices.cupy_module()
    if cp is None:
        raise DeviceError(f"{op.name}: CuPy is not usable, so the GPU cannot run this op")
    acc = _devices.get_accelerator(index)
    moved = tuple(to_gpu(a, index) for a in args)
    fn = getattr(cp, name)
    t0 = perf_counter()
    try:
        result = acc.run(run_numpy, op, fn, moved, kwargs, op=op.name)
    except (DeviceTimeoutError, DeviceMemoryError) as exc:
        if not auto:
            raise
        reason = "gpu-timeout" if isinstance(exc, DeviceTimeoutError) else "gpu-memory"
        _FALLBACKS.labels("placement", reason).inc()
        log.warning("%s failed on cuda:%d (%s); recomputing on the CPU (device='auto')", op.name, index, exc)
        host = tuple(to_host(a) for a in args)
        return run_numpy(op, getattr(np, name), host, kwargs)
    record(op.name, f"cuda:{index}", "cupy", perf_counter() - t0)
    return result
