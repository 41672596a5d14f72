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

import decimal
import fractions
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from noodle.errors import NoodleError, OpOverflowError, TraceAttributeError, TraceError, TraceTypeError
from noodle.ir.graph import DTYPE_SET, Builder, Program
from noodle.ir.ops import OPS, DTypeRule, OpKind, computing_ops, traced_functions, traced_ufuncs

_NOODLE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NUMPY_DIR = os.path.dirname(os.path.abspath(np.__file__))

# NumPy ufunc / function names -> op-table names: read from the op table (ir/ops.py), plus the
# functions the tracer composes from several ops (any, all, ravel, copy, clip)
_UFUNCS = traced_ufuncs()
_COMPOSITES = {"any": "any", "all": "all", "ravel": "ravel", "copy": "copy", "clip": "clip",
               "concatenate": "concatenate", "stack": "stack", "take": "take"}
_FUNCS = {**traced_functions(), **_COMPOSITES}
_LOGICAL_UFUNCS = {"logical_and": "and", "logical_or": "or", "logical_xor": "xor", "logical_not": "not"}
# ndarray methods and properties a traced array has (named in the error for the others)
TRACED_METHODS = ("T", "all", "any", "astype", "clip", "copy", "dot", "dtype", "flatten", "max", "mean", "min",
                  "ndim", "ravel", "reshape", "shape", "size", "sum", "transpose")
# eager-op names accepted by __noodle_op__ (op-table names plus NumPy spellings)
_ALIASES = {**{name: name for name in computing_ops()}, **_UFUNCS, **_FUNCS}


_ACTIVE = threading.local()


class active:  # noqa: N801 - used as a context manager, reads like a function
    """Marks ``ctx`` as the trace being recorded on this thread while the block runs.

    Why: ``nd.while_loop`` / ``nd.fori_loop`` called inside a jitted function must record a loop
    even when nothing they are given is traced (a constant initial carry, a body reading traced
    values from its closure); outside any trace they are plain Python loops."""

    def __init__(self, ctx: TraceContext) -> None:
        self.ctx = ctx

    def __enter__(self) -> TraceContext:
        stack = _ACTIVE.__dict__.setdefault("stack", [])
        stack.append(self.ctx)
        return self.ctx

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.stack.pop()


def active_context() -> TraceContext | None:
    """The innermost trace being recorded on this thread (None outside ``nd.jit`` tracing)."""
    stack = getattr(_ACTIVE, "stack", None)
    return stack[-1] if stack else None


def user_location() -> str:
    """``file:line`` of the innermost frame outside noodle and NumPy (the user's code)."""
    frame = sys._getframe(1)
    while frame is not None:
        fname = os.path.abspath(frame.f_code.co_filename)
        if not fname.startswith(_NOODLE_DIR) and not fname.startswith(_NUMPY_DIR):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


class Concretize(BaseException):  # noqa: N818 - a control signal, not an error users see
    """A scalar parameter was used where a concrete value is needed (``if s:``, a shape, an int
    op with Python's unbounded ints): the JIT retraces with those parameters static.

    A ``BaseException``, so that the traced function's own ``except Exception:`` cannot swallow it
    and trace a branch plain Python would not take."""

    def __init__(self, params: frozenset[int]) -> None:
        super().__init__(sorted(params))
        self.params = params


# ops on Python floats that Python evaluates exactly as IEEE float64 (so a traced parameter can
# stand in for the float); anything else on parameters alone (division: ZeroDivisionError,
# ints: unbounded) needs the concrete value
_WEAK_FLOAT_OPS = frozenset({"add", "subtract", "multiply", "negative", "abs"})


