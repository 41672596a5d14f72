"""Indexing a traced array (``x[1:]``, ``x[::-1]``, ``x[i, j]``, ``x[None]``, ``x[idx]``) and the
joining functions ``concatenate``, ``stack`` and ``take``.

Why these lowerings: basic indexing is one ``slice`` node (static, normalized bounds: a view,
as NumPy's) followed by a ``reshape`` that drops integer-indexed axes and inserts ``None`` axes;
one integer-array index is a ``gather`` (``np.take`` with NumPy's bounds rule). A boolean mask
selects a number of elements that depends on the values, which a traced program cannot have: it
raises and points to ``nd.where``, except for a constant 1-D mask (its positions are known now).

The public functions work on NumPy arrays too, returning exactly what NumPy returns; given a
traced array they record the op.

Example::

    >>> import numpy as np
    >>> import noodle as nd
    >>> nd.concatenate([np.ones(2), np.zeros(1)])
    array([1., 1., 0.])
    >>> f = nd.jit(lambda x: x[1:] - x[:-1])
    >>> f(np.array([1.0, 4.0, 9.0]))
    array([3., 5.])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from noodle.errors import OpIndexError, TraceError
from noodle.trace.tracer import Concretize, Tracer, numpy_scalar, user_location


def _static_if_python_scalar(k: Any) -> None:
    """A Python int argument used as an index: its value decides the result's shape (``x[i]``) and
    NEP 50 would type it by the array (``x[i]`` of a float array read it as float64 and refused it),
    so the function is traced again with it static, as for ``if i:``."""
    if isinstance(k, Tracer):
        params = k.ctx.weak.get(k.value)
        if params:
            raise Concretize(params)


def _mask_error() -> TraceError:
    return TraceError(
        f"boolean mask indexing x[mask] at {user_location()} gives an array whose length depends on the "
        "values, which a jitted function cannot have; keep the shape with nd.where(mask, x, 0) (or reduce: "
        "nd.where(mask, x, 0).sum()), or select outside the jitted function")


def _int_index(k: Any) -> bool:
    return isinstance(k, int | np.integer) and not isinstance(k, bool | np.bool_)


def getitem(t: Tracer, key: Any) -> Tracer:
    """``t[key]`` recorded as slice / reshape / gather nodes (see the module docstring)."""
    ctx = t.ctx
    if t.ndim == 0 and (key is Ellipsis or (isinstance(key, tuple) and key == ())):
        # NumPy: ``a[()]`` of a 0-d array (or a scalar) is a scalar, ``a[...]`` a 0-d array (a view);
        # which one matters to ``**`` of scalars (trace.tracer.numpy_scalar)
        if key == ():
            return ctx.op("reshape", t, shape=())
        if numpy_scalar(t):   # a scalar's [...] is a new 0-d array
            out = ctx.op("reshape", t, shape=())
            ctx.held_as_scalar[out.value] = False
            return out
        return t._view("reshape", shape=())
    items = list(key) if isinstance(key, tuple) else [key]
    for n, k in enumerate(items):
        _static_if_python_scalar(k)
        if isinstance(k, list):
            items[n] = np.asarray(k) if k else np.asarray(k, dtype=np.int64)
        elif isinstance(k, bool | np.bool_):
            raise _mask_error()
    if sum(k is Ellipsis for k in items) > 1:
        raise OpIndexError(f"an index can only have a single ellipsis ('...') (at {user_location()})")
    used = sum(k is not None and k is not Ellipsis for k in items)
    if used > t.ndim:
        raise OpIndexError(f"too many indices for array: array is {t.ndim}-dimensional, but {used} were indexed "
                           f"(at {user_location()})")
    if Ellipsis in [k if k is Ellipsis else None for k in items]:
        e = next(n for n, k in enumerate(items) if k is Ellipsis)
        items[e:e + 1] = [slice(None)] * (t.ndim - used)
    else:
        items += [slice(None)] * (t.ndim - used)
    starts: list[int] = []
    stops: list[int] = []
    steps: list[int] = []
    plan: list[tuple[str, int]] = []   # per result position: ("keep", axis), ("new", -1), ("gather", axis)
    advanced: list[int] = []          # positions in items of integer and array indices
    index: Any = None
    axis = 0
    for pos, k in enumerate(items):
        if k is None:
            plan.append(("new", -1))
            continue
        d = t.shape[axis]
        if isinstance(k, slice):
            try:
                a, b, s = k.indices(d)
            except ValueError as exc:   # slice step cannot be zero
                raise TraceError(f"{exc} (at {user_location()})") from None
            starts.append(a), stops.append(b), steps.append(s)
            plan.append(("keep", axis))
        elif _int_index(k):
            i = int(k)
            if not -d <= i < d:
                raise OpIndexError(f"index {i} is out of bounds for axis {axis} with size {d} (at {user_location()})")
            i %= d
            starts.append(i), stops.append(i + 1), steps.append(1)
            advanced.append(pos)
        elif isinstance(k, Tracer | np.ndarray):
            kind = k.dtype.kind
            if kind == "b":
                if isinstance(k, Tracer) or k.ndim != 1:
                    raise _mask_error()
                if k.shape[0] != d:
                    raise OpIndexError(f"boolean index did not match indexed array along axis {axis}; size of "
                                       f"axis is {d} but size of corresponding boolean axis is {k.shape[0]}")
                k = np.flatnonzero(k)   # a constant mask: its positions are static
            elif kind not in "iu":
                raise OpIndexError(f"arrays used as indices must be of integer (or boolean) type, got {k.dtype} "
                                   f"(at {user_location()})")
            if index is not None:
                raise TraceError(f"indexing with more than one integer array at {user_location()} is not supported "
                                 "by the JIT; index one axis at a time (x[i][:, j]) or use nd.take")
            index = k
            starts.append(0), stops.append(d), steps.append(1)
            plan.append(("gather", axis))
            advanced.append(pos)
        else:
            raise TraceError(f"index {k!r} ({type(k).__name__}) is not supported on a traced array (at "
                             f"{user_location()}); use ints, slices, None, ..., or an integer array")
        axis += 1
    if index is not None and len(advanced) > 1 and advanced != list(range(advanced[0], advanced[-1] + 1)):
        raise TraceError(f"integer and array indices separated by a slice or None (at {user_location()}) move the "
                         "result's axes to the front in NumPy, which the JIT does not trace; index in two steps")
    out = t
    full = all(a == 0 and b == d and s == 1 for a, b, s, d in zip(starts, stops, steps, t.shape, strict=True))
    view = not (index is None and not any(p == "keep" for p, _ in plan))   # x[3] is a new scalar in NumPy
    if not full:
        attrs = {"starts": tuple(starts), "stops": tuple(stops), "steps": tuple(steps)}
        out = t._view("slice", **attrs) if view else ctx.op("slice", t, **attrs)
    kept = [p for p in plan if p[0] != "new"]
    dims = [out.shape[a] for _, a in kept]
    if len(dims) != out.ndim:   # drop the integer-indexed axes
        out = out._view("reshape", shape=tuple(dims)) if view else ctx.op("reshape", out, shape=tuple(dims))
    if index is not None:
        g = next(n for n, (p, _) in enumerate(kept) if p == "gather")
        out = ctx.op("gather", out, index, axis=g, subscript=True)
    shape: list[int] = []
    it = iter(range(out.ndim))
    for p, _ in plan:
        if p == "new":
            shape.append(1)
        elif p == "keep":
            shape.append(out.shape[next(it)])
        else:
            shape.extend(out.shape[next(it)] for _ in range(np.ndim(index) if not isinstance(index, Tracer)
                                                            else index.ndim))
    if tuple(shape) != out.shape:
        out = out._view("reshape", shape=tuple(shape)) if view else ctx.op("reshape", out, shape=tuple(shape))
    return out


def _tracer_ctx(values: Sequence[Any]) -> Any:
    for v in values:
        if isinstance(v, Tracer):
            return v.ctx
    return None


def _axis(axis: Any, ndim: int, fname: str) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer) or not -ndim <= int(axis) < ndim:
        raise TraceError(f"{fname}(axis={axis!r}) is out of range for arrays of {ndim} dimensions (at "
                         f"{user_location()}); NumPy raises AxisError")
    return int(axis) % ndim


def _lift_all(ctx: Any, arrays: list[Any], verb: str) -> list[Any]:
    """The operands of a join (``concatenate``/``stack``) as traced values; at least one is needed."""
    if not arrays:
        raise TraceError(f"need at least one array to {verb} (at {user_location()})")
    return [ctx.lift(np.asarray(a) if isinstance(a, list) else a, None) for a in arrays]


def concatenate(arrays: Sequence[Any], axis: int | None = 0) -> Any:
    """``np.concatenate(arrays, axis)``: the arrays joined along an existing axis (``axis=None``:
    flattened first), dtypes promoted as NumPy does. On NumPy arrays it is NumPy's own result;
    inside ``nd.jit`` it records one ``concatenate`` node.

    Example: ``nd.concatenate([x[:1], x], axis=0)`` repeats the first element.
    """
    arrays = list(arrays)
    ctx = _tracer_ctx(arrays)
    if ctx is None:
        return np.concatenate(arrays, axis=axis)
    ts = _lift_all(ctx, arrays, "concatenate")
    if axis is None:
        ts = [x.reshape(-1) for x in ts]
        axis = 0
    if any(x.ndim == 0 for x in ts):
        raise TraceError(f"zero-dimensional arrays cannot be concatenated (at {user_location()})")
    ax = _axis(axis, ts[0].ndim, "concatenate")
    if len(ts) == 1:
        return ts[0].copy()
    if len(ts) > 255:
        return concatenate([concatenate(ts[k:k + 255], ax) for k in range(0, len(ts), 255)], ax)
    return ctx.op("concatenate", *ts, axis=ax)


def stack(arrays: Sequence[Any], axis: int = 0) -> Any:
    """``np.stack(arrays, axis)``: same-shaped arrays joined along a new axis (recorded as
    reshapes and one concatenate inside ``nd.jit``; NumPy's result on NumPy arrays).

    Example: ``nd.stack([x, 2 * x], axis=1)`` pairs each element with its double.
    """
    arrays = list(arrays)
    ctx = _tracer_ctx(arrays)
    if ctx is None:
        return np.stack(arrays, axis=axis)
    ts = _lift_all(ctx, arrays, "stack")
    shape = ts[0].shape
    if any(x.shape != shape for x in ts):
        raise TraceError(f"all input arrays must have the same shape to stack, got {[x.shape for x in ts]} "
                         f"(at {user_location()})")
    ax = _axis(axis, len(shape) + 1, "stack")
    new = shape[:ax] + (1,) + shape[ax:]
    return concatenate([x.reshape(new) for x in ts], axis=ax)


def take(a: Any, indices: Any, axis: int | None = None) -> Any:
    """``np.take(a, indices, axis)``: elements at integer ``indices`` along ``axis`` (``None``: of
    the flattened array); negative indices count from the end and an index outside the axis raises
    :class:`noodle.errors.OpIndexError` (an ``IndexError``, as NumPy's). NumPy's result on NumPy arrays.

    Example: ``nd.take(x, np.array([2, 0]))`` is ``x[[2, 0]]`` for a 1-D ``x``.
    """
    ctx = _tracer_ctx([a, indices])
    if ctx is None:
        return np.take(a, indices, axis=axis)
    x = ctx.lift(a, None)
    if isinstance(indices, list | int | np.integer):
        indices = np.asarray(indices, dtype=np.int64) if not isinstance(indices, list) or indices \
            else np.zeros(0, np.int64)
    _static_if_python_scalar(indices)
    idx = ctx.lift(indices, None)
    if idx.dtype.kind not in "iu":
        raise TraceError(f"take() indices must be integers, got {idx.dtype} (at {user_location()})")
    if axis is None:
        x = x.reshape(-1)
        axis = 0
    if x.ndim == 0:
        raise TraceError(f"take() from a 0-d array needs axis=None (at {user_location()})")
    return ctx.op("gather", x, idx, axis=_axis(axis, x.ndim, "take"))


__all__ = ["concatenate", "getitem", "stack", "take"]
