"""The defined-order float sum over axes (:mod:`noodle.ir.reduction`) as Numba kernels.

Why: :func:`noodle.ir.reduction.ordered_sum` is the definition, written with NumPy: Python loops
over the lane steps and copies of the reduced values, 5-12x slower than NumPy's own (unordered)
sum for an axis reduction. These kernels follow the same order, element by element, so they
give the same bits, at about the speed of a plain loop:

* ``inner``: values as (M, R) with the reduced axis contiguous. An item is one chunk of one
  row: eight lanes (one ``<8 x double>`` vector in registers, see :func:`_lanes`; the order of
  ``lane_reduce`` in :mod:`noodle.backends.numba_emit`), element ``t`` of the chunk into
  lane ``t % 8``, the tail of a short chunk into lanes ``0 .. tail-1``, then
  ``((lane0 + lane1) + ...) + lane7``;
* ``outer``: values as (P, R, Q) with the kept axis Q contiguous. An item is one chunk of a
  block of columns: lanes as an (8, block) array, ``lanes[t % 8, :] += X[t, :]``, then the
  lanes of each column added in order;
* both write one value per (output element, chunk); the chunk values are then added in order
  per output element (:func:`noodle.ir.reduction.combine_chunks`). Items are independent, so
  neither the thread count nor the blocking changes a bit.

Every value is converted to float64 before it is added, each lane starts from ``-0.0`` (``-0.0
+ v == v`` for every ``v``, so this is the definition's "the first element"), and a NaN result
is the canonical quiet NaN. The reduced axes are reshaped, not copied, when they are one run
of axes (leading, trailing, or in the middle: (P, R, Q)); otherwise the kept axes are moved to
the front in one copy (the definition's own ``_rows``) and ``inner`` runs.

Example::

    >>> import numpy as np
    >>> float(ordered_sum_fast(np.arange(10.0), (0,)))
    45.0
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import get_num_threads, njit, prange, types
from numba.extending import intrinsic

from noodle.backends.llvm_loop import CountedLoop, add_to_lanes, lanes_tuple
from noodle.backends.numba_stamp import stamp_backend_caches
from noodle.backends.numba_threads import parallel_lock
from noodle.ir.reduction import CHUNK, LANES, combine_chunks

stamp_backend_caches()   # before this module's @njit(cache=True) (numba_stamp)

assert LANES == 8 and CHUNK % LANES == 0   # the kernels below spell the lane count out

PARALLEL_MIN = 1 << 20   # elements; below this the serial variants run (thread start-up: ~20 µs)
BLOCK_MAX = 512          # columns per outer item: (8, 512) float64 lanes = 32 KiB
NARROW = 16              # kept extents below this: copy to (M, R) and run inner instead

_OPTS = dict(cache=True, error_model="numpy", fastmath=False, nogil=True)


# ------------------------------------------------------------------------------ the work
def _lanes_codegen(with_init: bool, rows: int = 1) -> Any:
    """LLVM for :func:`_lanes` (lanes start from ``-0.0``), :func:`_lanes_from` (from the eight
    values of the last argument) or, with ``rows`` > 1, :func:`_lanes_rows` (``rows`` rows
    ``stride`` elements apart, each its own eight lanes: independent chains in one loop)."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:  # pragma: no cover - compiled
        rowv, startv = args[:2]
        stepsv = args[3] if rows > 1 else args[2]
        ary = context.make_array(sig.args[0])(context, builder, rowv)
        i64, f64, i32 = ir.IntType(64), ir.DoubleType(), ir.IntType(32)
        elt = context.get_data_type(sig.args[0].dtype)
        vin, vacc = ir.VectorType(elt, 8), ir.VectorType(f64, 8)
        align = 4 if sig.args[0].dtype == types.float32 else 8
        bases = [builder.gep(ary.data, [builder.add(startv, builder.mul(args[2], ir.Constant(i64, g)))
                                        if g else startv]) for g in range(rows)]
        if with_init:
            first = ir.Constant(vacc, ir.Undefined)
            for u in range(8):
                first = builder.insert_element(first, builder.extract_value(args[3], u), ir.Constant(i32, u))
        else:
            first = ir.Constant(vacc, [-0.0] * 8)
        loop = CountedLoop(builder, "lanes", stepsv, [(vacc, first)] * rows)
        step = builder.mul(loop.q, ir.Constant(i64, 8))
        nexts = []
        for base, acc in zip(bases, loop.values, strict=True):
            v = builder.load(builder.bitcast(builder.gep(base, [step]), vin.as_pointer()), align=align)
            nexts.append(add_to_lanes(builder, acc, v))
        loop.close(nexts)
        return lanes_tuple(context, builder, sig, loop.values)

    return codegen