class TraceContext:
    """The program being recorded: a :class:`Builder` plus constant and capture handling.

    ``captured`` maps ``id(array)`` of arrays the function reads from outside its arguments
    (found by :mod:`noodle.trace.capture`) to a callback that makes their implicit input;
    ``weak`` maps values that stand for Python scalar arguments (runtime parameters) to the
    parameters they derive from: NumPy treats Python scalars as *weak* (NEP 50), so they are
    cast to the array operand's dtype where they meet one.
    """

    def __init__(self) -> None:
        self.builder = Builder()
        self.captured: dict[int, Callable[[], Tracer]] = {}
        self.weak: dict[int, frozenset[int]] = {}
        self.baked: list[Any] = []   # arrays frozen as constants (the guards check shared ones)
        self.raised: list[TraceError] = []   # errors raised into the traced function
        self.scalar_inputs: set[int] = set()   # inputs standing for scalars (immutable in Python)
        self.raw_outputs: dict[int, Any] = {}  # results that are plain Python/NumPy scalars, not traced
        self.scalar_outputs: frozenset[int] = frozenset()   # traced results NumPy returns as scalars
        self.output_type: type | None = None   # a namedtuple class the function returned
        self.view_values: set[int] = set()    # values made as views (x.reshape(()) is a 0-d array)
        # 0-d values whose kind the graph does not show: True where NumPy holds a scalar (``+z``: a
        # ufunc), False where a 0-d array (a scalar's ``[...]``, ``np.copy`` of one)
        self.held_as_scalar: dict[int, bool] = {}
        # a loop's cond or body (noodle.trace.loops): values of the enclosing trace it reads become
        # extra inputs of this sub-program, through the scope
        self.scope: Any = None

    def lift(self, x: Any, like: Tracer | None) -> Tracer:
        """A Tracer for ``x``: Tracers pass through, Python scalars and arrays become constants."""
        if isinstance(x, Tracer):
            if x.ctx is not self and self.scope is not None and self.scope.encloses(x.ctx):
                return self.scope.capture(self, x)
            if x.ctx is not self:
                raise TraceError(f"a value from another traced function was used at {user_location()}; "
                                 "pass it as an argument instead")
            if x.stale is not None:
                raise TraceError(
                    f"a view of an array that was updated in place at {x.stale} is used at {user_location()}; "
                    "in NumPy the view sees the update, which the JIT does not model. Take the view after "
                    "the update, or write the update as a new array (a = a + b instead of a += b)")
            return x
        if isinstance(x, bool | int | float) and like is not None:
            # NEP 50: a Python scalar takes the array operand's dtype where it fits
            try:
                dtype = np.result_type(np.dtype(like.dtype), x).name
                if dtype not in DTYPE_SET:
                    dtype = "float64"
                return Tracer(self, self.builder.const(x, dtype))
            except OverflowError as exc:   # NEP 50: 300 beside an int8 array
                raise OpOverflowError(f"{exc} (at {user_location()}); NumPy raises OverflowError here too: use a "
                                      "value that fits or cast the array to a wider dtype first") from None
        make = self.captured.get(id(x)) if self.captured else None
        if make is not None:
            return make()
        if self.scope is not None and isinstance(x, np.ndarray):
            # an array read inside a loop body: the enclosing trace owns it (captured or baked there)
            return self.scope.capture(self, self.scope.parent.lift(x, None))
        if isinstance(x, np.ndarray | np.generic | bool | int | float):
            arr = np.asarray(x)
            if arr.dtype.name not in DTYPE_SET:
                raise TraceError(f"constant of dtype {arr.dtype} at {user_location()} is not supported; "
                                 f"use one of {', '.join(sorted(DTYPE_SET))}")
            if arr.size > 1_000_000:
                raise TraceError(f"a constant array of {arr.size} elements was captured at "
                                 f"{user_location()}; pass large arrays as arguments instead")
            if isinstance(x, np.ndarray):
                self.baked.append(x)
            perm = _dense_order(arr)
            if perm is not None:
                # a transposed (Fortran-ordered) array: constants are stored C-ordered, so the
                # program transposes one back, a view with the array's own strides, which a
                # product's BLAS call reads (passes/layout)
                base = Tracer(self, self.builder.const(np.transpose(arr, perm)))
                return base.transpose(tuple(int(a) for a in np.argsort(perm)))
            return Tracer(self, self.builder.const(arr))
        raise TraceError(f"cannot use a {type(x).__name__} in a traced function (at {user_location()}); "
                         "use arrays, Python numbers or noodle ops")

    def innermost(self, values: Any) -> TraceContext:
        """The context to record an op on ``values`` in: this one, or a loop body nested in it
        that one of the values belongs to (see :mod:`noodle.trace.loops`)."""
        ctx = self
        for v in values:
            if isinstance(v, Tracer) and v.ctx is not ctx and v.ctx.scope is not None and v.ctx.scope.encloses(ctx):
                ctx = v.ctx
        return ctx

    def _typed_scalar(self, x: Any) -> bool:
        """A NumPy scalar (its dtype fixed), not a Python number or a parameter standing for one."""
        return isinstance(x, np.generic) or (isinstance(x, Tracer) and not self.weak.get(x.value))

    def op(self, name: str, *operands: Any, _py: bool = False, **attrs: Any) -> Tracer:
        """Record ``name(*operands)``; the first Tracer operand types scalar constants.

        ``_py``: the op comes from a Python operator (``a + b``), which matters for parameters
        standing for Python scalars (see :meth:`_weak_operands`).
        """
        inner = self.innermost(operands)
        if inner is not self:   # a loop body's value beside one of the enclosing trace: record it in the body
            return inner.op(name, *operands, _py=_py, **attrs)
        if (name == "power" and _py and len(operands) == 2 and all(numpy_scalar(o) for o in operands)
                and (all(o.dtype.kind == "f" for o in operands if isinstance(o, Tracer))
                     or (all(self._typed_scalar(o) for o in operands)
                         and any(np.dtype(o.dtype).kind == "f" for o in operands)))):
            # ``a ** b`` of two float scalars, or of two NumPy scalars one of them a float
            # (``np.int8 ** np.float32``: NumPy's float32 scalar math), is NumPy's scalar math, not
            # np.power (ir.semantics.scalar_power computes it as the plain code does); an integer
            # scalar beside a Python float goes to the ufunc in NumPy, and integer powers are exact
            # either way
            attrs = {**attrs, "scalar": True}
        if name in _COMPARISONS and len(operands) == 2:
            known = self._compare_out_of_range(name, operands)
            if known is not None:
                return known
        if self.weak:
            operands, weak = self._weak_operands(name, operands, _py)
        else:
            weak = None
        # NEP 50: a Python scalar takes the dtype of the array beside it; for where, the other
        # branch, not the condition (np.where(m, 1, x8) is int8)
        data = operands[1:] if name == "where" else operands
        like = next((o for o in data if isinstance(o, Tracer)), None)
        if name == "where" and like is not None and like.dtype.kind in "iu":
            operands = (operands[0], *(_where_int(o, like.dtype) for o in operands[1:]))   # (not the condition)
        vals = [self.lift(o, None if (name == "where" and k == 0) else like).value for k, o in enumerate(operands)]
        try:
            out = Tracer(self, self.builder.add(name, *vals, **attrs))
        except TraceError:
            raise
        except NoodleError as exc:
            raise type(exc)(f"{exc} (at {user_location()})") from None
        if weak:
            self.weak[out.value] = weak
        return out

    def _compare_out_of_range(self, name: str, operands: tuple) -> Tracer | None:
        """``x8 > 300``: a Python int outside an integer array's range. NumPy compares it exactly
        (every element is below it); casting it to the array's dtype would overflow. The answer is
        the same for every element: all True or all False, of the array's shape."""
        for k, (t, v) in enumerate((operands, operands[::-1])):
            if isinstance(t, Tracer) and type(v) is int and t.dtype.kind in "iu":
                info = np.iinfo(t.dtype)
                if info.min <= v <= info.max:
                    return None
                above = v > info.max
                op = _MIRRORED[name] if k else name   # v < t is t > v
                holds = {"less": above, "less_equal": above, "greater": not above, "greater_equal": not above,
                         "equal": False, "not_equal": True}[op]
                return self.op("equal" if holds else "not_equal", t, t)   # (no NaN in an int array)
        return None

    def _weak_operands(self, name: str, operands: tuple, py: bool) -> tuple[tuple, frozenset[int] | None]:
        """Apply NEP 50 to parameters standing for Python scalars.

        Beside an array they take its dtype (``x32 * s`` is float32), as NumPy does; Python ints
        beside narrow integer arrays need the value (NumPy raises on overflow), so they become
        static. Among themselves, floats under ``+ - * abs`` stay parameters (Python computes those
        exactly as float64 does) and the result is again a Python-scalar parameter; anything else
        needs the concrete value. Returns the operands and, for a weak result, its parameters.
        """
        weak = [self.weak.get(o.value) if isinstance(o, Tracer) else None for o in operands]
        if not any(w is not None for w in weak):
            return operands, None
        params = frozenset().union(*(w for w in weak if w is not None))
        strong = [o for o, w in zip(operands, weak, strict=True)
                  if w is None and (isinstance(o, Tracer) or (is_array(o) or isinstance(o, np.generic)))]
        if not strong:
            floats = all(o.dtype.kind == "f" if isinstance(o, Tracer) else isinstance(o, int | float)
                         for o in operands)
            if py and name in _WEAK_FLOAT_OPS and floats:
                return operands, params
            raise Concretize(params)
        dtypes = [np.dtype(o.dtype) for o in strong]
        result = np.result_type(*dtypes) if len(dtypes) > 1 else dtypes[0]
        out = list(operands)
        for k, (o, w) in enumerate(zip(operands, weak, strict=True)):
            if w is None:
                continue
            kind = o.dtype.kind
            if kind in "iu" and (result.kind in "iu" and result != np.int64):
                raise Concretize(w)
            sample = {"f": 0.0, "i": 0, "u": 0, "b": False}[kind]
            target = np.result_type(result, sample)
            if target.name not in DTYPE_SET:
                raise Concretize(w)
            out[k] = o if target == o.dtype else Tracer(self, self.builder.add("astype", o.value,
                                                                                  dtype=target.name))
        return tuple(out), None


