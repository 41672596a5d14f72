"""Eager NumPy-style ops that run where the placement engine says.

Every op takes NumPy or CuPy arrays, :class:`noodle.Matrix` objects or Python
scalars, plus ``device='auto'|'cpu'|'gpu'|'cuda:N'``. Results equal NumPy's
(bit for bit for the arithmetic ops; within BLAS tolerance for matmul) and stay
on the device that computed them. Inside a function traced by ``@noodle.jit``
the same calls record NIR instead of computing.

    >>> import numpy as np, noodle as nd
    >>> nd.add(np.ones(3), 2.0)
    array([3., 3., 3.])
"""

from __future__ import annotations

import builtins
import importlib
from time import perf_counter
from typing import Any

import numpy as np

from noodle.array import dispatch as _d
from noodle.array import numba_kernels as _nk
from noodle.errors import DeviceError, DTypeError, ShapeError
from noodle.ir.ops import OPS, OpDef
from noodle.ir.shapes import result_shape, size
from noodle.placement.decide import NUMBA_MIN_ELEMS, numba_eligible

_devices = importlib.import_module("noodle.devices")  # the module, not the nd.devices() function
_rgn = importlib.import_module("noodle.memory.state")    # is a region current on this thread?

_ndarray = np.ndarray
_fp_enter, _fp_leave, _FP_CALL = _d.fp_enter, _d.fp_leave, _d.FP_CALL   # module globals: the fast paths' budget
_fp_events = _d._fp_events
_HOST_SCALARS = (int, float, bool, np.generic)
_NUMBA_MIN = NUMBA_MIN_ELEMS    # below this, 2 threads cost more than they save (ANCHORS.md)
_NUMBA_OPS = frozenset(_nk.SUPPORTED_OPS)


def _numba_allowed() -> bool:
    """Numba measured faster than NumPy here (the first call starts that measurement in the background)."""
    return bool(_nk.policy())


def _is_host(x: Any) -> bool:
    return type(x) is _ndarray or isinstance(x, _HOST_SCALARS)


def _out_elems(op: OpDef, arrays: tuple[Any, ...]) -> int:
    try:
        return size(result_shape(op, [tuple(getattr(a, "shape", ())) for a in arrays]))
    except (ValueError, IndexError) as exc:
        raise _d.shape_error(op, arrays, exc) from None


def _call(op: OpDef, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], device: str) -> Any:
    """The general path: tracers, Matrix operands, CuPy arrays, explicit or automatic GPU placement."""
    tracer = _d.tracer_of(args)
    if tracer is not None:
        return tracer.__noodle_op__(op.name, args, kwargs)
    if not isinstance(device, str):
        raise DeviceError(f"{op.name}: device must be a string such as 'auto', 'cpu', 'gpu' or 'cuda:0', "
                          f"got {device!r}")
    wrap = builtins.any(hasattr(a, "_noodle_data") for a in args)
    raw = tuple(_d.unwrap(a) for a in args)
    for a in raw:
        _d.check_dtype(op, a)
    on_gpu = builtins.any(_devices.is_gpu_array(a) for a in raw)
    trivially_cpu = device == "cpu" or (device == "auto" and not on_gpu and _devices.gpu_count() == 0)
    if trivially_cpu:
        target, index = "cpu", None
    else:
        target, index = _d.resolve(op, raw, device, _out_elems(op, raw))   # counts its own placement
    host = tuple(_d.to_host(a) for a in raw) if on_gpu and target == "cpu" else raw
    if target == "cpu" and name in _NUMBA_OPS and len(host) == 2 and builtins.all(_is_host(a) for a in host):
        # One CPU rule for an op however it was reached (Matrix operands, data copied back from a
        # GPU, the CPU chosen by the cost model), so explain() can say what runs: the fast path's.
        result = _binary(op, name, getattr(np, name), host[0], host[1], "cpu")
        if trivially_cpu and device == "auto":
            _d.count_placement(op.name, "cpu")
    elif target == "cpu":
        t0 = perf_counter()
        result = _d.run_host(op, getattr(np, name), host, kwargs)
        _d.record(op.name, "cpu", "numpy", perf_counter() - t0, trivially_cpu and device == "auto")
    else:
        result = _d.run_gpu(op, name, raw, kwargs, index or 0, auto=(device == "auto"))
    if wrap:
        from noodle.array.matrix import Matrix

        return Matrix(result)
    return result


