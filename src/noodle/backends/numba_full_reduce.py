"""Reductions of a whole array in the defined order (:mod:`noodle.ir.reduction`), callable from
compiled code: what a compiled ``while_loop`` (:mod:`noodle.backends.numba_while`) calls for a
convergence test such as ``nd.max(abs(r)) > tol`` or ``nd.sum(r * r)``.

Why their own functions: the fused kernels reduce inside their own loop shapes, and the
interpreter's :func:`~noodle.ir.reduction.reduce_values` is NumPy code; a loop compiled as one
function needs the same bits from inside Numba. Each takes a 1-D C-contiguous view of the values
(the array's elements in row-major order).

Example::

    >>> import numpy as np
    >>> float(ordered_sum(np.arange(10.0)))
    45.0
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from noodle.backends.numba_stamp import stamp_backend_caches
from noodle.ir.reduction import CHUNK, LANES

stamp_backend_caches()   # before this module's @njit(cache=True) (numba_stamp)

_OPTS = dict(cache=True, error_model="numpy", fastmath=False, nogil=True)


@njit(**_OPTS)
def ordered_sum(s: Any) -> float:  # pragma: no cover - compiled
    """The defined-order float64 sum: chunks of ``CHUNK``; in a chunk eight lanes, element ``t`` to
    lane ``t % 8``, each from ``-0.0`` in order; a chunk is its lanes added in order; the result
    its chunks added in order. 0.0 for no values; a NaN result is the quiet NaN."""
    r = s.shape[0]
    if r == 0:
        return 0.0
    lanes = np.empty(LANES, np.float64)
    total = 0.0
    for c0 in range(0, r, CHUNK):
        c1 = min(c0 + CHUNK, r)
        full = c0 + (c1 - c0) // LANES * LANES
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = -0.0
        for t in range(c0, full, LANES):
            a0 += np.float64(s[t])
            a1 += np.float64(s[t + 1])
            a2 += np.float64(s[t + 2])
            a3 += np.float64(s[t + 3])
            a4 += np.float64(s[t + 4])
            a5 += np.float64(s[t + 5])
            a6 += np.float64(s[t + 6])
            a7 += np.float64(s[t + 7])
        lanes[0] = a0
        lanes[1] = a1
        lanes[2] = a2
        lanes[3] = a3
        lanes[4] = a4
        lanes[5] = a5
        lanes[6] = a6
        lanes[7] = a7
        for t in range(full, c1):
            lanes[t - full] += np.float64(s[t])
        chunk = lanes[0]
        for u in range(1, LANES):
            chunk += lanes[u]
        total = chunk if c0 == 0 else total + chunk
    if total != total:
        return np.nan
    return total


@njit(**_OPTS)
def integer_sum(s: Any, acc: Any) -> Any:  # pragma: no cover - compiled
    """The wrapping sum of integers (or bools) in the accumulator's type (``acc``: its zero)."""
    for t in range(s.shape[0]):
        acc += s[t]
    return acc


@njit(**_OPTS)
def float_extreme(s: Any, largest: bool) -> float:  # pragma: no cover - compiled
    """``max`` (``largest``) or ``min`` of at least one float as float64: NaN when any value is
    NaN, and a zero result is ``+0.0`` for ``max`` when any ``+0.0`` is there (else ``-0.0``),
    ``-0.0`` for ``min`` when any ``-0.0`` is (else ``+0.0``). The caller checks for no values
    (NumPy raises)."""
    acc = -np.inf if largest else np.inf
    pos_zero = False
    neg_zero = False
    for t in range(s.shape[0]):
        v = np.float64(s[t])
        if v != v:
            return np.nan
        if v == 0.0:
            if np.signbit(v):
                neg_zero = True
            else:
                pos_zero = True
        if (v > acc) if largest else (v < acc):
            acc = v
    if acc == 0.0:
        if largest:
            return 0.0 if pos_zero else -0.0
        return -0.0 if neg_zero else 0.0
    return acc


@njit(**_OPTS)
def int_extreme(s: Any, largest: bool) -> Any:  # pragma: no cover - compiled
    """``max`` (``largest``) or ``min`` of at least one integer (the caller checks for none)."""
    acc = s[0]
    for t in range(1, s.shape[0]):
        v = s[t]
        if (v > acc) if largest else (v < acc):
            acc = v
    return acc


__all__ = ["float_extreme", "int_extreme", "integer_sum", "ordered_sum"]