class _Buffer:
    """The memory a traced array and its views share, as NumPy would have it.

    Why: ``a += b`` in NumPy writes into ``a``'s buffer, so every name bound to ``a`` and every
    view of it sees the new values. The tracer models that by rebinding the updated Tracer to the
    new node (all names hold that one object) and marking the buffer's other views stale: using a
    stale view raises instead of silently reading the old values.
    """

    __slots__ = ("external", "members")

    def __init__(self, external: bool, first: Tracer) -> None:
        self.external = external    # the caller's array (an argument, a captured array, a constant)
        self.members: list[Tracer] = [first]


def numpy_scalar(x: Any) -> bool:
    """True where the plain function would hold a Python or NumPy scalar, not an array: a scalar
    argument, a Python-scalar parameter, or a 0-d value NumPy returns as a scalar (a reduction, a
    ufunc on scalars, ``x[3]``, ``.astype`` of a scalar); False for arrays, 0-d arrays passed in,
    ``np.where``'s 0-d result, ``.astype``/``.copy`` of a 0-d array, and 0-d views that share a
    buffer (``x.reshape(())``). Immutable (``s += 1`` rebinds), and ``s ** t`` of two floats is
    scalar math (:meth:`TraceContext.op`)."""
    if isinstance(x, bool | int | float | np.generic):
        return True
    if not isinstance(x, Tracer) or x.shape:
        return False
    ctx = x.ctx
    if x.value in ctx.scalar_inputs or ctx.weak.get(x.value):
        return True
    if x.value in ctx.held_as_scalar:
        return ctx.held_as_scalar[x.value]
    if x.buf is not None and len(x.buf.members) > 1:
        return False
    v = x.value
    while True:
        node = ctx.builder.nodes[v]
        if node.op in ("input", "const", "where"):   # (np.where of scalars returns a 0-d array)
            return v in ctx.scalar_inputs or bool(ctx.weak.get(v))
        if node.op != "astype":                      # .astype()/.copy() keep what they are given
            return True
        v = node.args[0]
        if v in ctx.view_values:                     # .copy() of a 0-d view is a 0-d array
            return False
        if v in ctx.held_as_scalar:
            return ctx.held_as_scalar[v]



def _where_int(x: Any, dtype: np.dtype) -> Any:
    """A Python int branch of ``np.where`` beside an integer array: NumPy converts it through a C
    integer and keeps the low bits (``np.where(m, x8, 300)`` holds 44), where arithmetic raises
    OverflowError; beyond 64 bits NumPy raises too (left to the constant's check)."""
    if type(x) is not int:
        return x
    info = np.iinfo(dtype)
    if info.min <= x <= info.max or not -(1 << 63) <= x < (1 << 64):
        return x
    return np.array(x % (1 << 64), dtype=np.uint64).astype(dtype)[()]


_COMPARISONS = frozenset(n for n, d in OPS.items() if d.kind is OpKind.BINARY and d.dtype_rule is DTypeRule.BOOL)
_MIRRORED = {"less": "greater", "less_equal": "greater_equal", "greater": "less", "greater_equal": "less_equal",
             "equal": "equal", "not_equal": "not_equal"}

#: the method Python tries on the right operand of each binary operator
_REFLECTED = {"add": "__radd__", "subtract": "__rsub__", "multiply": "__rmul__", "divide": "__rtruediv__",
              "power": "__rpow__", "matmul": "__rmatmul__", "less": "__gt__", "less_equal": "__ge__",
              "greater": "__lt__", "greater_equal": "__le__", "equal": "__eq__", "not_equal": "__ne__"}
#: the standard library's exact numbers: they define reflected operators but know nothing of Tracers
_EXACT_NUMBERS = (fractions.Fraction, decimal.Decimal)
_BUILTIN_REFUSED = (str, bytes, list, tuple, dict, set, frozenset, type(None), *_EXACT_NUMBERS)


def _defers(kind: type, name: str) -> bool:
    """Whether Python should try ``kind``'s reflected operator next (a type of its own that
    defines it), rather than noodle refusing the operand now."""
    if issubclass(kind, _BUILTIN_REFUSED):
        return False
    method = _REFLECTED.get(name)
    return method is not None and getattr(kind, method, None) is not getattr(object, method, None)


def _operand_error(x: Any, name: str, other: Any) -> TraceTypeError:
    """Why ``x <op> other`` cannot be traced. Why raise rather than return NotImplemented: Python
    would then fall back to its own meaning (``x == None`` becomes ``False``, not NumPy's array of
    ``False``; ``[1, 2] * x`` asks ``x`` for an int), a silent wrong answer or a baffling error."""
    symbol = OPS[name].symbol or name
    kind = type(other).__name__
    if isinstance(other, list | tuple):
        hint = (f"convert it with np.asarray(...) and pass it in as an argument: a {kind} read while "
                "tracing would be frozen into the compiled program")
    elif isinstance(other, _EXACT_NUMBERS):
        hint = (f"NumPy would make an object array of {kind}s; convert it first, e.g. np.float64(value), "
                "or keep this arithmetic outside the jitted function")
    elif other is None or isinstance(other, str | bytes):
        hint = ("NumPy refuses it for arithmetic too (for == and != it compares elementwise); test "
                "for it outside the jitted function")
    else:
        hint = "use an array, a NumPy scalar or a Python number"
    return TraceTypeError(f"`{symbol}` between a traced {x.dtype} array and a {kind} at {user_location()}: "
                          f"the JIT takes arrays and numbers as operands; {hint}")