# Ops whose host outputs go to the current region (module docstring of noodle.memory.region):
# ufuncs called with out= of exactly the dtype and shape NumPy would allocate, so results are bit
# for bit NumPy's. where, the reductions and astype keep using the heap.
_REGION_UFUNCS = frozenset((np.add, np.subtract, np.multiply, np.divide, np.power, np.maximum, np.minimum,
                            np.exp, np.log, np.sqrt, np.sin, np.cos, np.tanh, np.absolute, np.negative))
_out_dtypes: dict[tuple[Any, ...], np.dtype | None] = {}


def _out_dtype(fn: Any, key: tuple[Any, ...]) -> np.dtype | None:
    """The dtype ``fn`` gives operands of these dtypes (Python scalar types: NEP 50 weak scalars);
    None where NumPy refuses them (the plain call then raises NumPy's error)."""
    dt = _out_dtypes.get(key, False)
    if dt is False:
        try:
            dt = fn.resolve_dtypes((*key[1:], None))[-1]
        except (TypeError, ValueError):
            dt = None
        if len(_out_dtypes) < 4096:
            _out_dtypes[key] = dt
    return dt


def _operand_key(x: Any) -> Any:
    return x.dtype if isinstance(x, (np.ndarray, np.generic)) else type(x)


def _region_out(fn: Any, a: Any, b: Any) -> np.ndarray | None:
    """An output buffer in this thread's current region for ``fn(a, b)``, or None (no region, a
    small result, an op or operands the region leaves to NumPy)."""
    region = _rgn.current()
    if region is None:
        return None
    sa = a.shape if type(a) is _ndarray else ()
    sb = b.shape if type(b) is _ndarray else ()
    if fn is np.matmul:
        if len(sa) != 2 or len(sb) != 2 or sa[1] != sb[0]:
            return None
        shape = (sa[0], sb[1])
    elif fn not in _REGION_UFUNCS:
        return None
    elif sa == sb or not sb:
        shape = sa
    elif not sa:
        shape = sb
    else:
        try:
            shape = np.broadcast_shapes(sa, sb)
        except ValueError:
            return None
    n = size(shape)
    if n << 4 < region.eager_min_bytes:    # small even at 16 bytes an element: the heap's
        return None
    dt = _out_dtype(fn, (fn, _operand_key(a), _operand_key(b)))
    if dt is None:
        return None
    nbytes = n * dt.itemsize
    return region._take_large(shape, dt, nbytes) if nbytes >= region.eager_min_bytes else None


def _region_out1(fn: Any, x: np.ndarray) -> np.ndarray | None:
    """The same for a unary ufunc."""
    region = _rgn.current()
    if region is None or fn not in _REGION_UFUNCS or x.size << 4 < region.eager_min_bytes:
        return None
    dt = _out_dtype(fn, (fn, x.dtype))
    if dt is None:
        return None
    nbytes = x.size * dt.itemsize
    return region._take_large(x.shape, dt, nbytes) if nbytes >= region.eager_min_bytes else None


def _binary(op: OpDef, name: str, fn: Any, a: Any, b: Any, device: str) -> Any:
    # Fast path: host operands, CPU decided without a cost model (no GPU, or device='cpu').
    # (_is_host inlined: two calls cost as much as the floating-point error state this path sets)
    if ((type(a) is _ndarray or isinstance(a, _HOST_SCALARS)) and (type(b) is _ndarray or isinstance(b, _HOST_SCALARS))
            and (device == "cpu" or (device == "auto" and _devices.gpu_count() == 0))):
        da = getattr(a, "dtype", None)
        db = getattr(b, "dtype", None)
        if (da is not None and da.kind not in "biufc") or (db is not None and db.kind not in "biufc"):
            _d.check_dtype(op, a)
            _d.check_dtype(op, b)
        t0 = perf_counter()
        if (name in _NUMBA_OPS and getattr(a, "size", 0) >= _NUMBA_MIN and numba_eligible(a, b)
                and _numba_allowed()):
            kernel = _nk.ready_kernel(name, da.name)
            if kernel is not None:
                out = _region_out(fn, a, b) if _rgn.ACTIVE_REGIONS else None
                if out is None:
                    out = np.empty_like(a)
                if _nk.launch(kernel, a.reshape(-1), b.reshape(-1), out.reshape(-1)):
                    _d.record(op.name, "cpu", "numba", perf_counter() - t0, device == "auto")
                    return out
        token = _fp_enter(_FP_CALL)    # run_host inlined: this path's overhead is benchmarked
        try:
            if _rgn.ACTIVE_REGIONS and (out := _region_out(fn, a, b)) is not None:
                result = fn(a, b, out=out)
            else:
                result = fn(a, b)
        except (TypeError, ValueError, MemoryError) as exc:
            raise _d.translate(op, (a, b), exc) from None
        finally:
            _fp_leave(token)
        if _fp_events:
            _d.replay_fp(name)
        _d.record(op.name, "cpu", "numpy", perf_counter() - t0, device == "auto")
        return result
    return _call(op, name, (a, b), {}, device)


