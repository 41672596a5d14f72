"""Where a compiled kernel's output array comes from: the current region, else the pool.

Why one helper: every backend that writes its results into NumPy arrays of its own (the Numba
kernels, IREE's caller-owned outputs) needs the same choice. A fresh ``np.empty`` of a large
output pays a page fault per 4 KiB page on first write: on the fused chain at 1e7 float32 that
was a third of IREE's call (9.2-11.5 ms against 6.4-7.4 ms from the pool, measured here). The
pool's tracked buffers come back once the caller drops the result; inside ``nd.region()`` the
output lives in the region and ends with it.

Example::

    out = out_buffer(default_pool(), (1000,), np.dtype("float32"), align=64)
"""

from __future__ import annotations

import math

import numpy as np

from noodle.memory import state
from noodle.memory.pool import BufferPool


def out_buffer(pool: BufferPool, shape: tuple[int, ...], dtype: np.dtype, align: int = 0) -> np.ndarray:
    """An uninitialised C-contiguous output of ``shape``/``dtype``: from this thread's current
    region when one is active and the output is large enough for it, else a tracked pool buffer
    (reused once the caller drops it). ``align``: its first byte's address is a multiple of it
    (IREE imports host memory aligned to 64 bytes)."""
    nbytes = math.prod(shape) * dtype.itemsize
    if state.ACTIVE_REGIONS:
        region = state.current()
        if region is not None and nbytes >= region.eager_min_bytes:
            out = region._take_large(shape, dtype, nbytes)
            if not align or out.ctypes.data % align == 0:
                return out
    if not align:
        return pool.take(shape, dtype, track=True)
    raw = pool.take(nbytes + align, np.uint8, track=True)
    off = (-raw.ctypes.data) % align
    return raw[off:off + nbytes].view(dtype).reshape(shape)


__all__ = ["out_buffer"]