class Tracer:
    """A stand-in for an array while a function is traced: every op on it is recorded."""

    __slots__ = ("buf", "ctx", "readonly", "stale", "value")
    __array_priority__ = 1000

    def __init__(self, ctx: TraceContext, value: int) -> None:
        self.ctx = ctx
        self.value = value
        self.buf: _Buffer | None = None   # made on the first view or in-place update
        self.stale: str | None = None     # where the buffer was updated, for a view that missed it
        self.readonly = False             # a broadcast view (NumPy's are read-only), or a view of one

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
        params = self.ctx.weak.get(self.value)
        if params:
            raise Concretize(params)
        err = TraceError(
            f"{what} of a traced value at {user_location()}: Python control flow and conversions cannot "
            "depend on array values inside @noodle.jit. Use nd.where(cond, a, b) instead of if/else, "
            "or compute the value outside the jitted function and pass it in."
        )
        self.ctx.raised.append(err)   # re-raised after the trace if the function swallowed it
        raise err

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

    def __getitem__(self, key: Any) -> Tracer:
        from noodle.trace.indexing import getitem  # noqa: PLC0415 - indexing builds on this module

        ctx = self.ctx.innermost(key if isinstance(key, tuple) else (key,))
        return getitem(ctx.lift(self, None), key)

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TraceError(f"assigning into a traced array (a[...] = ...) at {user_location()} is not supported "
                         "by the JIT; build the new array instead (nd.where(mask, new, a), or a = new)")

    def __getattr__(self, name: str) -> Any:
        # only reached for names Tracer lacks: NumPy methods the JIT does not trace say so by name
        if not name.startswith("__") and hasattr(np.ndarray, name):
            raise TraceAttributeError(f"x.{name} is not supported on a traced array (at {user_location()}); supported: "
                             f"{', '.join(TRACED_METHODS)}. Compute it outside the jitted function and pass it in")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ---- buffers: views and in-place updates
    def _buffer(self) -> _Buffer:
        if self.buf is None:
            op = self.ctx.builder.nodes[self.value].op
            self.buf = _Buffer(op in ("input", "const"), self)
        return self.buf

    def _view(self, name: str, **attrs: Any) -> Tracer:
        """``name`` (reshape, transpose, broadcast_to) as a view sharing this array's buffer."""
        out = self.ctx.op(name, self, **attrs)
        if numpy_scalar(self):
            # a NumPy scalar is immutable and its own memory: ``s.reshape(1)`` is a new array,
            # ``s.reshape(())`` a scalar again (NumPy returns 0-d results of scalars as scalars)
            return out
        self.ctx.view_values.add(out.value)
        buf = self._buffer()
        out.buf = buf
        out.readonly = self.readonly or name == "broadcast_to"
        buf.members.append(out)
        return out

    def copy(self, *args: Any, **kwargs: Any) -> Tracer:
        """A new array with the same values (its own buffer), as ``ndarray.copy`` gives (any
        ``order``: the values are the same)."""
        p = _params("copy", args, kwargs, (("order", "C"),))
        return self._copy_as(self.dtype.name, p["order"])

    def _copy_as(self, dtype: str, order: str) -> Tracer:
        """An ``astype`` node; its ``order`` is recorded where it is not astype's "K": the values
        are the same in any order, but a product of the copy reads its layout (passes/layout)."""
        if order not in ("C", "F", "A", "K"):
            raise TraceError(f"order={order!r} (at {user_location()}): NumPy takes 'C', 'F', 'A' or 'K'")
        if order == "K":
            return self.ctx.op("astype", self, dtype=dtype)
        return self.ctx.op("astype", self, dtype=dtype, order=order)

    def _inplace(self, name: str, other: Any, symbol: str) -> Tracer:
        """``self <symbol>= other``: NumPy writes into self's buffer, casting same_kind."""
        ctx = self.ctx
        if numpy_scalar(self):
            # a Python/NumPy scalar (an argument, or what a reduction or a ufunc on scalars returns)
            # is immutable: += rebinds the name, other names keep the old value
            return self._bin(name, other)
        ctx.lift(self, None)                 # a stale view raises here
        buf = self._buffer()
        if buf.external:
            raise TraceError(
                f"in-place update `{symbol}=` of an argument or captured array at {user_location()}: a jitted "
                "function cannot write into the caller's array. Write `a = a {0} b` (a new array) and return "
                "it, or do the update outside the jitted function".format(symbol))
        if self.readonly:
            raise TraceError(f"in-place update `{symbol}=` of a broadcast view (or a view of one) at "
                             f"{user_location()}: NumPy refuses it too (the view is read-only)")
        out = self._bin(name, other)
        if out is NotImplemented:
            return out
        if out.ndim >= 2 and out.value > self.value and out.ctx is ctx:
            # NumPy writes the result into self's buffer: it keeps self's layout (passes/layout)
            nodes = ctx.builder.nodes
            nodes[out.value] = nodes[out.value].with_attr("inplace", True)
        if out.shape != self.shape:
            raise TraceError(f"in-place update `{symbol}=` at {user_location()}: the result has shape "
                             f"{out.shape}, the array being updated {self.shape} (NumPy raises: non-"
                             "broadcastable output operand)")
        if out.dtype != self.dtype:
            if not np.can_cast(out.dtype, self.dtype, "same_kind"):
                raise TraceError(f"in-place update `{symbol}=` at {user_location()}: cannot cast the "
                                 f"{out.dtype} result to the array's {self.dtype} with casting rule "
                                 "'same_kind' (NumPy raises too); write a = (a " + symbol + " b).astype(...)")
            out = ctx.op("astype", out, dtype=self.dtype.name)
        where = user_location()
        for m in buf.members:
            if m is not self:
                m.stale = where
        buf.members = [self]
        self.value = out.value
        return self

    def __iadd__(self, o: Any) -> Tracer: return self._inplace("add", o, "+")
    def __isub__(self, o: Any) -> Tracer: return self._inplace("subtract", o, "-")
    def __imul__(self, o: Any) -> Tracer: return self._inplace("multiply", o, "*")
    def __itruediv__(self, o: Any) -> Tracer: return self._inplace("divide", o, "/")
    def __ipow__(self, o: Any) -> Tracer: return self._inplace("power", o, "**")
    def __imatmul__(self, o: Any) -> Tracer: return self._inplace("matmul", o, "@")

    def _unsupported(self, symbol: str, *_: Any) -> Any:
        raise TraceError(f"the `{symbol}` operator on a traced array (at {user_location()}) is not supported by "
                         "the JIT yet; compute it outside the jitted function and pass the result in")

    def __floordiv__(self, o: Any) -> Any: return self._unsupported("//")
    def __rfloordiv__(self, o: Any) -> Any: return self._unsupported("//")
    def __ifloordiv__(self, o: Any) -> Any: return self._unsupported("//=")
    def __mod__(self, o: Any) -> Any: return self._unsupported("%")
    def __rmod__(self, o: Any) -> Any: return self._unsupported("%")
    def __imod__(self, o: Any) -> Any: return self._unsupported("%=")
    def __divmod__(self, o: Any) -> Any: return self._unsupported("divmod")
    def __rdivmod__(self, o: Any) -> Any: return self._unsupported("divmod")
    def __lshift__(self, o: Any) -> Any: return self._unsupported("<<")
    def __rlshift__(self, o: Any) -> Any: return self._unsupported("<<")
    def __ilshift__(self, o: Any) -> Any: return self._unsupported("<<=")
    def __rshift__(self, o: Any) -> Any: return self._unsupported(">>")
    def __rrshift__(self, o: Any) -> Any: return self._unsupported(">>")
    def __irshift__(self, o: Any) -> Any: return self._unsupported(">>=")

    # ---- logical operators: on bool arrays, lowered to where/compare
    def _logic(self, op: str, other: Any, symbol: str) -> Tracer:
        if not isinstance(other, Tracer | bool | np.bool_ | np.ndarray):
            return self._unsupported(symbol)
        o_dtype = other.dtype if isinstance(other, Tracer | np.ndarray) else np.dtype(bool)
        if self.dtype != np.bool_ or o_dtype != np.bool_:
            raise TraceError(f"the `{symbol}` operator on traced {self.dtype}/{o_dtype} arrays (at "
                             f"{user_location()}) is supported on bool arrays only (masks); bitwise integer "
                             "arithmetic is not supported by the JIT yet")
        return logical(self.ctx, op, self, other)

    def __and__(self, o: Any) -> Tracer: return self._logic("and", o, "&")
    def __rand__(self, o: Any) -> Tracer: return self._logic("and", o, "&")
    def __or__(self, o: Any) -> Tracer: return self._logic("or", o, "|")
    def __ror__(self, o: Any) -> Tracer: return self._logic("or", o, "|")
    def __xor__(self, o: Any) -> Tracer: return self._logic("xor", o, "^")
    def __rxor__(self, o: Any) -> Tracer: return self._logic("xor", o, "^")
    def __iand__(self, o: Any) -> Any: return self._unsupported("&=")
    def __ior__(self, o: Any) -> Any: return self._unsupported("|=")
    def __ixor__(self, o: Any) -> Any: return self._unsupported("^=")

    def __invert__(self) -> Tracer:
        if self.dtype != np.bool_:
            return self._unsupported("~")
        return logical(self.ctx, "not", self)

    # ---- arithmetic
    def _bin(self, name: str, other: Any, reverse: bool = False) -> Tracer:
        if isinstance(other, complex):
            other = np.complex128(other)   # refused by the op with its dtype named, as np.complex128 is
        elif not isinstance(other, Tracer | bool | int | float | np.ndarray | np.generic):
            if not reverse and name not in ("equal", "not_equal") and _defers(type(other), name):
                return NotImplemented   # the other type's reflected operator may know Tracers
            raise _operand_error(self, name, other)
        return self.ctx.op(name, other, self, _py=True) if reverse else self.ctx.op(name, self, other, _py=True)

    def __add__(self, o: Any) -> Tracer: return self._bin("add", o)
    def __radd__(self, o: Any) -> Tracer: return self._bin("add", o, True)
    def __sub__(self, o: Any) -> Tracer: return self._bin("subtract", o)
    def __rsub__(self, o: Any) -> Tracer: return self._bin("subtract", o, True)
    def __mul__(self, o: Any) -> Tracer: return self._bin("multiply", o)
    def __rmul__(self, o: Any) -> Tracer: return self._bin("multiply", o, True)
    def __truediv__(self, o: Any) -> Tracer: return self._bin("divide", o)
    def __rtruediv__(self, o: Any) -> Tracer: return self._bin("divide", o, True)
    def __pow__(self, o: Any) -> Tracer:
        if self.dtype == np.bool_ and not numpy_scalar(self):   # (np.bool_ ** 2 is scalar math: int64)
            # NumPy's ``**`` sends a Python 2 to np.square, whose bool input computes in int8 (the
            # power loop would give int64): the exponent's value decides the dtype
            params = self.ctx.weak.get(o.value) if isinstance(o, Tracer) else None
            if params:
                raise Concretize(params)
            if type(o) is int and o == 2:
                return self.astype(np.int8)._bin("power", o)
        return self._bin("power", o)
    def __rpow__(self, o: Any) -> Tracer: return self._bin("power", o, True)
    def __matmul__(self, o: Any) -> Tracer: return self._bin("matmul", o)
    def __rmatmul__(self, o: Any) -> Tracer: return self._bin("matmul", o, True)
    def __lt__(self, o: Any) -> Tracer: return self._bin("less", o)
    def __le__(self, o: Any) -> Tracer: return self._bin("less_equal", o)
    def __gt__(self, o: Any) -> Tracer: return self._bin("greater", o)
    def __ge__(self, o: Any) -> Tracer: return self._bin("greater_equal", o)
    def __eq__(self, o: Any) -> Tracer: return self._bin("equal", o)  # type: ignore[override]
    def __ne__(self, o: Any) -> Tracer: return self._bin("not_equal", o)  # type: ignore[override]
    def __neg__(self) -> Tracer: return self.ctx.op("negative", self, _py=True)
    def __pos__(self) -> Tracer:
        out = self.copy()   # +a is a new array in NumPy: np.positive, a ufunc, so a 0-d result is a scalar
        if not self.shape:
            self.ctx.held_as_scalar[out.value] = True
        return out
    def __abs__(self) -> Tracer: return self.ctx.op("abs", self, _py=True)

    # ---- shape and reductions
    @property
    def T(self) -> Tracer:
        return self.transpose()

    def transpose(self, *axes: Any) -> Tracer:
        if len(axes) == 1 and isinstance(axes[0], tuple | list):
            axes = tuple(axes[0])
        if not axes or axes == (None,):
            axes = tuple(reversed(range(self.ndim)))
        if sorted(int(a) % max(self.ndim, 1) for a in axes) != list(range(self.ndim)):
            raise TraceError(f"transpose axes {axes} are not a permutation of the {self.ndim} axes "
                             f"(at {user_location()})")
        return self._view("transpose", axes=tuple(int(a) % max(self.ndim, 1) for a in axes))

    def reshape(self, *shape: Any, **kwargs: Any) -> Tracer:
        _only_c_order("reshape", _params("reshape", (), kwargs, (("order", "C"),))["order"])
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            shape = tuple(shape[0])
        return self._view("reshape", shape=_resolve_shape(tuple(int(s) for s in shape), self.size))

    def ravel(self, *args: Any, **kwargs: Any) -> Tracer:
        _only_c_order("ravel", _params("ravel", args, kwargs, (("order", "C"),))["order"])
        return self.reshape(-1)

    def flatten(self, *args: Any, **kwargs: Any) -> Tracer:
        _only_c_order("flatten", _params("flatten", args, kwargs, (("order", "C"),))["order"])
        return self.reshape(-1).copy()

    def clip(self, *args: Any, **kwargs: Any) -> Tracer:
        """NumPy's clip: ``x`` where it is inside the bounds (a tie keeps ``x``, so ``-0.0`` stays),
        a NaN anywhere gives NaN; written with NumPy's maximum/minimum, which return their second
        operand on a tie. Integer bounds beyond the dtype's range are clamped, as NumPy does."""
        p = _params("clip", args, kwargs, (("min", None), ("max", None), ("out", None)),
                    aliases={"a_min": "min", "a_max": "max"})
        _no_out("clip", p["out"])
        lo, hi = p["min"], p["max"]
        if lo is None and hi is None:
            raise TraceError(f"clip() needs a lower or an upper bound (at {user_location()}), as in NumPy")
        out = self if lo is None else self.ctx.op("maximum", self._clamp_bound(lo), self)
        return out if hi is None else self.ctx.op("minimum", self._clamp_bound(hi), out)

    def _clamp_bound(self, bound: Any) -> Any:
        if isinstance(bound, int) and not isinstance(bound, bool) and self.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            return min(max(bound, int(info.min)), int(info.max))
        return bound

    def dot(self, other: Any, out: Any = None) -> Tracer:
        _no_out("dot", out)
        if self.ndim > 2 or getattr(other, "ndim", 0) > 2:
            raise TraceError(f"x.dot() of arrays over 2-D (at {user_location()}) is not supported; use @")
        return self.ctx.op("matmul", self, other)

    def astype(self, *args: Any, **kwargs: Any) -> Tracer:
        p = _params("astype", args, kwargs, (("dtype", _REQUIRED), ("order", "K"), ("casting", "unsafe"),
                                             ("subok", True), ("copy", True)))
        dtype = np.dtype(p["dtype"])
        if p["copy"] is False and dtype == self.dtype:
            raise TraceError(f"astype(copy=False) to the same dtype returns the array itself in NumPy (at "
                             f"{user_location()}); the JIT always makes a new array: drop copy=False")
        if p["casting"] != "unsafe" and not np.can_cast(self.dtype, dtype, p["casting"]):
            raise TraceError(f"cannot cast {self.dtype} to {dtype} with casting={p['casting']!r} "
                             f"(at {user_location()}); NumPy raises TypeError too")
        return self._copy_as(dtype.name, p["order"])

    def _reduce(self, name: str, args: tuple, kwargs: dict) -> Tracer:
        spec: tuple[tuple[str, Any], ...] = (("axis", None), ("dtype", None), ("out", None), ("keepdims", False))
        if name in ("max", "min"):
            spec = (("axis", None), ("out", None), ("keepdims", False))
        p = _params(name, args, kwargs, spec)
        _no_out(name, p["out"])
        if p.get("dtype") is not None:
            raise TraceError(f"{name}(dtype=...) is not supported in a traced function (at {user_location()}); "
                             f"cast first: x.astype(...).{name}()")
        axes = _axes(p["axis"], self.ndim, name)
        return self.ctx.op(name, self, axis=axes, keepdims=bool(p["keepdims"]))

    def sum(self, *args: Any, **kwargs: Any) -> Tracer: return self._reduce("sum", args, kwargs)
    def mean(self, *args: Any, **kwargs: Any) -> Tracer: return self._reduce("mean", args, kwargs)
    def max(self, *args: Any, **kwargs: Any) -> Tracer: return self._reduce("max", args, kwargs)
    def min(self, *args: Any, **kwargs: Any) -> Tracer: return self._reduce("min", args, kwargs)
    def any(self, *args: Any, **kwargs: Any) -> Tracer: return self._truth("max", args, kwargs)
    def all(self, *args: Any, **kwargs: Any) -> Tracer: return self._truth("min", args, kwargs)

    def _truth(self, name: str, args: tuple, kwargs: dict) -> Tracer:
        """any/all as max/min of ``x != 0`` (NaN counts as true, as in NumPy); over an empty extent
        NumPy gives False/True where max/min would raise."""
        what = "any" if name == "max" else "all"
        p = _params(what, args, kwargs, (("axis", None), ("out", None), ("keepdims", False)))
        _no_out(what, p["out"])
        axes = _axes(p["axis"], self.ndim, what)
        keepdims = bool(p["keepdims"])
        b = self if self.dtype == np.bool_ else self.ctx.op("not_equal", self, 0)
        reduced = tuple(range(self.ndim)) if axes is None else axes
        if any(self.shape[a] == 0 for a in reduced):
            shape = tuple(1 if d in reduced else s for d, s in enumerate(self.shape) if keepdims or d not in reduced)
            return self.ctx.op("broadcast_to", np.bool_(name == "min"), shape=shape)
        return self.ctx.op(name, b, axis=axes, keepdims=keepdims)

    # ---- dispatch from noodle eager ops and NumPy
    def __noodle_op__(self, op: str, args: tuple, kwargs: dict) -> Tracer:
        """Record eager op ``op`` (an op-table or NumPy name) called with ``args``/``kwargs``."""
        name = _ALIASES.get(op, op)
        return _apply(self.ctx, name, args, kwargs)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        name = _UFUNCS.get(ufunc.__name__)
        logic = _LOGICAL_UFUNCS.get(ufunc.__name__)
        if logic is not None and method == "__call__" and not kwargs:
            return logical(self.ctx, logic, *[_truth_value(self.ctx, x) for x in inputs])
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


