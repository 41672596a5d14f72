"""The one definition of a reduction's order: the same bits on every call, on every backend.

Why: a float sum depends on the order of its additions. NumPy's order (pairwise, in blocks its
iterator chooses) is not something another backend can reproduce, and a Numba kernel's order
changed with its chunking; so a jitted ``x.sum()`` changed in the last bits when the function
turned hot, or with the thread count. Here the order is *defined*, once, in terms any backend
can follow, and the interpreter (the spec) computes exactly it with NumPy:

For each output element, the reduced elements are taken in row-major order of the reduced axes
(a sequence ``s[0..R)``) and converted to the accumulator dtype (float64 for every float input:
more accurate than a float32 accumulator; int64/uint64 for integers and bools, as NumPy's ``sum``):

1. ``s`` is cut into chunks of ``CHUNK`` elements (the last may be shorter);
2. in a chunk, element ``t`` goes to lane ``t % LANES``; each lane adds its elements one after
   the other, starting from ``-0.0`` (the identity that keeps a sum of ``-0.0`` at ``-0.0``);
3. a chunk's value is ``((lane0 + lane1) + lane2) + ... + lane7``;
4. the result is ``((chunk0 + chunk1) + chunk2) + ...``.

Lanes give a SIMD-friendly kernel (eight independent add chains), chunks give threads
independent work whose combination order does not depend on how many threads ran them.
Integer sums wrap and are exact in any order. ``max``/``min`` do not depend on order except on
two points, fixed here: ``max`` of ``-0.0`` and ``+0.0`` is ``+0.0`` and ``min`` is ``-0.0``
(IEEE 754-2019 maximum/minimum), and a NaN result (of any reduction) is the canonical quiet
NaN. ``mean`` is the sum above divided by the count in float64, then cast to the result dtype.

Example::

    >>> import numpy as np
    >>> float(reduce_values("sum", np.arange(10.0), None, False, "float64"))
    45.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

CHUNK = 4096   # reduced elements per chunk (a multiple of LANES)
LANES = 8      # independent accumulators per chunk


def acc_dtype(op: str, value_dtype: str) -> str:
    """The accumulator dtype of a reduction of values of ``value_dtype``."""
    kind = np.dtype(value_dtype).kind
    if op in ("sum", "mean"):
        if kind == "f" or op == "mean":
            return "float64"
        return "uint64" if kind == "u" else "int64"
    return "int64" if kind == "b" else value_dtype


def identity(op: str, acc: str) -> float | int:
    """The value an accumulator of dtype ``acc`` starts from (every backend's kernels use it).

    ``-0.0`` for float sums (so a sum of ``-0.0`` stays ``-0.0``), ``0`` for integer ones; the
    lowest (highest) value of ``acc`` for ``max`` (``min``): ``-inf``/``inf`` for floats.
    """
    if op in ("sum", "mean"):
        return -0.0 if np.dtype(acc).kind == "f" else 0
    if op not in ("max", "min"):
        raise ValueError(f"{op!r} is not a reduction; known: sum, mean, max, min")
    if np.dtype(acc).kind == "f":
        return -math.inf if op == "max" else math.inf
    info = np.iinfo(np.dtype(acc))
    return int(info.min) if op == "max" else int(info.max)


def _module(x: Any) -> Any:
    if type(x).__module__.startswith("cupy"):
        import cupy  # noqa: PLC0415 - only for CuPy arrays

        return cupy
    return np


def _rows(x: Any, axes: tuple[int, ...], xp: Any) -> tuple[Any, tuple[int, ...]]:
    """``x`` as (kept elements, reduced sequence) in row-major order; and the kept shape."""
    kept = [d for d in range(x.ndim) if d not in axes]
    kept_shape = tuple(x.shape[d] for d in kept)
    moved = xp.transpose(x, kept + list(axes)) if kept + list(axes) != list(range(x.ndim)) else x
    m = math.prod(kept_shape)
    return xp.reshape(moved, (m, x.size // m if m else 0)), kept_shape


def ordered_sum(x: Any, axes: tuple[int, ...]) -> Any:
    """The defined-order sum of a float array over ``axes`` (see the module docstring), float64,
    with the kept axes' shape."""
    xp = _module(x)
    rows, kept_shape = _rows(x, axes, xp)
    m = rows.shape[0]
    r = rows.shape[1] if rows.ndim == 2 else 0
    if r == 0:
        return xp.zeros(kept_shape, np.float64)
    nfull, tail = divmod(r, CHUNK)
    steps = CHUNK // LANES
    parts = []
    if nfull:
        body = rows[:, :nfull * CHUNK].reshape(m, nfull, steps, LANES)
        parts.append(_lane_sums(body, xp))
    if tail:
        width = -(-tail // LANES)
        pad = xp.full((m, 1, width * LANES), -0.0, np.float64)
        pad[:, 0, :tail] = rows[:, nfull * CHUNK:]
        parts.append(_lane_sums(pad.reshape(m, 1, width, LANES), xp))
    lanes = parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=1)   # (m, chunks, LANES)
    chunks = lanes[..., 0].copy()
    for u in range(1, LANES):
        chunks += lanes[..., u]
    return combine_chunks(chunks, xp).reshape(kept_shape)


def _lane_sums(blocks: Any, xp: Any) -> Any:
    """(m, chunks, steps, LANES) float64 -> (m, chunks, LANES): each lane summed in order."""
    acc = blocks[:, :, 0, :].astype(np.float64, copy=True)
    for s in range(1, blocks.shape[2]):
        acc += blocks[:, :, s, :]
    return acc


def combine_chunks(chunks: Any, xp: Any = np) -> Any:
    """Chunk values (..., n) added in order: ``((c0 + c1) + c2) + ...`` (NumPy's cumulative sum is
    sequential by definition; CuPy's is a parallel scan, so CuPy's chunk values, a few per
    output, are added on the host)."""
    if xp is np:
        return np.cumsum(chunks, axis=-1)[..., -1]
    return xp.asarray(np.cumsum(xp.asnumpy(chunks), axis=-1)[..., -1])


def canonical_nan(result: Any) -> Any:
    """A NaN result as the quiet NaN: which NaN a sum ends with depends on the order its NaNs
    were added in (x86 keeps the first operand's), which is not part of the defined order."""
    xp = _module(result)
    result = xp.asarray(result)
    nan = xp.isnan(result)
    if bool(nan.any()):
        result = xp.where(nan, xp.asarray(np.nan, result.dtype), result)
    return result


def canonical_extreme(op: str, result: Any, values: Any, axes: tuple[int, ...] | None) -> Any:
    """Fix what ``max``/``min`` leave to the order: the sign of a zero result and NaN's bits."""
    xp = _module(result)
    result = xp.asarray(result)
    if result.dtype.kind != "f":
        return result
    zero = result == 0
    if bool(zero.any()):
        want_neg = np.signbit if op == "min" else (lambda v: ~np.signbit(v))
        found = xp.any((values == 0) & want_neg(values), axis=axes)
        if op == "min":
            fixed = xp.where(found, -0.0, 0.0)
        else:
            fixed = xp.where(found, 0.0, -0.0)
        result = xp.where(zero, fixed.astype(result.dtype), result)
    nan = xp.isnan(result)
    if bool(nan.any()):
        result = xp.where(nan, xp.asarray(np.nan, result.dtype), result)
    return result


def normalize_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """``axis`` (None, an int or a sequence) as sorted non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int | np.integer):
        axis = (axis,)
    return tuple(sorted({int(a) % ndim for a in axis})) if ndim else ()


def reduce_values(op: str, x: Any, axis: Any, keepdims: bool, dtype: str,
                  float_sum: Callable[[Any, tuple[int, ...]], Any] | None = None) -> Any:
    """``op`` ("sum", "mean", "max", "min") of ``x`` over ``axis`` (None, an int or a tuple), in the
    defined order, as an array of ``dtype`` (0-d for a full reduction).

    ``float_sum(values, axes)``: another implementation of :func:`ordered_sum` for float32/float64
    values (the Numba kernels of ``backends/numba_reduce``), with the same bits by contract."""
    xp = _module(x)
    x = xp.asarray(x)
    axes = normalize_axes(axis, x.ndim)
    if op in ("max", "min"):
        with np.errstate(invalid="ignore"):
            out = (xp.max if op == "max" else xp.min)(x, axis=axes)
        out = canonical_extreme(op, out, x, axes)
    else:
        acc = acc_dtype(op, x.dtype.name)
        if acc == "float64" and float_sum is not None and x.dtype in (np.float32, np.float64):
            out = canonical_nan(float_sum(x, axes))
        elif acc == "float64":
            out = canonical_nan(ordered_sum(x.astype(np.float64, copy=False), axes))
        else:
            out = xp.sum(x, axis=axes, dtype=acc)   # integer adds wrap: exact in any order
        if op == "mean":
            count = math.prod(x.shape[a] for a in axes)
            with np.errstate(all="ignore"):
                out = xp.asarray(out, np.float64) / np.float64(count)
    out = xp.asarray(out).astype(dtype, copy=False)
    if keepdims:
        out = out.reshape(tuple(1 if d in axes else s for d, s in enumerate(x.shape)))
    return out


__all__ = ["CHUNK", "LANES", "acc_dtype", "canonical_extreme", "canonical_nan", "combine_chunks", "normalize_axes",
           "ordered_sum", "reduce_values"]