def _lane_row(row: Any) -> bool:
    return (isinstance(row, types.Array) and row.ndim == 1 and row.layout == "C"
            and row.dtype in (types.float32, types.float64))


@intrinsic
def _lanes(typingctx: Any, row: Any, start: Any, steps: Any) -> Any:  # pragma: no cover - compiled
    """The eight lanes of ``row[start : start + 8 * steps]``: lane ``u`` is ``row[start + 8q + u]``
    for ``q = 0, 1, ...`` converted to float64 and added in order, starting from ``-0.0``.

    Why an intrinsic: the lanes are one ``<8 x double>`` value in registers, added with vector
    ``fadd`` (each element is an IEEE add of its own lane: the same bits as eight scalar
    chains). Numba turns off LLVM's SLP vectorizer and cannot tell the loop vectorizer that a
    lane array does not alias the values, so the plain eight-step loop stays scalar, storing
    every lane on every step: 2.5-3x slower here (0.2-0.35 ns an element against 0.08-0.11).
    """
    if not _lane_row(row):
        return None
    ret = types.UniTuple(types.float64, 8)
    return ret(row, types.intp, types.intp), _lanes_codegen(False)


@intrinsic
def _lanes_from(typingctx: Any, row: Any, start: Any, steps: Any, lanes: Any) -> Any:  # pragma: no cover
    """:func:`_lanes` continuing from ``lanes`` (a tuple of eight float64s) instead of ``-0.0``:
    a chunk reduced in pieces gives the same bits as in one call, since each lane still adds its
    elements one after the other. It lets a kernel fill a small buffer (a few KiB, in L1 while
    it is read back) piece by piece instead of one buffer of a whole chunk."""
    ret = types.UniTuple(types.float64, 8)
    if not _lane_row(row) or lanes != ret:
        return None
    return ret(row, types.intp, types.intp, ret), _lanes_codegen(True)


#: rows summed at once by :func:`_rsum_rows`
ROWS = 4


@intrinsic
def _lanes_rows(typingctx: Any, row: Any, start: Any, stride: Any, steps: Any) -> Any:  # pragma: no cover
    """:func:`_lanes` of ``ROWS`` rows at once: rows ``start + g * stride``, ``g < ROWS``, each
    ``8 * steps`` elements into its own eight lanes (lane ``8g + u`` of the result).

    Why: one row's lanes are one chain of dependent vector adds (four cycles each here), so a
    row sum runs at the add's latency, not its throughput; four rows' chains in one loop
    overlap. Each lane still adds its own elements in order: the bits of four :func:`_lanes`."""
    if not _lane_row(row):
        return None
    ret = types.UniTuple(types.float64, 8 * ROWS)
    return ret(row, types.intp, types.intp, types.intp), _lanes_codegen(False, ROWS)