_REQUIRED = object()


def _dense_order(arr: np.ndarray) -> tuple[int, ...] | None:
    """The axis order in which a dense, not C-ordered array is C-ordered (a Fortran-ordered array:
    its axes reversed); None for a C-ordered one, or one with gaps or negative steps."""
    if arr.ndim < 2 or arr.flags.c_contiguous:
        return None
    perm = tuple(int(a) for a in sorted(range(arr.ndim), key=lambda d: -abs(arr.strides[d])))
    return perm if np.transpose(arr, perm).flags.c_contiguous and min(arr.strides) >= 0 else None


def _params(fname: str, args: tuple, kwargs: dict, spec: tuple[tuple[str, Any], ...],
            aliases: dict[str, str] | None = None) -> dict[str, Any]:
    """Bind a traced method's arguments as NumPy's signature would; anything it does not take is a
    TraceError naming it (never silently ignored)."""
    if len(args) > len(spec):
        raise TraceError(f"{fname}() got {len(args)} positional arguments in a traced function (at "
                         f"{user_location()}); it takes {', '.join(n for n, _ in spec)}")
    out = {name: default for name, default in spec}
    for (name, _), value in zip(spec, args, strict=False):
        out[name] = value
    for key, value in kwargs.items():
        name = (aliases or {}).get(key, key)
        if name not in out:
            raise TraceError(f"{fname}() got an argument {key!r} that the JIT does not support (at "
                             f"{user_location()}); supported: {', '.join(n for n, _ in spec)}")
        out[name] = value
    missing = [n for n, v in out.items() if v is _REQUIRED]
    if missing:
        raise TraceError(f"{fname}() is missing {', '.join(missing)} (at {user_location()})")
    return out


