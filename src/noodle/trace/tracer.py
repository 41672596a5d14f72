"""Turn a Python function into NIR by calling it with :class:`Tracer` objects.

Why tracing (not parsing source): users write ordinary NumPy-style code and
``noodle.*`` ops; every operation on a Tracer appends one typed node, so the
recorded program is exactly what ran, with shapes and dtypes known. The price
is that Python control flow on a traced value cannot be recorded: ``if t:``
raises :class:`TraceError` naming the user's line and suggesting ``nd.where``.

Three ways an op reaches a Tracer: its dunder methods (``a + b``), NumPy's
``__array_ufunc__``/``__array_function__`` (``np.exp(t)``), and
``__noodle_op__`` (the eager ``noodle.*`` ops dispatch to it).

Example::

    >>> import numpy as np
    >>> from noodle.trace import trace
    >>> prog = trace(lambda a, b: (a * b + 1.0).sum(), (np.ones(3), np.ones(3)))
    >>> [n.op for n in prog.nodes]
    ['input', 'input', 'multiply', 'const', 'add', 'sum']
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from noodle.errors import NoodleError, TraceError
from noodle.ir.graph import DTYPE_SET, Builder, Program

_NOODLE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NUMPY_DIR = os.path.dirname(os.path.abspath(np.__file__))

# NumPy ufunc / function names -> op-table names
_UFUNCS = {
    "add": "add", "subtract": "subtract", "multiply": "multiply", "true_divide": "divide",
    "divide": "divide", "power": "power", "maximum": "maximum", "minimum": "minimum",
    "less": "less", "less_equal": "less_equal", "greater": "greater", "greater_equal": "greater_equal",
    "equal": "equal", "not_equal": "not_equal", "negative": "negative", "absolute": "abs",
    "exp": "exp", "log": "log", "sqrt": "sqrt", "sin": "sin", "cos": "cos", "tanh": "tanh",
    "matmul": "matmul",
}
_FUNCS = {
    "where": "where", "sum": "sum", "mean": "mean", "max": "max", "amax": "max", "min": "min",
    "amin": "min", "reshape": "reshape", "transpose": "transpose", "broadcast_to": "broadcast_to",
    "matmul": "matmul", "astype": "astype",
}
# eager-op names accepted by __noodle_op__ (op-table names plus NumPy spellings)
_ALIASES = {**_UFUNCS, **_FUNCS, "abs": "abs", "divide": "divide"}


def user_location() -> str:
    """``file:line`` of the innermost frame outside noodle and NumPy (the user's code)."""
    frame = sys._getframe(1)
    while frame is not None:
        fname = os.path.abspath(frame.f_code.co_filename)
        if not fname.startswith(_NOODLE_DIR) and not fname.startswith(_NUMPY_DIR):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


class TraceContext:
    """The program being recorded: a :class:`Builder` plus constant handling."""

    def __init__(self) -> None:
        self.builder = Builder()

    def lift(self, x: Any, like: Tracer | None) -> Tracer:
        """A Tracer for ``x``: Tracers pass through, Python scalars and arrays become constants."""
        if isinstance(x, Tracer):
            if x.ctx is not self:
                raise TraceError(f"a value from another traced function was used at {user_location()}; "
                                 "pass it as an argument instead")
            return x
        if isinstance(x, bool | int | float) and like is not None:
            # NEP 50: a Python scalar takes the array operand's dtype where it fits
            dtype = np.result_type(np.dtype(like.dtype), x).name
            if dtype not in DTYPE_SET:
                dtype = "float64"
            return Tracer(self, self.builder.const(x, dtype))
        if isinstance(x, np.ndarray | np.generic | bool | int | float):
            arr = np.asarray(x)
            if arr.dtype.name not in DTYPE_SET:
                raise TraceError(f"constant of dtype {arr.dtype} at {user_location()} is not supported; "
                                 f"use one of {', '.join(sorted(DTYPE_SET))}")
            if arr.size > 1_000_000:
                raise TraceError(f"a constant array of {arr.size} elements was captured at "
                                 f"{user_location()}; pass large arrays as arguments instead")
            return Tracer(self, self.builder.const(arr))
        raise TraceError(f"cannot use a {type(x).__name__} in a traced function (at {user_location()}); "
                         "use arrays, Python numbers or noodle ops")

    def op(self, name: str, *operands: Any, **attrs: Any) -> Tracer:
        """Record ``name(*operands)``; the first Tracer operand types scalar constants."""
        like = next((o for o in operands if isinstance(o, Tracer)), None)
        vals = [self.lift(o, like).value for o in operands]
        try:
            return Tracer(self, self.builder.add(name, *vals, **attrs))
        except TraceError:
            raise
        except NoodleError as exc:
            raise type(exc)(f"{exc} (at {user_location()})") from None


class Tracer:
    """A stand-in for an array while a function is traced: every op on it is recorded."""

    __slots__ = ("ctx", "value")
    __array_priority__ = 1000

    def __init__(self, ctx: TraceContext, value: int) -> None:
        self.ctx = ctx
        self.value = value

    # ---- metadata
    @property
    def shape(self) -> tuple[int, ...]:
        return self.ctx.builder.nodes[self.value].shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.ctx.builder.nodes[self.value].dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d traced array")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"Tracer(%{self.value}: {self.dtype.name}{list(self.shape)})"

    __hash__ = object.__hash__

    # ---- things that cannot be traced
    def _no_concrete(self, what: str) -> Any:
        raise TraceError(
            f"{what} of a traced value at {user_location()}: Python control flow and conversions cannot "
            "depend on array values inside @noodle.jit. Use nd.where(cond, a, b) instead of if/else, "
            "or compute the value outside the jitted function and pass it in."
        )

    def __bool__(self) -> bool:
        return self._no_concrete("bool()")

    def __int__(self) -> int:
        return self._no_concrete("int()")

    def __float__(self) -> float:
        return self._no_concrete("float()")

    def __index__(self) -> int:
        return self._no_concrete("using as an index")

    def __iter__(self) -> Any:
        return self._no_concrete("iterating")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        return self._no_concrete("converting to a NumPy array")

    def __getitem__(self, key: Any) -> Any:
        raise TraceError(f"indexing a traced value at {user_location()} is not supported by the JIT yet; "
                         "slice the input before calling the jitted function")

    # ---- arithmetic
    def _bin(self, name: str, other: Any, reverse: bool = False) -> Tracer:
        if not isinstance(other, Tracer | bool | int | float | np.ndarray | np.generic):
            return NotImplemented
        return self.ctx.op(name, other, self) if reverse else self.ctx.op(name, self, other)

    def __add__(self, o: Any) -> Tracer: return self._bin("add", o)
    def __radd__(self, o: Any) -> Tracer: return self._bin("add", o, True)
    def __sub__(self, o: Any) -> Tracer: return self._bin("subtract", o)
    def __rsub__(self, o: Any) -> Tracer: return self._bin("subtract", o, True)
    def __mul__(self, o: Any) -> Tracer: return self._bin("multiply", o)
    def __rmul__(self, o: Any) -> Tracer: return self._bin("multiply", o, True)
    def __truediv__(self, o: Any) -> Tracer: return self._bin("divide", o)
    def __rtruediv__(self, o: Any) -> Tracer: return self._bin("divide", o, True)
    def __pow__(self, o: Any) -> Tracer: return self._bin("power", o)
    def __rpow__(self, o: Any) -> Tracer: return self._bin("power", o, True)
    def __matmul__(self, o: Any) -> Tracer: return self._bin("matmul", o)
    def __rmatmul__(self, o: Any) -> Tracer: return self._bin("matmul", o, True)
    def __lt__(self, o: Any) -> Tracer: return self._bin("less", o)
    def __le__(self, o: Any) -> Tracer: return self._bin("less_equal", o)
    def __gt__(self, o: Any) -> Tracer: return self._bin("greater", o)
    def __ge__(self, o: Any) -> Tracer: return self._bin("greater_equal", o)
    def __eq__(self, o: Any) -> Tracer: return self._bin("equal", o)  # type: ignore[override]
    def __ne__(self, o: Any) -> Tracer: return self._bin("not_equal", o)  # type: ignore[override]
    def __neg__(self) -> Tracer: return self.ctx.op("negative", self)
    def __pos__(self) -> Tracer: return self
    def __abs__(self) -> Tracer: return self.ctx.op("abs", self)

    # ---- shape and reductions
    @property
    def T(self) -> Tracer:
        return self.transpose()

    def transpose(self, *axes: Any) -> Tracer:
        if len(axes) == 1 and isinstance(axes[0], tuple | list):
            axes = tuple(axes[0])
        if not axes or axes == (None,):
            axes = tuple(reversed(range(self.ndim)))
        return self.ctx.op("transpose", self, axes=tuple(int(a) % max(self.ndim, 1) for a in axes))

    def reshape(self, *shape: Any) -> Tracer:
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            shape = tuple(shape[0])
        return self.ctx.op("reshape", self, shape=_resolve_shape(tuple(int(s) for s in shape), self.size))

    def astype(self, dtype: Any) -> Tracer:
        name = np.dtype(dtype).name
        return self.ctx.op("astype", self, dtype=name)

    def _reduce(self, name: str, axis: Any = None, keepdims: bool = False) -> Tracer:
        if axis is not None:
            axis = (int(axis),) if isinstance(axis, int | np.integer) else tuple(int(a) for a in axis)
        return self.ctx.op(name, self, axis=axis, keepdims=bool(keepdims))

    def sum(self, axis: Any = None, keepdims: bool = False) -> Tracer: return self._reduce("sum", axis, keepdims)
    def mean(self, axis: Any = None, keepdims: bool = False) -> Tracer:
        return self._reduce("mean", axis, keepdims)
    def max(self, axis: Any = None, keepdims: bool = False) -> Tracer: return self._reduce("max", axis, keepdims)
    def min(self, axis: Any = None, keepdims: bool = False) -> Tracer: return self._reduce("min", axis, keepdims)

    # ---- dispatch from noodle eager ops and NumPy
    def __noodle_op__(self, op: str, args: tuple, kwargs: dict) -> Tracer:
        """Record eager op ``op`` (an op-table or NumPy name) called with ``args``/``kwargs``."""
        name = _ALIASES.get(op, op)
        return _apply(self.ctx, name, args, kwargs)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        name = _UFUNCS.get(ufunc.__name__)
        if method != "__call__" or name is None or kwargs:
            raise TraceError(f"np.{ufunc.__name__}{'' if method == '__call__' else '.' + method} with "
                             f"{sorted(kwargs) or 'these arguments'} is not supported in a traced function "
                             f"(at {user_location()}); use the noodle op or plain operators")
        return self.ctx.op(name, *inputs)

    def __array_function__(self, func: Any, types: Any, args: tuple, kwargs: dict) -> Any:
        name = _FUNCS.get(func.__name__)
        if name is None:
            raise TraceError(f"np.{func.__name__} is not supported in a traced function (at "
                             f"{user_location()}); supported: {', '.join(sorted(_FUNCS))} and the ufuncs")
        return _apply(self.ctx, name, args, kwargs)


def _resolve_shape(shape: tuple[int, ...], size: int) -> tuple[int, ...]:
    if shape.count(-1) > 1:
        raise TraceError(f"reshape with more than one -1 (at {user_location()})")
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
        if known == 0 or size % known:
            raise TraceError(f"cannot reshape {size} elements into {shape} (at {user_location()})")
        shape = tuple(size // known if s == -1 else s for s in shape)
    return shape


def _apply(ctx: TraceContext, name: str, args: tuple, kwargs: dict) -> Tracer:
    """Record a function-style op call (``nd.sum(x, axis=0)``, ``np.where(c, a, b)``)."""
    kwargs = dict(kwargs)
    if name in ("sum", "mean", "max", "min"):
        x = ctx.lift(args[0], None)
        axis = kwargs.pop("axis", args[1] if len(args) > 1 else None)
        keepdims = kwargs.pop("keepdims", False)
        _no_extra(name, kwargs)
        return x._reduce(name, axis, keepdims)
    if name == "reshape":
        shape = kwargs.pop("shape", kwargs.pop("newshape", args[1] if len(args) > 1 else None))
        _no_extra(name, kwargs)
        return ctx.lift(args[0], None).reshape(shape)
    if name == "transpose":
        axes = kwargs.pop("axes", args[1] if len(args) > 1 else None)
        _no_extra(name, kwargs)
        t = ctx.lift(args[0], None)
        return t.transpose() if axes is None else t.transpose(tuple(axes))
    if name == "astype":
        dtype = kwargs.pop("dtype", args[1] if len(args) > 1 else None)
        _no_extra(name, kwargs)
        return ctx.lift(args[0], None).astype(dtype)
    if name == "broadcast_to":
        shape = kwargs.pop("shape", args[1] if len(args) > 1 else None)
        _no_extra(name, kwargs)
        return ctx.op("broadcast_to", args[0], shape=tuple(int(s) for s in shape))
    _no_extra(name, kwargs)
    if name not in _ALIASES.values():
        raise TraceError(f"op {name!r} is not supported in a traced function (at {user_location()})")
    return ctx.op(name, *args)


def _no_extra(name: str, kwargs: dict) -> None:
    if kwargs:
        raise TraceError(f"{name}() got unsupported arguments {sorted(kwargs)} in a traced function "
                         f"(at {user_location()})")


def trace(fn: Callable[..., Any], args: Sequence[Any], static: Sequence[bool] | None = None) -> Program:
    """Record ``fn(*args)`` into a NIR :class:`Program`.

    Array arguments (anything with ``shape`` and ``dtype``) become program
    inputs in order; other arguments are passed through unchanged (static: they
    are part of the cache signature). The result may be one array or a tuple.
    """
    ctx = TraceContext()
    call_args: list[Any] = []
    n = 0
    for i, a in enumerate(args):
        is_static = static[i] if static is not None else not is_array(a)
        if is_static:
            call_args.append(a)
            continue
        dtype = np.dtype(a.dtype).name
        if dtype not in DTYPE_SET:
            raise TraceError(f"argument {i} has dtype {dtype}, which the JIT does not support; "
                             f"convert it to one of {', '.join(sorted(DTYPE_SET))}")
        call_args.append(Tracer(ctx, ctx.builder.input(n, tuple(a.shape), dtype)))
        n += 1
    result = fn(*call_args)
    single = not isinstance(result, tuple | list)
    results = [result] if single else list(result)
    if not results:
        raise TraceError("a jitted function must return at least one array")
    outs = [ctx.lift(r, None).value for r in results]
    program = ctx.builder.finish(outs)
    program.n_inputs = n
    program.meta["single_output"] = single
    return program


def is_array(a: Any) -> bool:
    """True for NumPy/CuPy arrays (traced as inputs); False for static arguments."""
    return hasattr(a, "shape") and hasattr(a, "dtype") and not isinstance(a, np.generic)


__all__ = ["TraceContext", "Tracer", "is_array", "trace", "user_location"]