_ADD, _SUB, _MUL, _DIV, _POW = OPS["add"], OPS["subtract"], OPS["multiply"], OPS["divide"], OPS["power"]
_MAX2, _MIN2, _MATMUL, _WHERE = OPS["maximum"], OPS["minimum"], OPS["matmul"], OPS["where"]


def add(x1: Any, x2: Any, /, *, device: str = "auto") -> Any:
    """Elementwise ``x1 + x2`` with broadcasting; equals ``numpy.add`` exactly."""
    return _binary(_ADD, "add", np.add, x1, x2, device)


def subtract(x1: Any, x2: Any, /, *, device: str = "auto") -> Any:
    """Elementwise ``x1 - x2`` with broadcasting; equals ``numpy.subtract`` exactly."""
    return _binary(_SUB, "subtract", np.subtract, x1, x2, device)


def multiply(x1: Any, x2: Any, /, *, device: str = "auto") -> Any:
    """Elementwise ``x1 * x2`` with broadcasting; equals ``numpy.multiply`` exactly."""
    return _binary(_MUL, "multiply", np.multiply, x1, x2, device)


def divide(x1: Any, x2: Any, /, *, device: str = "auto") -> Any:
    """Elementwise true division ``x1 / x2``; equals ``numpy.divide`` exactly."""
    return _binary(_DIV, "divide", np.divide, x1, x2, device)


def power(x1: Any, x2: Any, /, *, device: str = "auto") -> Any:
    """Elementwise ``x1 ** x2``; equals ``numpy.power``."""
    return _binary(_POW, "power", np.power, x1, x2, device)


def maximum(x1: Any, x2: Any, /, *, device: str = "auto") -> Any:
    """Elementwise maximum, propagating NaN like ``numpy.maximum``."""
    return _binary(_MAX2, "maximum", np.maximum, x1, x2, device)


def minimum(x1: Any, x2: Any, /, *, device: str = "auto") -> Any:
    """Elementwise minimum, propagating NaN like ``numpy.minimum``."""
    return _binary(_MIN2, "minimum", np.minimum, x1, x2, device)


def matmul(x1: Any, x2: Any, /, *, device: str = "auto") -> Any:
    """Matrix product ``x1 @ x2`` (BLAS on the CPU, cuBLAS on a GPU)."""
    return _binary(_MATMUL, "matmul", np.matmul, x1, x2, device)


def where(condition: Any, x1: Any, x2: Any, /, *, device: str = "auto") -> Any:
    """Elementwise ``x1 if condition else x2`` with broadcasting, like ``numpy.where``."""
    if (_is_host(condition) and _is_host(x1) and _is_host(x2)
            and (device == "cpu" or (device == "auto" and _devices.gpu_count() == 0))):
        for a in (condition, x1, x2):
            dt = getattr(a, "dtype", None)
            if dt is not None and dt.kind not in "biufc":
                _d.check_dtype(_WHERE, a)
        t0 = perf_counter()
        result = _d.run_host(_WHERE, np.where, (condition, x1, x2), {}, "where")
        _d.record("where", "cpu", "numpy", perf_counter() - t0, device == "auto")
        return result
    return _call(_WHERE, "where", (condition, x1, x2), {}, device)


