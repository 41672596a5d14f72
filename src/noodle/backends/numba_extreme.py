"""The running maximum or minimum of a contiguous float run as vector code (a Numba intrinsic).

Why an intrinsic: ``m = a if a > m else m`` is a select, and LLVM vectorizes a select reduction
only under fast-math's no-NaN and no-signed-zero flags, which the kernels never set; the plain
loop stayed scalar and ran a row softmax's ``max`` pass as slowly as NumPy's ``exp`` of the same
row. Here the accumulator is one wide vector (64 float32 or 32 float64 values: four AVX-512
registers, four independent chains), updated with an ordered compare and a select per element,
with a separate "a NaN was seen" vector. Which lane holds which value does not matter for a
maximum: the result is one of the values whatever the order; NaN and the sign of a zero (the
only places an order could show) are left to the caller's defined rules
(:func:`_extreme` below).

Example (inside ``@njit`` code)::

    m, nan_seen = extreme_lanes_max(row, start, steps, row[start])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from noodle.backends.llvm_loop import CountedLoop
from noodle.backends.numba_stamp import stamp_backend_caches

stamp_backend_caches()   # before this module's @njit(cache=True) (numba_stamp)

_OPTS = dict(cache=True, error_model="numpy", fastmath=False, nogil=True)

#: values per step: a vector of this many elements (four 512-bit registers' worth)
WIDTH = {types.float32: 64, types.float64: 32}


def _codegen(is_max: bool) -> Any:
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:  # pragma: no cover - compiled
        rowv, startv, stepsv, initv = args
        dtype = sig.args[0].dtype
        width = WIDTH[dtype]
        ary = context.make_array(sig.args[0])(context, builder, rowv)
        i64, i32, i1 = ir.IntType(64), ir.IntType(32), ir.IntType(1)
        elt = context.get_data_type(dtype)
        vec, vbool = ir.VectorType(elt, width), ir.VectorType(i1, width)
        align = 4 if dtype == types.float32 else 8
        base = builder.gep(ary.data, [startv])
        first = ir.Constant(vec, ir.Undefined)
        for u in range(width):
            first = builder.insert_element(first, initv, ir.Constant(i32, u))
        loop = CountedLoop(builder, "extreme", stepsv, [(vec, first), (vbool, ir.Constant(vbool, [0] * width))])
        acc, nan = loop.values
        ptr = builder.gep(base, [builder.mul(loop.q, ir.Constant(i64, width))])
        v = builder.load(builder.bitcast(ptr, vec.as_pointer()), align=align)
        better = builder.fcmp_ordered(">" if is_max else "<", v, acc)
        loop.close([builder.select(better, v, acc), builder.or_(nan, builder.fcmp_unordered("uno", v, v))])
        # halve the vectors until one value is left (log2(width) steps; a chain of width - 1
        # scalar selects took ~300 cycles a row): any order gives the same extreme, and the
        # zero's sign is the caller's to settle
        n = width
        while n > 1:
            n //= 2
            lo_mask = ir.Constant(ir.VectorType(i32, n), list(range(n)))
            hi_mask = ir.Constant(ir.VectorType(i32, n), list(range(n, 2 * n)))
            lo, hi = (builder.shuffle_vector(acc, acc, mk) for mk in (lo_mask, hi_mask))
            acc = builder.select(builder.fcmp_ordered(">" if is_max else "<", hi, lo), hi, lo)
            nlo, nhi = (builder.shuffle_vector(nan, nan, mk) for mk in (lo_mask, hi_mask))
            nan = builder.or_(nlo, nhi)
        m = builder.extract_element(acc, ir.Constant(i32, 0))
        seen = builder.extract_element(nan, ir.Constant(i32, 0))
        out = context.get_constant_undef(sig.return_type)
        out = builder.insert_value(out, m, 0)
        return builder.insert_value(out, seen, 1)

    return codegen


def _typing(row: Any, start: Any, steps: Any, init: Any) -> Any:
    if not (isinstance(row, types.Array) and row.ndim == 1 and row.layout == "C" and row.dtype in WIDTH):
        return None
    if init != row.dtype:
        return None
    return types.Tuple((row.dtype, types.boolean))(row, types.intp, types.intp, row.dtype)


@intrinsic
def extreme_lanes_max(typingctx: Any, row: Any, start: Any, steps: Any, init: Any) -> Any:  # pragma: no cover
    """``(m, nan_seen)`` over ``row[start : start + WIDTH * steps]`` and ``init``: ``m`` the largest
    non-NaN value by ``>`` (either zero when zeros tie), ``nan_seen`` whether a NaN was read."""
    sig = _typing(row, start, steps, init)
    return None if sig is None else (sig, _codegen(True))


@intrinsic
def extreme_lanes_min(typingctx: Any, row: Any, start: Any, steps: Any, init: Any) -> Any:  # pragma: no cover
    """As :func:`extreme_lanes_max`, the smallest by ``<``."""
    sig = _typing(row, start, steps, init)
    return None if sig is None else (sig, _codegen(False))


@njit(**_OPTS)
def _extreme(buf: Any, off: int, n: int, is_max: bool) -> float:   # pragma: no cover - compiled
    """``max``/``min`` of ``buf[off:off+n]`` by the defined rules: NaN wins (as ``np.nan``), and
    between zeros max takes +0.0, min -0.0.

    Why a vector intrinsic (above): a branch per element ran at
    ~2 ns an element here, and four scalar select chains at ~0.3 ns, as long as NumPy's ``exp``
    of the same row. The extreme is one of the values whatever the order, so only the zero's
    sign and NaN need the rules, checked after."""
    x = buf[off]
    w = 256 // buf.itemsize
    steps = n // w
    if is_max:
        m, bad = extreme_lanes_max(buf, off, steps, x)
    else:
        m, bad = extreme_lanes_min(buf, off, steps, x)
    bad |= x != x
    for j in range(off + steps * w, off + n):
        a = buf[j]
        bad |= a != a
        if is_max:
            m = a if a > m else m
        else:
            m = a if a < m else m
    if bad:
        return np.nan
    if m == 0:
        want = 1.0 if is_max else -1.0
        for j in range(off, off + n):
            if buf[j] == 0 and math.copysign(1.0, buf[j]) == want:
                return want * 0.0
        return -want * 0.0
    return np.float64(m)


@njit(**_OPTS)
def _rmax(buf: Any, off: int, n: int) -> float:   # pragma: no cover - compiled
    """``max`` of ``buf[off:off+n]`` (see :func:`_extreme`)."""
    return _extreme(buf, off, n, True)


@njit(**_OPTS)
def _rmin(buf: Any, off: int, n: int) -> float:   # pragma: no cover - compiled
    """``min`` of ``buf[off:off+n]`` (see :func:`_extreme`)."""
    return _extreme(buf, off, n, False)


__all__ = ["WIDTH", "extreme_lanes_max", "extreme_lanes_min"]   # and _rmax/_rmin, for the row kernels
