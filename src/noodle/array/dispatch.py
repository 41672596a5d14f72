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
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from threading import get_ident
from time import perf_counter
from typing import Any

import numpy as np

from noodle import metrics
from noodle.errors import (
    DeviceError,
    DeviceMemoryError,
    DeviceTimeoutError,
    DTypeError,
    NBCResourceError,
    OpValueError,
    ShapeError,
)
from noodle.ir.ops import OpDef
from noodle.ir.shapes import result_shape, size

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
_recorders: dict[tuple[str, str, str, bool], tuple[Callable[[float], None], Callable[[], None] | None]] = {}
_placement_children: dict[tuple[str, str], Any] = {}


def record(op: str, device: str, backend: str, seconds: float, placed: bool = False) -> None:
    """Account one op call: one dict lookup, one observe, and one count if it was a placement.

    ``placed``: device='auto' chose ``device`` for this call, so it also counts as a placement.
    The bound methods are cached per label set: this runs on every eager op, whose whole
    overhead budget is about a microsecond.
    """
    rec = _recorders.get((op, device, backend, placed))
    if rec is None:
        rec = _recorder(op, device, backend, placed)
    rec[0](seconds)
    if placed:
        rec[1]()   # type: ignore[misc]


def _recorder(op: str, device: str, backend: str, placed: bool) -> tuple[Callable[[float], None],
                                                                         Callable[[], None] | None]:
    observe = _OP_SECONDS.labels(op, device, backend).observe
    inc = _placement_child(op, device).inc if placed else None
    rec = _recorders[(op, device, backend, placed)] = (observe, inc)
    return rec


def _placement_child(op: str, device: str) -> Any:
    key = (op, device)
    child = _placement_children.get(key)
    if child is None:
        child = _placement_children[key] = _PLACEMENT.labels(op, device)
    return child


def count_placement(op: str, device: str) -> None:
    _placement_child(op, device).inc()


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


# Words in NumPy's ValueError messages that are about shapes or axes (broadcasting, matmul's
# core dimension, reshape sizes, transpose axes); any other ValueError is about values.
_SHAPE_WORDS = ("broadcast", "shape", "dimension", "axis", "axes")
# NumPy's ValueErrors for a result too large to even describe (its byte count overflows).
_TOO_BIG = ("iterator is too large", "array is too big", "maximum allowed size exceeded",
            "maximum allowed dimension exceeded")
_EMPTY_REDUCE = "zero-size array to reduction operation"
_REDUCTION_WORD = {"max": "maximum", "min": "minimum"}


def value_error(op: OpDef, args: tuple[Any, ...], exc: Exception) -> OpValueError:
    """NumPy refused the operands' values: say so in NumPy's words, with what to do."""
    msg = str(exc)
    if _EMPTY_REDUCE in msg:
        shape = getattr(args[0], "shape", ()) if args else ()
        word = _REDUCTION_WORD.get(op.name, op.name)
        return OpValueError(
            f"{op.name}: zero-size array of shape {tuple(shape)} has no {word} ({msg}); "
            f"check for empty input (x.size == 0) before reducing, or use numpy.{op.name}(x, initial=...) "
            f"where an empty input should give a default.")
    if "negative integer powers" in msg:
        return OpValueError(
            f"{op.name}: {msg} An integer array raised to a negative integer power has no integer "
            f"result; cast the base to a float dtype first (nd.astype(x, 'float64')).")
    return OpValueError(f"{op.name}: NumPy refused the operand values ({msg}).")


def _result_layout(op: OpDef, args: tuple[Any, ...], exc: BaseException) -> tuple[tuple[int, ...] | None, np.dtype]:
    """The result shape and dtype an allocation failure was about (NumPy says; else we work it out)."""
    shape = getattr(exc, "shape", None)
    dtype = getattr(exc, "dtype", None)
    if shape is None:
        shapes = [tuple(getattr(a, "shape", ())) for a in args]
        try:
            shape = result_shape(op, shapes)
        except (ValueError, IndexError, TypeError, KeyError):
            shape = _broadcast(shapes)   # NumPy's broadcast_shapes refuses shapes this large
    if dtype is None:
        try:
            dtype = np.result_type(*args)
        except (TypeError, ValueError):
            dtype = np.dtype("float64")
    return (None if shape is None else tuple(int(d) for d in shape)), np.dtype(dtype)