def _no_out(fname: str, out: Any) -> None:
    if out is not None:
        raise TraceError(f"{fname}(out=...) is not supported in a traced function (at {user_location()}): "
                         "it writes into an array; use the returned value")


def _only_c_order(fname: str, order: Any) -> None:
    if order not in ("C", None):
        raise TraceError(f"{fname}(order={order!r}) is not supported in a traced function (at "
                         f"{user_location()}); only row-major (C) order is traced")


def _axes(axis: Any, ndim: int, fname: str) -> tuple[int, ...] | None:
    """``axis`` as a tuple of in-range axes (None stays None); out of range is an error, as NumPy's."""
    if axis is None:
        return None
    items = (axis,) if isinstance(axis, int | np.integer) else tuple(axis)
    out = []
    for a in items:
        if isinstance(a, bool) or not isinstance(a, int | np.integer) or not -max(ndim, 1) <= int(a) < max(ndim, 1):
            raise TraceError(f"{fname}(axis={axis!r}) is out of range for an array of {ndim} dimensions "
                             f"(at {user_location()}); NumPy raises AxisError")
        out.append(int(a))
    if len({a % max(ndim, 1) for a in out}) != len(out):
        raise TraceError(f"{fname}(axis={axis!r}) repeats an axis (at {user_location()})")
    return tuple(out)