def _make_unary(name: str, numpy_name: str, doc: str) -> Any:
    op = OPS[name]
    fn = getattr(np, numpy_name)

    def unary(x: Any, /, *, device: str = "auto") -> Any:
        # The CPU fast path lives here, not in a shared helper: one call fewer pays for the
        # floating-point error state (this overhead is benchmarked on 16 elements).
        if type(x) is _ndarray and (device == "cpu" or (device == "auto" and _devices.gpu_count() == 0)):
            if x.dtype.kind not in "biufc":
                _d.check_dtype(op, x)
            t0 = perf_counter()
            token = _fp_enter(_FP_CALL)    # run_host inlined
            try:
                if _rgn.ACTIVE_REGIONS and (out := _region_out1(fn, x)) is not None:
                    result = fn(x, out=out)
                else:
                    result = fn(x)
            except (TypeError, ValueError, MemoryError) as exc:
                raise _d.translate(op, (x,), exc) from None
            finally:
                _fp_leave(token)
            if _fp_events:
                _d.replay_fp(numpy_name)
            _d.record(name, "cpu", "numpy", perf_counter() - t0, device == "auto")
            return result
        return _call(op, numpy_name, (x,), {}, device)

    unary.__name__ = unary.__qualname__ = name
    unary.__doc__ = doc
    return unary


exp = _make_unary("exp", "exp", "Elementwise e**x (NumPy's SIMD ufunc on the CPU).")
log = _make_unary("log", "log", "Elementwise natural logarithm.")
sqrt = _make_unary("sqrt", "sqrt", "Elementwise square root.")
sin = _make_unary("sin", "sin", "Elementwise sine (radians).")
cos = _make_unary("cos", "cos", "Elementwise cosine (radians).")
tanh = _make_unary("tanh", "tanh", "Elementwise hyperbolic tangent.")
abs = _make_unary("abs", "absolute", "Elementwise absolute value.")
negative = _make_unary("negative", "negative", "Elementwise negation.")


def _reduce(name: str, x: Any, axis: Any, keepdims: bool, device: str) -> Any:
    if axis is not None and not isinstance(axis, (int, tuple, np.integer)):
        raise ShapeError(f"{name}: axis must be None, an int or a tuple of ints, got {axis!r}")
    if type(x) is _ndarray and x.dtype.kind in "biufc" and (
            device == "cpu" or (device == "auto" and _devices.gpu_count() == 0)):
        t0 = perf_counter()
        fn = _REDUCERS[name]
        token = _fp_enter(_FP_CALL)
        try:
            result = fn(x, axis, None, None, keepdims)   # (array, axis, dtype, out, keepdims) for both kinds
        except (TypeError, ValueError, MemoryError) as exc:
            err = _d.translate(OPS[name], (x,), exc)
            raise (_axis_error(name, x, axis, exc) if isinstance(err, ShapeError) else err) from None
        finally:
            _fp_leave(token)
        if _fp_events:
            _d.replay_fp("reduce")
        _d.record(name, "cpu", "numpy", perf_counter() - t0, device == "auto")
        return result
    return _call(OPS[name], name, (x,), {"axis": axis, "keepdims": keepdims}, device)


def _axis_error(name: str, x: Any, axis: Any, exc: Exception) -> ShapeError:
    """A reduction's shape problem is always its axis: say which axes this array has."""
    return ShapeError(f"{name}: cannot reduce an array of shape {x.shape} over axis={axis!r} ({exc}); "
                      f"axes must be in range(-{x.ndim}, {x.ndim}) and not repeated")


# np.sum/max/min of an ndarray are exactly these ufunc reductions (NumPy's _methods call them) minus
# a Python wrapper of about 1 µs, which pays for the floating-point error state several times over.
_REDUCERS = {"sum": np.add.reduce, "mean": np.mean, "max": np.maximum.reduce, "min": np.minimum.reduce}


def sum(x: Any, /, axis: int | tuple[int, ...] | None = None, *, keepdims: bool = False,
        device: str = "auto") -> Any:
    """Sum over ``axis`` (all axes by default), like ``numpy.sum``."""
    return _reduce("sum", x, axis, keepdims, device)


def mean(x: Any, /, axis: int | tuple[int, ...] | None = None, *, keepdims: bool = False,
         device: str = "auto") -> Any:
    """Arithmetic mean over ``axis``, like ``numpy.mean``."""
    return _reduce("mean", x, axis, keepdims, device)


def max(x: Any, /, axis: int | tuple[int, ...] | None = None, *, keepdims: bool = False,
        device: str = "auto") -> Any:
    """Maximum over ``axis``, like ``numpy.max`` (NaN propagates)."""
    return _reduce("max", x, axis, keepdims, device)


def min(x: Any, /, axis: int | tuple[int, ...] | None = None, *, keepdims: bool = False,
        device: str = "auto") -> Any:
    """Minimum over ``axis``, like ``numpy.min`` (NaN propagates)."""
    return _reduce("min", x, axis, keepdims, device)


