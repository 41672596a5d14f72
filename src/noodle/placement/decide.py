"""Decide the device for one op from the calibrated cost model, and explain the decision.

Rules, in order: an explicit device is obeyed; with no usable GPU (none
present, ``NOODLE_DISABLE_GPU``, or GPU acceleration off) the CPU is the
answer; below ``NOODLE_GPU_THRESHOLD`` elements the CPU is chosen unless the
operands already live on a GPU (moving them back would cost more); otherwise
the device with the lowest estimated time, transfers included, wins.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from noodle.config import get_settings
from noodle.errors import ShapeError, UnknownOpError
from noodle.ir.ops import OPS, OpDef, OpKind
from noodle.ir.shapes import result_shape, size
from noodle.placement import calibrate
from noodle.placement.model import estimate, format_seconds, op_shape

_devices = importlib.import_module("noodle.devices")  # the module, not the nd.devices() function


@dataclass(frozen=True)
class Decision:
    """Where one op runs, the estimated seconds on each device, and the reason in words."""

    op: str
    device: str                      # "cpu" or "cuda:N"
    backend: str                     # "numpy", "numba" or "cupy"
    reason: str
    costs: dict[str, float] = field(default_factory=dict)
    index: int | None = None

    def __str__(self) -> str:
        est = ", ".join(f"{dev} {format_seconds(sec)}" for dev, sec in sorted(self.costs.items()))
        return f"{self.op} -> {self.device} ({self.backend}): {self.reason}" + (f"; estimated {est}" if est else "")



def _location(x: Any) -> bool:
    return _devices.is_gpu_array(x)


NUMBA_OPS = ("add", "subtract", "multiply", "divide", "maximum", "minimum")
NUMBA_DTYPES = ("float64", "float32", "int64", "int32")
NUMBA_MIN_ELEMS = 100_000     # below this, 2 threads cost more than they save (ANCHORS.md)
NUMBA_MIN_SPEEDUP = 1.1       # Numba must beat NumPy by this much at calibration to be used


def numba_eligible(a: Any, b: Any) -> bool:
    """Whether a binary op on ``a`` and ``b`` can take the Numba loop (the op itself must be in NUMBA_OPS).

    The one rule for the eager ops' fast path and for explain(): two C-contiguous NumPy
    arrays of one supported dtype and shape, in this machine's byte order (the compiled loop reads
    bytes as native, and Numba's dispatcher does not reliably refuse a big-endian array), large
    enough for two threads to pay.
    """
    return (type(a) is np.ndarray and type(b) is np.ndarray and a.size >= NUMBA_MIN_ELEMS
            and a.dtype == b.dtype and a.shape == b.shape and a.dtype.name in NUMBA_DTYPES
            and a.dtype.isnative and a.flags.c_contiguous and b.flags.c_contiguous)


# What the eager ops would run *now* on the CPU for (op, dtype) on Numba-eligible operands:
# (backend, why). The array layer, which owns the kernels and the background measurement,
# registers it (placement may not import the array layer).
NumbaProbe = Callable[[str, str], tuple[str, str]]
_numba_probe: NumbaProbe | None = None


def register_numba_probe(probe: NumbaProbe) -> None:
    """Let decide()/explain() ask the Numba kernels what would run now (called once by noodle.array)."""
    global _numba_probe
    _numba_probe = probe


def _cpu_backend(op: OpDef, arrays: tuple[Any, ...]) -> tuple[str, str]:
    """(backend, note): what a CPU call of ``op`` on ``arrays`` runs now, by the eager ops' rule.

    Numba runs only for the NUMBA_OPS on eligible operands, and only once the one-time
    background measurement has shown that it wins and the kernel is compiled; until then
    NumPy runs, and the note says what is pending.
    """
    if op.name not in NUMBA_OPS or len(arrays) != 2 or not numba_eligible(*arrays):
        return "numpy", ""
    if _numba_probe is None:   # noodle.array not imported: no eager op can have run Numba
        return "numpy", "NumPy: the Numba kernels are not loaded"
    return _numba_probe(op.name, arrays[0].dtype.name)


def _on_cpu(decision: Decision, arrays: tuple[Any, ...]) -> Decision:
    """``decision`` with the CPU backend that would actually run now, and why."""
    if decision.device != "cpu":
        return decision
    backend, note = _cpu_backend(OPS[decision.op], arrays)
    if backend == decision.backend and not note:
        return decision
    return replace(decision, backend=backend, reason=f"{decision.reason}; {note}" if note else decision.reason)


def decide(op: OpDef, arrays: tuple[Any, ...], out_elems: int, with_costs: bool = False) -> Decision:
    """The placement of one call under device='auto', with the backend that would run there now."""
    return _on_cpu(_decide(op, arrays, out_elems, with_costs), arrays)


def _decide(op: OpDef, arrays: tuple[Any, ...], out_elems: int, with_costs: bool) -> Decision:
    settings = get_settings()
    on_gpu = [_location(a) for a in arrays]
    n_gpu = _devices.gpu_count()
    if n_gpu == 0:
        if not settings.gpu_allowed:
            reason = "GPU use is switched off (NOODLE_DISABLE_GPU or ..._GPU_ACCELERATION=false)"
        else:
            statuses = _devices.backend_status()
            cuda = statuses.get("cuda")
            reason = f"no usable GPU ({cuda.reason if cuda else 'CUDA unavailable'})"
        costs = _costs(op, arrays, on_gpu, out_elems, None) if with_costs else {}
        return Decision(op.name, "cpu", "numpy", reason, costs)
    gpu_index = next((_devices.gpu_index(a) for a, g in zip(arrays, on_gpu, strict=True) if g), None)
    if gpu_index is None:
        gpu_index = _devices.get_accelerator(None).index
    if out_elems < settings.gpu_threshold and not any(on_gpu):
        costs = _costs(op, arrays, on_gpu, out_elems, gpu_index) if with_costs else {}
        return Decision(op.name, "cpu", "numpy",
                        f"{out_elems} elements < NOODLE_GPU_THRESHOLD={settings.gpu_threshold}", costs)
    costs = _costs(op, arrays, on_gpu, out_elems, gpu_index)
    if "gpu" not in costs:
        return Decision(op.name, "cpu", "numpy",
                        f"cuda:{gpu_index} could not be calibrated", costs)
    named = {"cpu": costs["cpu"], f"cuda:{gpu_index}": costs["gpu"]}
    if costs["gpu"] < costs["cpu"]:
        moved = " (operands already there)" if all(on_gpu) else " including the transfer"
        return Decision(op.name, f"cuda:{gpu_index}", "cupy",
                        f"cheaper on cuda:{gpu_index}{moved}", named, gpu_index)
    why = "operands on the GPU but the CPU is cheaper even after the copy" if any(on_gpu) else \
        "cheaper on the CPU than moving the operands to the GPU"
    return Decision(op.name, "cpu", "numpy", why, named)



def _costs(op: OpDef, arrays: tuple[Any, ...], on_gpu: list[bool], out_elems: int,
           gpu_index: int | None) -> dict[str, float]:
    cal = calibrate.load_or_measure()
    shapes = [tuple(getattr(a, "shape", ())) for a in arrays]
    sizes = [int(getattr(getattr(a, "dtype", None), "itemsize", 8)) for a in arrays]
    dtypes = [getattr(a, "dtype", np.dtype(type(a))) for a in arrays]
    try:
        out_dtype = np.result_type(*dtypes)
    except TypeError:
        out_dtype = np.dtype("float64")
    s = op_shape(op, shapes, sizes, on_gpu, out_elems, out_dtype.itemsize, out_dtype.name)
    gpu = cal.gpus.get(gpu_index) if gpu_index is not None else None
    return estimate(cal.cpu, gpu, s)


def explain(op: str, *args: Any, device: str = "auto") -> Any:
    """Where ``op(*args)`` would run under ``device``, the estimated cost on each device, and why.

    Nothing is computed; the calibration is measured once on first use (about half a
    second on the CPU) and cached on disk.
    """
    if op in _OTHER_EXPLAINERS:  # ops of a family outside the op table (crypto), imported on demand
        module, _, name = _OTHER_EXPLAINERS[op].partition(":")
        return getattr(importlib.import_module(module), name)(op, *args, device=device)
    opdef = _known_op(op)
    arrays = tuple(getattr(a, "_noodle_data", a) for a in args)   # a Matrix's array
    try:
        out_elems = size(result_shape(opdef, [tuple(getattr(a, "shape", ())) for a in arrays]))
    except (ValueError, IndexError) as exc:
        raise ShapeError(f"explain: {op} cannot take operands of shapes "
                         f"{[getattr(a, 'shape', ()) for a in arrays]} ({exc})") from None
    kind, index = _devices.parse_device(device)
    if kind == "auto":
        return decide(opdef, arrays, out_elems, with_costs=True)
    on_gpu = [_location(a) for a in arrays]
    gpu_index = index if kind == "cuda" else None
    costs = _costs(opdef, arrays, on_gpu, out_elems, gpu_index)
    named = {"cpu": costs["cpu"]}
    if "gpu" in costs:
        named[f"cuda:{gpu_index}"] = costs["gpu"]
    if kind == "cpu":
        return _on_cpu(Decision(op, "cpu", "numpy", "device='cpu' was asked for", named), arrays)
    return Decision(op, f"cuda:{index or 0}", "cupy", f"device={device!r} was asked for", named, index or 0)


_NOT_OPS = (OpKind.INPUT, OpKind.CONST)   # NIR nodes, not ops anyone calls
_OTHER_EXPLAINERS = {name: "noodle.crypto.op:explain" for name in (
    "modmul", "modpow", "rsa_modular_multiply", "modular_pow", "aes_matrix_encrypt", "aes_matrix_decrypt")}


def _known_op(op: Any) -> OpDef:
    """The OpDef named ``op``, or an UnknownOpError naming the ops there are (and the nearest ones)."""
    opdef = OPS.get(op) if isinstance(op, str) else None
    if opdef is not None and opdef.kind not in _NOT_OPS:
        return opdef
    known = sorted(name for name, d in OPS.items() if d.kind not in _NOT_OPS)
    near = difflib.get_close_matches(op, known, n=3) if isinstance(op, str) else []
    hint = f" Did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
    raise UnknownOpError(f"explain: unknown op {op!r}: noodle has no op of that name, so it cannot say where "
                         f"it would run.{hint} Known ops: {', '.join(known)}.")