def _truth_value(ctx: TraceContext, x: Any) -> Any:
    """``x != 0`` as NumPy's logical ufuncs read their operands (bools pass through)."""
    if isinstance(x, Tracer):
        return x if x.dtype == np.bool_ else ctx.op("not_equal", x, 0)
    arr = np.asarray(x)
    return arr if arr.dtype == np.bool_ else arr != 0


def logical(ctx: TraceContext, op: str, a: Any, b: Any = None) -> Tracer:
    """Boolean and/or/xor/not with the ops the backends have (where, compare): exact on bools."""
    if op == "not":
        return ctx.op("equal", a, False)
    if op == "xor":
        return ctx.op("not_equal", a, b)
    if not isinstance(a, Tracer):
        a, b = b, a
    return ctx.op("where", a, b, False) if op == "and" else ctx.op("where", a, True, b)


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
    """Record a function-style op call (``nd.sum(x, axis=0)``, ``np.where(c, a, b)``): the first
    argument's method with the rest, so the same argument rules hold for both spellings."""
    kwargs = dict(kwargs)
    if not args:
        raise TraceError(f"{name}() needs an array argument (at {user_location()})")
    if name in ("concatenate", "stack", "take"):
        from noodle.trace import indexing  # noqa: PLC0415 - indexing builds on this module

        spec = (("indices", _REQUIRED), ("axis", None)) if name == "take" else (("axis", 0),)
        p = _params(name, args[1:], kwargs, spec)
        return getattr(indexing, name)(args[0], *p.values())
    if name in ("sum", "mean", "max", "min", "any", "all", "ravel", "copy", "clip", "transpose", "astype"):
        x = ctx.lift(args[0], None)
        if name == "transpose":
            p = _params("transpose", args[1:], kwargs, (("axes", None),))
            return x.transpose() if p["axes"] is None else x.transpose(tuple(p["axes"]))
        if name == "copy":   # np.copy(a, order='K', subok=False)
            p = _params("copy", args[1:], kwargs, (("order", "K"), ("subok", False)))
            out = x._copy_as(x.dtype.name, p["order"])
            if not out.shape:   # np.copy of a scalar is a 0-d array
                ctx.held_as_scalar[out.value] = False
            return out
        if name == "astype":
            kwargs.pop("device", None)
        return getattr(x, name)(*args[1:], **kwargs)
    if name == "reshape":   # np.reshape(a, shape, order='C'), also newshape=
        p = _params("reshape", args[1:], kwargs, (("shape", _REQUIRED), ("order", "C")), aliases={"newshape": "shape"})
        return ctx.lift(args[0], None).reshape(p["shape"], order=p["order"])
    if name == "broadcast_to":
        p = _params("broadcast_to", args[1:], kwargs, (("shape", _REQUIRED), ("subok", False)))
        return ctx.lift(args[0], None)._view("broadcast_to", shape=tuple(int(s) for s in p["shape"]))
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
    return trace_with_context(fn, args, static)[0]