def _layout_operand(op: OpDef, x: Any, device: str) -> Any:
    """``x``'s array on the device a layout op (reshape, transpose, astype) was asked to run on.

    The same ``device=`` as every other op: 'cpu' brings it to the host, 'gpu'/'cuda:N' to that GPU
    (DeviceUnavailableError, with the reason, where none is usable), an unknown string is a
    DeviceError. Under 'auto' it stays where it lives: these ops compute (almost) nothing, so
    moving the data would cost more than any device could save.
    """
    raw = _d.unwrap(x)
    if not hasattr(raw, "reshape"):
        raw = np.asarray(raw)           # a list or a scalar, as NumPy's own functions take them
    if device == "auto" or (device == "cpu" and type(raw) is _ndarray):
        return raw
    if not isinstance(device, str):
        raise DeviceError(f"{op.name}: device must be a string such as 'auto', 'cpu', 'gpu' or 'cuda:0', "
                          f"got {device!r}")
    kind, index = _devices.parse_device(device)   # raises DeviceError / DeviceUnavailableError
    if kind == "cpu":
        return _d.to_host(raw)
    if kind == "cuda":
        return _d.to_gpu(raw, index or 0)
    return raw


def _rewrap(x: Any, result: Any) -> Any:
    """A Matrix in, a Matrix out, as with every other op."""
    if hasattr(x, "_noodle_data"):
        from noodle.array.matrix import Matrix

        return Matrix(result)
    return result


def reshape(x: Any, shape: tuple[int, ...], /, *, device: str = "auto") -> Any:
    """A view of ``x`` with a new shape (same number of elements), on ``device``."""
    tracer = _d.tracer_of((x,))
    if tracer is not None:
        return tracer.__noodle_op__("reshape", (x,), {"shape": tuple(shape)})
    raw = _layout_operand(_RESHAPE, x, device)
    try:
        return _rewrap(x, raw.reshape(shape))
    except (ValueError, MemoryError) as exc:
        raise _d.translate(_RESHAPE, (raw,), exc) from None


def transpose(x: Any, axes: tuple[int, ...] | None = None, /, *, device: str = "auto") -> Any:
    """``x`` with its axes permuted (reversed by default), on ``device``."""
    tracer = _d.tracer_of((x,))
    if tracer is not None:
        return tracer.__noodle_op__("transpose", (x,), {"axes": None if axes is None else tuple(axes)})
    raw = _layout_operand(_TRANSPOSE, x, device)
    try:
        return _rewrap(x, raw.transpose(axes) if axes is not None else raw.T)
    except (ValueError, MemoryError) as exc:
        raise _d.translate(_TRANSPOSE, (raw,), exc) from None


def _cast(raw: Any, dtype: np.dtype) -> Any:
    return raw.astype(dtype)


def astype(x: Any, dtype: Any, /, *, device: str = "auto") -> Any:
    """``x`` converted to ``dtype`` (a copy), on ``device``."""
    tracer = _d.tracer_of((x,))
    if tracer is not None:
        return tracer.__noodle_op__("astype", (x,), {"dtype": np.dtype(dtype).name})
    try:
        target = np.dtype(dtype)
    except TypeError as exc:
        raise DTypeError(f"astype: {dtype!r} is not a dtype ({exc}); expected a numeric dtype such as "
                         f"'float64', 'float32' or 'int64'") from None
    if target.kind not in "biufc":
        raise DTypeError(f"astype: noodle computes with numeric dtypes only, not {target}; "
                         f"expected bool, integer, float or complex")
    raw = _layout_operand(_ASTYPE, x, device)
    if _devices.is_gpu_array(raw):
        return _rewrap(x, _d.run_numpy(_ASTYPE, _cast, (raw, target), {}))
    return _rewrap(x, _d.run_host(_ASTYPE, _cast, (raw, target), {}, "cast"))


_RESHAPE, _TRANSPOSE, _ASTYPE = OPS["reshape"], OPS["transpose"], OPS["astype"]


__all__ = [
    "abs", "add", "astype", "cos", "divide", "exp", "log", "matmul", "max", "maximum", "mean", "min",
    "minimum", "multiply", "negative", "power", "reshape", "sin", "sqrt", "subtract", "sum", "tanh",
    "transpose", "where",
]