def _broadcast(shapes: list[tuple[int, ...]]) -> tuple[int, ...] | None:
    """The broadcast of ``shapes`` in plain integers (no size limit), or None if they do not broadcast."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(-ndim, 0):
        dims = {s[i] for s in shapes if len(s) >= -i} - {1}
        if len(dims) > 1:
            return None
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def _fmt_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} EiB"


def memory_error(op: OpDef, args: tuple[Any, ...], exc: BaseException) -> NBCResourceError:
    """The host could not allocate ``op``'s result: name the op, the result's shape and size, and what to do.

    A ``MemoryError`` too (NBCResourceError is), so code that handles running out of memory keeps working.
    """
    shape, dtype = _result_layout(op, args, exc)
    if shape is None:
        what = f"its result ({dtype})"
    else:
        nbytes = size(shape) * dtype.itemsize
        what = f"its result of shape {shape} ({dtype}, {_fmt_bytes(nbytes)})"
    return NBCResourceError(
        f"{op.name}: this machine cannot hold {what}; NumPy said: {exc}. "
        f"Check the operand shapes (a broadcast of (n, 1) with (1, m) makes n*m elements), "
        f"or compute the result in slices, or reduce before materialising it.")


def translate(op: OpDef, args: tuple[Any, ...], exc: BaseException) -> Exception:
    """The noodle error for a TypeError/ValueError/MemoryError NumPy raised on ``op(*args)``.

    The one translator of NumPy's errors for the eager ops: dtype problems become
    DTypeError, shape and axis problems ShapeError, refused values OpValueError, and
    an allocation the host cannot make NBCResourceError.
    """
    if isinstance(exc, MemoryError):
        return memory_error(op, args, exc)
    if isinstance(exc, TypeError):
        for a in args:
            check_dtype(op, a)
        return dtype_error(op, args, exc)
    msg = str(exc).lower()
    if any(word in msg for word in _TOO_BIG):
        return memory_error(op, args, exc)
    if isinstance(exc, np.exceptions.AxisError) or any(word in msg for word in _SHAPE_WORDS):
        return shape_error(op, args, exc)
    return value_error(op, args, exc)


def run_numpy(op: OpDef, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call the NumPy (or CuPy) function, translating its TypeError/ValueError into noodle's.

    MemoryError passes through: on a GPU it is CuPy's, which the accelerator turns into
    DeviceMemoryError (and device='auto' into a CPU fallback). Host work uses run_host.
    """
    try:
        return fn(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise translate(op, args, exc) from None


# Floating-point warnings (divide by zero, overflow, invalid value...) --------------------------
#
# NumPy raises these from C at stack level 1, i.e. at the line inside noodle that called the
# ufunc, so the user's warning filters and tracebacks named noodle instead of their own line.
# Host work therefore runs under an error state whose every category *calls* fp_note (one
# contextvar set and reset, well under 0.1 µs); fp_note only records what happened, and after the
# op replay_fp does what the user's own np.seterr/np.errstate asks for each category ('warn' at
# the user's line, 'raise' -> FloatingPointError, 'ignore', 'call', 'print', 'log'), as NumPy would.

_fp_events: list[tuple[int, str, int]] = []   # (thread id, NumPy's error name, NumPy's flag)


def fp_note(err: str, flag: int) -> None:
    """NumPy's 'call' handler while a noodle op runs: remember what happened, for replay_fp."""
    _fp_events.append((get_ident(), err, flag))


def _fp_state() -> tuple[Callable[[Any], Any], Callable[[Any], None], Any]:
    """(enter, leave, state): the cheapest way this NumPy offers to switch the error state."""
    try:   # NumPy >= 2: the error state is a contextvar; setting it is one C call
        from numpy._core._ufunc_config import _extobj_contextvar, _make_extobj

        return _extobj_contextvar.set, _extobj_contextvar.reset, _make_extobj(all="call", call=fp_note)
    except (ImportError, AttributeError, TypeError):   # NumPy 1.x: the public context manager
        def enter(_: Any) -> Any:
            state = np.errstate(all="call", call=fp_note)
            state.__enter__()
            return state

        def leave(state: Any) -> None:
            state.__exit__(None, None, None)

        return enter, leave, None


fp_enter, fp_leave, FP_CALL = _fp_state()

_NOODLE_DIR = str(Path(__file__).resolve().parents[1])
_CATEGORY = {"divide by zero": "divide", "overflow": "over", "underflow": "under", "invalid value": "invalid"}


def _user_stacklevel() -> int:
    """The ``stacklevel`` naming the first frame outside noodle, for a warnings.warn made by our caller.

    Counted, not fixed: the same op is reached from nd.add, Matrix.__add__ or the JIT's eager fallback.
    """
    frame = sys._getframe(2)
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(_NOODLE_DIR):
        frame = frame.f_back
        level += 1
    return level


def replay_fp(where: str) -> None:
    """Do what the user's NumPy error settings ask for the floating-point errors this thread just noted.

    ``where`` is the name NumPy puts in its messages ("log", "divide", "reduce", "cast").
    Call it after leaving the noodle error state, so np.geterr() is the user's again.
    """
    me = get_ident()
    mine = [e for e in _fp_events if e[0] == me]
    for e in mine:
        try:
            _fp_events.remove(e)
        except ValueError:   # pragma: no cover - only this thread removes its own events
            pass
    if not mine:
        return
    modes = np.geterr()
    for _, err, flag in mine:
        mode = modes.get(_CATEGORY.get(err, "invalid"), "warn")
        if mode == "ignore":
            continue
        msg = f"{err} encountered in {where}"
        if mode == "warn":
            warnings.warn(msg, RuntimeWarning, stacklevel=_user_stacklevel())
        elif mode == "raise":
            raise FloatingPointError(msg)
        elif mode == "print":
            sys.stderr.write(f"Warning: {msg}\n")
        else:   # 'call' or 'log': the user's handler, as NumPy calls it
            handler = np.geterrcall()
            if handler is None:
                raise NameError(f"python callback specified for {err} (in {where}) but no function found.")
            if mode == "call":
                handler(err, flag)
            else:
                handler.write(f"Warning: {msg}\n")


def ufunc_name(fn: Any) -> str:
    """The name NumPy gives ``fn`` in floating-point warnings: a ufunc's own, "reduce" for np.sum/np.max..."""
    return fn.__name__ if isinstance(fn, np.ufunc) else "reduce"


def run_host(op: OpDef, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
             where: str | None = None) -> Any:
    """Call a NumPy function on host data: its errors become noodle's, its warnings point at the caller.

    ``where``: the name NumPy would use in a floating-point warning (the ufunc's name by default).
    """
    token = fp_enter(FP_CALL)
    try:
        result = fn(*args, **kwargs)
    except (TypeError, ValueError, MemoryError) as exc:
        raise translate(op, args, exc) from None
    finally:
        fp_leave(token)
    if _fp_events:
        replay_fp(where or ufunc_name(fn))
    return result


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
        return run_host(op, getattr(np, name), host, kwargs)
    record(op.name, f"cuda:{index}", "cupy", perf_counter() - t0)
    return result