def trace_with_context(fn: Callable[..., Any], args: Sequence[Any], static: Sequence[bool] | None = None, *,
                       kinds: Sequence[str] | None = None, env: Any = None) -> tuple[Program, TraceContext]:
    """:func:`trace`, also returning the :class:`TraceContext` (what the guards need).

    Record ``fn(*args)`` into a NIR :class:`Program`.

    Array arguments (anything with ``shape`` and ``dtype``) become program
    inputs in order; other arguments are passed through unchanged (static: they
    are part of the cache signature). The result may be one array or a tuple.

    ``kinds`` (what ``@noodle.jit`` passes) says per argument ``"array"``, ``"param"`` (a
    Python or NumPy scalar that becomes a 0-d runtime input, so a new value does not retrace)
    or ``"static"``. ``env`` (a :class:`noodle.trace.guards.Capture`) supplies the function to
    call, with captured arrays standing in as implicit inputs after the explicit ones.
    """
    ctx = TraceContext()
    call_args: list[Any] = []
    n = 0
    if kinds is None:
        kinds = ["static" if (static[i] if static is not None else not is_array(a)) else "array"
                 for i, a in enumerate(args)]
    for i, (a, kind) in enumerate(zip(args, kinds, strict=True)):
        if kind == "static":
            call_args.append(a)
            continue
        if kind == "param":
            weak = not isinstance(a, np.generic)
            dtype = (("bool" if isinstance(a, bool) else "int64" if isinstance(a, int) else "float64")
                     if weak else np.dtype(a.dtype).name)
            t = Tracer(ctx, ctx.builder.input(n, (), dtype))
            ctx.scalar_inputs.add(t.value)
            if weak:
                ctx.weak[t.value] = frozenset({i})
            call_args.append(t)
            n += 1
            continue
        check_array_type(a, f"argument {i}")
        dtype = np.dtype(a.dtype).name
        if dtype not in DTYPE_SET:
            raise TraceError(f"argument {i} has dtype {dtype}, which the JIT does not support; "
                             f"convert it to one of {', '.join(sorted(DTYPE_SET))}")
        call_args.append(Tracer(ctx, ctx.builder.input(n, tuple(a.shape), dtype)))
        n += 1
    target = fn
    if env is not None:
        target = env.bind(ctx, n, call_args)
    with active(ctx):
        result = target(*call_args)
    if ctx.raised:
        # the function caught the error and went on: plain Python would have taken another path
        raise TraceError(f"{getattr(fn, '__qualname__', fn)} caught an error noodle raised while tracing it "
                         f"and carried on, so the traced program would not do what the function does: "
                         f"{ctx.raised[0]}") from ctx.raised[0]
    single = not isinstance(result, tuple | list)
    results = [result] if single else list(result)
    if not results:
        raise TraceError("a jitted function must return at least one array")
    for r in results:
        if isinstance(r, Tracer) and r.stale is not None:
            raise TraceError(f"{getattr(fn, '__qualname__', fn)} returns a view of an array that was updated in "
                             f"place at {r.stale}; in NumPy the view sees the update, which the JIT does not "
                             "model. Take the view after the update, or write the update as a new array")
    ctx.raw_outputs = {i: r for i, r in enumerate(results) if not isinstance(r, Tracer | np.ndarray)}
    # where the plain function returns a NumPy scalar (x[2], a reduction) and where a 0-d array
    # (np.where of scalars, x.reshape(())): compiled code returns 0-d arrays for both
    ctx.scalar_outputs = frozenset(i for i, r in enumerate(results)
                                   if isinstance(r, Tracer) and r.shape == () and numpy_scalar(r))
    for r in results:
        if isinstance(r, Tracer) and r.ctx is ctx and ctx.weak.get(r.value):
            raise Concretize(ctx.weak[r.value])   # a returned Python scalar: return the real one
    outs = [ctx.lift(r, None).value for r in results]
    program = ctx.builder.finish(outs)
    program.n_inputs = ctx.builder.n_inputs
    program.meta["single_output"] = single
    program.meta["list_output"] = isinstance(result, list)
    # a namedtuple result comes back as that namedtuple (its class is not part of the program)
    ctx.output_type = type(result) if isinstance(result, tuple) and hasattr(type(result), "_make") else None
    return program, ctx


# ndarray subclasses that compute exactly as ndarray does (memmap only maps a file)
_PLAIN_SUBCLASSES = frozenset({np.memmap})


def check_array_type(a: Any, what: str) -> None:
    """Refuse ndarray subclasses other than ``np.memmap``. Why: a subclass may give its operators
    or methods another meaning (``np.matrix``'s ``*`` is a matrix product, a masked array skips
    masked values, a user class may override ``__rsub__`` or ``T``) and returns its own type;
    traced as a plain array it would give another answer, or another type once compiled."""
    t = type(a)
    if t is np.ndarray or t in _PLAIN_SUBCLASSES or not isinstance(a, np.ndarray):
        return
    raise TraceError(f"{what} is a {t.__module__}.{t.__qualname__}, an ndarray subclass; the JIT computes on "
                     "plain arrays, which may not be what the subclass means (np.matrix multiplies matrices "
                     "with *, masked arrays skip masked values). Pass np.asarray(x) (or x.filled(...) for a "
                     "masked array) if that is what you mean")


def is_array(a: Any) -> bool:
    """True for NumPy/CuPy arrays (traced as inputs); False for static arguments (scalar types
    such as ``np.float32`` have ``shape``/``dtype`` attributes too)."""
    return hasattr(a, "shape") and hasattr(a, "dtype") and not isinstance(a, np.generic | type)


def native_byte_order(a: Any) -> Any:
    """``a`` itself when it is not a NumPy array in the other byte order, else a copy in this machine's.

    Why: the trace names a dtype by kind and size (``>f8`` is ``float64``), so compiled code reads an
    input's bytes as native. Numba's dispatcher is no guard here: its type cache keys arrays by
    type number, not byte order, so once it has typed an unusual float64 array (misaligned, say) it
    takes a big-endian one as float64 and reads its bytes swapped. Every array a compiled runner gets
    from outside (arguments, captured globals) goes through this first."""
    if type(a) is not np.ndarray or a.dtype.isnative:
        return a
    want = a.dtype.newbyteorder("=")
    if want.fields is None and want.subdtype is None:
        want = np.dtype(want.str)   # the canonical descriptor NumPy hands out for it
    return a.astype(want)


__all__ = ["Concretize", "TraceContext", "Tracer", "active", "active_context", "is_array", "check_array_type",
           "native_byte_order", "trace", "trace_with_context", "user_location"]