@njit(**_OPTS)
def _chunk_total(buf: Any, jt: int, tail: int, l0: float, l1: float, l2: float, l3: float,  # pragma: no cover
                 l4: float, l5: float, l6: float, l7: float) -> float:
    """One chunk's value from its eight lanes: the tail (at most 7 elements from ``buf[jt]``)
    into lanes ``0 .. tail-1``, then ``((l0 + l1) + ...) + l7``."""
    if tail > 0:
        l0 += np.float64(buf[jt])
    if tail > 1:
        l1 += np.float64(buf[jt + 1])
    if tail > 2:
        l2 += np.float64(buf[jt + 2])
    if tail > 3:
        l3 += np.float64(buf[jt + 3])
    if tail > 4:
        l4 += np.float64(buf[jt + 4])
    if tail > 5:
        l5 += np.float64(buf[jt + 5])
    if tail > 6:
        l6 += np.float64(buf[jt + 6])
    return l0 + l1 + l2 + l3 + l4 + l5 + l6 + l7


@njit(**_OPTS)
def _rsum(buf: Any, off: int, n: int) -> float:   # pragma: no cover - compiled
    """The defined-order sum of ``buf[off:off+n]`` (float64; NaN as ``np.nan``).

    Row-wise kernels' row sum (:mod:`noodle.backends.numba_rowwise`). Why no lane array: an
    allocation per row (two per layernorm row) takes a shared allocator's atomics, and two
    threads running rows at once then ran slower than one."""
    total = 0.0
    for c in range((n + CHUNK - 1) // CHUNK):
        s = off + c * CHUNK
        m = min(CHUNK, n - c * CHUNK)
        nq = m // 8
        l0, l1, l2, l3, l4, l5, l6, l7 = _lanes(buf, s, nq)
        acc = _chunk_total(buf, s + nq * 8, m - nq * 8, l0, l1, l2, l3, l4, l5, l6, l7)
        total = acc if c == 0 else total + acc
    if total != total:
        return np.nan
    return total


@njit(**_OPTS)
def _rsum_rows(buf: Any, off: int, stride: int, n: int) -> Any:   # pragma: no cover - compiled
    """:func:`_rsum` of the ``ROWS`` rows ``buf[off + g*stride :][:n]`` (a tuple), bit for bit,
    with their chains overlapped (:func:`_lanes_rows`): a row-wise kernel's sums of a group of
    rows, 15-20% of a float32 layernorm's time here."""
    t0 = t1 = t2 = t3 = 0.0
    for c in range((n + CHUNK - 1) // CHUNK):
        s = off + c * CHUNK
        m = min(CHUNK, n - c * CHUNK)
        nq = m // 8
        tail = m - nq * 8
        jt = s + nq * 8
        ln = _lanes_rows(buf, s, stride, nq)
        a0 = _chunk_total(buf, jt, tail, ln[0], ln[1], ln[2], ln[3], ln[4], ln[5], ln[6], ln[7])
        a1 = _chunk_total(buf, jt + stride, tail, ln[8], ln[9], ln[10], ln[11], ln[12], ln[13], ln[14], ln[15])
        a2 = _chunk_total(buf, jt + 2 * stride, tail, ln[16], ln[17], ln[18], ln[19], ln[20], ln[21], ln[22],
                          ln[23])
        a3 = _chunk_total(buf, jt + 3 * stride, tail, ln[24], ln[25], ln[26], ln[27], ln[28], ln[29], ln[30],
                          ln[31])
        if c == 0:
            t0, t1, t2, t3 = a0, a1, a2, a3
        else:
            t0, t1, t2, t3 = t0 + a0, t1 + a1, t2 + a2, t3 + a3
    return (np.nan if t0 != t0 else t0, np.nan if t1 != t1 else t1, np.nan if t2 != t2 else t2,
            np.nan if t3 != t3 else t3)


#: the public name generated kernels import (:func:`noodle.backends.numba_emit.lane_reduce`)
lane_sums = _lanes
lane_sums_from = _lanes_from


@njit(**_OPTS)
def _inner_items(x: Any, part: Any, lo: int, hi: int) -> None:   # pragma: no cover - compiled
    """Items ``lo .. hi`` of (M, R) ``x``: item k is chunk ``k % nch`` of row ``k // nch``;
    its value goes to ``part[row, chunk]``."""
    r = x.shape[1]
    nch = part.shape[1]
    lane = np.empty(8, np.float64)
    for k in range(lo, hi):
        i = k // nch
        c = k - i * nch
        row = x[i]
        s = c * CHUNK
        n = min(CHUNK, r - s)
        nq = n // 8
        full = _lanes(row, s, nq)   # the chunk's whole steps of eight
        for u in range(8):
            lane[u] = full[u]
        jt = s + nq * 8             # a short last chunk's tail: lanes 0 .. tail-1
        for u in range(n - nq * 8):
            lane[u] += np.float64(row[jt + u])
        acc = lane[0]
        for u in range(1, 8):
            acc += lane[u]
        part[i, c] = acc


@njit(**_OPTS)
def _outer_items(x: Any, part: Any, lo: int, hi: int, block: int) -> None:  # pragma: no cover
    """Items ``lo .. hi`` of (P, R, Q) ``x``: item k is (p, column block, chunk), chunk fastest;
    the chunk's value of each column goes to ``part[p, chunk, column]``."""
    r = x.shape[1]
    q = x.shape[2]
    nch = part.shape[1]
    nbq = (q + block - 1) // block
    lanes = np.empty((8, block), np.float64)
    for k in range(lo, hi):
        p = k // (nbq * nch)
        rem = k - p * (nbq * nch)
        cb = rem // nch
        c = rem - cb * nch
        c0 = cb * block
        w = min(block, q - c0)
        s = c * CHUNK
        n = min(CHUNK, r - s)
        for u in range(8):
            for j in range(w):
                lanes[u, j] = -0.0
        for t in range(n):
            src = x[p, s + t, c0:c0 + w]
            dst = lanes[t & 7]
            for j in range(w):
                dst[j] += np.float64(src[j])
        out = part[p, c, c0:c0 + w]
        for j in range(w):
            acc = lanes[0, j]
            for u in range(1, 8):
                acc += lanes[u, j]
            out[j] = acc


# ------------------------------------------------------------------- parallel drivers
@njit(parallel=True, **_OPTS)
def _inner_par(x: Any, part: Any, nblocks: int) -> None:  # pragma: no cover - compiled
    items = part.shape[0] * part.shape[1]
    per = (items + nblocks - 1) // nblocks
    for b in prange(nblocks):
        lo = b * per
        _inner_items(x, part, lo, min(items, lo + per))


@njit(parallel=True, **_OPTS)
def _outer_par(x: Any, part: Any, block: int, nblocks: int) -> None:  # pragma: no cover
    nbq = (x.shape[2] + block - 1) // block
    items = part.shape[0] * part.shape[1] * nbq
    per = (items + nblocks - 1) // nblocks
    for b in prange(nblocks):
        lo = b * per
        _outer_items(x, part, lo, min(items, lo + per), block)


# ------------------------------------------------------------------------ the driver
def _canonical_layout(shape: tuple[int, ...], axes: tuple[int, ...]) -> list[tuple[int, bool]]:
    """``shape`` without its size-1 dims, neighbours of the same kind (reduced or kept) merged:
    (extent, reduced) runs. Neither changes the row-major order of the reduced elements."""
    runs: list[tuple[int, bool]] = []
    for d, s in enumerate(shape):
        if s == 1:
            continue
        red = d in axes
        if runs and runs[-1][1] == red:
            runs[-1] = (runs[-1][0] * s, red)
        else:
            runs.append((s, red))
    return runs


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _threads() -> int:
    return max(1, int(get_num_threads()))


def _launch(par: Any, ser: Any, size: int) -> None:
    """``par()`` for large work, else ``ser()``; one parallel launch at a time (Numba's
    ``workqueue`` layer aborts on two), the same lock as the fused kernels'."""
    if size < PARALLEL_MIN or _threads() == 1:
        ser()
        return
    lock = parallel_lock()
    if lock.acquire(blocking=False):
        try:
            par()
        finally:
            lock.release()
    else:
        ser()


def _inner(x2: np.ndarray) -> np.ndarray:
    """(M, R) C-contiguous float32/float64, R > 0 -> (M,) float64."""
    m, r = x2.shape
    nch = _cdiv(r, CHUNK)
    part = np.empty((m, nch), np.float64)
    items = m * nch
    nblocks = min(items, 4 * _threads())
    _launch(lambda: _inner_par(x2, part, nblocks), lambda: _inner_items(x2, part, 0, items), x2.size)
    return part[:, 0] if nch == 1 else combine_chunks(part)


def _outer(x3: np.ndarray) -> np.ndarray:
    """(P, R, Q) C-contiguous float32/float64, R > 0 -> (P, Q) float64."""
    p, r, q = x3.shape
    nch = _cdiv(r, CHUNK)
    part = np.empty((p, nch, q), np.float64)
    threads = _threads()
    block = BLOCK_MAX
    if p * nch < 2 * threads:   # few (p, chunk) pairs: narrower column blocks, more items
        want = _cdiv(2 * threads, p * nch)
        block = min(BLOCK_MAX, max(64, _cdiv(_cdiv(q, want), 16) * 16))
    block = min(block, _cdiv(q, 8) * 8)
    items = p * nch * _cdiv(q, block)
    nblocks = min(items, 4 * threads)
    _launch(lambda: _outer_par(x3, part, block, nblocks),
            lambda: _outer_items(x3, part, 0, items, block), x3.size)
    if nch == 1:
        return part[:, 0, :]
    return combine_chunks(np.moveaxis(part, 1, 2))


def ordered_sum_fast(values: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """:func:`noodle.ir.reduction.ordered_sum` of a float NumPy array over ``axes`` (sorted,
    non-negative), bit for bit, as float64 of the kept shape; a NaN result is ``np.nan``."""
    x = np.asarray(values)
    axes = tuple(sorted({int(a) % x.ndim for a in axes})) if x.ndim else ()
    kept_shape = tuple(s for d, s in enumerate(x.shape) if d not in axes)
    if x.size == 0:   # an empty reduction is +0.0 (as the definition); nothing kept: empty
        return np.zeros(kept_shape, np.float64)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)   # as the definition: values converted to float64 first
    runs = _canonical_layout(x.shape, axes)
    kinds = [red for _, red in runs]
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    if not any(kinds):   # nothing reduced that has more than one element: the values themselves
        out = x.astype(np.float64).reshape(kept_shape)
        return _canonical_nan(out + -0.0)   # -0.0 + v, as a lane adds its one element
    if kinds in ([True], [False, True]):
        m = math.prod(kept_shape)
        out = _inner(x.reshape(m, x.size // m))
    elif kinds in ([True, False], [False, True, False]):
        ext = [e for e, _ in runs]
        if kinds == [True, False]:
            ext = [1, *ext]
        p, r, q = ext
        if q < NARROW:
            out = _inner(np.ascontiguousarray(x.reshape(p, r, q).transpose(0, 2, 1)).reshape(p * q, r))
        else:
            out = _outer(x.reshape(p, r, q))
    else:   # reduced runs apart: the kept axes first, the reduced last (one copy)
        kept = [d for d in range(x.ndim) if d not in axes]
        moved = np.ascontiguousarray(np.transpose(x, kept + list(axes)))
        m = math.prod(kept_shape)
        out = _inner(moved.reshape(m, x.size // m))
    return _canonical_nan(np.ascontiguousarray(out).reshape(kept_shape))


def _canonical_nan(out: np.ndarray) -> np.ndarray:
    nan = np.isnan(out)
    if nan.any():
        out = np.where(nan, np.nan, out)
    return out


__all__ = ["ROWS", "lane_sums", "lane_sums_from", "ordered_sum_fast"]   # and _rsum/_rsum_rows: row kernels
