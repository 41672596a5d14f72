"""A thread-safe pool that recycles NumPy buffers of the same size and dtype.

Why: a kernel writing its output into fresh memory pays a page fault per 4 KiB
page (ANCHORS.md: about 2x at 1e7 float64). Keeping freed buffers and handing
them out again for the next output of the same ``nbytes``/dtype removes that.

Two ways a buffer comes back:

* explicitly, ``pool.give(array)`` (the memory planner and :class:`Region` do
  this for intermediates they know are dead);
* implicitly, for buffers handed out with ``take(..., track=True)``: the pool
  keeps a reference and, when a later ``take`` needs a buffer of that size, it
  reuses a tracked buffer whose reference count shows that nobody else holds
  it any more (no array, no view, no memoryview: all of those keep the base
  object alive and raise its count). This is what makes a JIT-compiled
  function that returns a new array on every call reuse last call's dropped
  result. A raw pointer taken with ``array.ctypes.data`` and kept past the
  array's life is not seen; that is undefined in NumPy anyway.

The pool is bounded (``max_bytes``, default 2 GiB; at most ``max_tracked_per_key``
tracked buffers per size): past the bound, buffers are not kept. The price of
recycling is that dropped buffers stay allocated until reused or ``clear()``.
Small buffers (below ``min_bytes``) are never pooled: ``np.empty`` of a few
KiB is served by malloc's free lists without page faults, and the pool's
bookkeeping would only add call overhead.

Example::

    pool = BufferPool(max_bytes=1 << 30)
    out = pool.take((1000, 1000), "float64")
    ...
    pool.give(out)             # the next take of 8 MB float64 gets it back
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from noodle import metrics

_HITS = metrics.counter("noodle_buffer_pool_hits_total", "buffer pool takes served by a recycled buffer")
_MISSES = metrics.counter("noodle_buffer_pool_misses_total", "buffer pool takes that allocated fresh memory")
_HELD = metrics.gauge("noodle_buffer_pool_bytes_held", "bytes the buffer pool keeps (free and tracked)")
_HIT, _MISS = _HITS.labels(), _MISSES.labels()   # the unlabelled children (take skips the label lookup)

# getrefcount of a tracked base buffer that only the pool references:
# the pool's list entry + getrefcount's own argument.
_FREE_REFCOUNT = 2


def _key(nbytes: int, dtype: np.dtype) -> tuple[int, str]:
    return (nbytes, dtype.str)


class BufferPool:
    """Recycles 1-D base buffers keyed by (nbytes, dtype); see the module docstring."""

    def __init__(self, max_bytes: int = 2 << 30, min_bytes: int = 1 << 16, max_tracked_per_key: int = 4) -> None:
        if max_bytes < 0 or min_bytes < 0 or max_tracked_per_key < 0:
            raise ValueError("BufferPool bounds must be >= 0")
        self.max_bytes = int(max_bytes)
        self.min_bytes = int(min_bytes)
        self.max_tracked_per_key = int(max_tracked_per_key)
        self._free: dict[tuple[int, str], list[np.ndarray]] = {}
        self._tracked: dict[tuple[int, str], list[np.ndarray]] = {}
        self._lock = threading.Lock()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    # ------------------------------------------------------------------ take
    def take(self, shape: tuple[int, ...] | int, dtype: Any, track: bool = False) -> np.ndarray:
        """A C-contiguous array of ``shape``/``dtype`` with undefined contents.

        ``track=True`` keeps a reference so the buffer is reused automatically
        once the caller (and every view of it) has dropped it.
        """
        dt = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
        shp = (shape,) if isinstance(shape, int) else tuple(shape)
        count = math.prod(shp)
        nbytes = count * dt.itemsize
        if nbytes < self.min_bytes:
            return np.empty(shp, dt)
        key = _key(nbytes, dt)
        base = None
        with self._lock:
            before = self._bytes
            free = self._free.get(key)
            if free:
                base = free.pop()
                # a free buffer handed out tracked moves to the tracked list (its bytes stay
                # counted); otherwise, or with no room there, the pool stops holding it
                tracked = self._tracked.setdefault(key, []) if track else None
                if tracked is not None and len(tracked) < self.max_tracked_per_key:
                    tracked.append(base)
                else:
                    self._bytes -= nbytes
            else:
                tracked = self._tracked.get(key)
                if tracked:
                    for i in range(len(tracked)):
                        # only the list and getrefcount's argument refer to it: nobody uses it
                        if sys.getrefcount(tracked[i]) <= _FREE_REFCOUNT:
                            base = tracked[i]
                            if not track:
                                del tracked[i]
                                self._bytes -= nbytes
                            break
            hit = base is not None
            if hit:
                self.hits += 1
            else:
                self.misses += 1
                base = np.empty(count, dt)
                if track:
                    tracked = self._tracked.setdefault(key, [])
                    if len(tracked) < self.max_tracked_per_key and self._bytes + nbytes <= self.max_bytes:
                        tracked.append(base)
                        self._bytes += nbytes
            held = self._bytes
        # (the metrics' children cached: a jitted function's output reuses a tracked buffer on
        # every call, and the label lookups and an unchanged gauge cost more than the reuse)
        (_HIT if hit else _MISS).inc()
        if held != before:
            _HELD.set(held)
        return base.reshape(shp)

    # ------------------------------------------------------------------ give
    def give(self, array: np.ndarray) -> bool:
        """Return a buffer that nobody uses any more; True if the pool kept it.

        Only whole C-contiguous buffers are kept (a view of part of a buffer is
        refused: the rest of it may still be in use).
        """
        if not isinstance(array, np.ndarray) or not array.flags.c_contiguous or not array.flags.writeable:
            return False
        base = array
        while isinstance(base.base, np.ndarray):
            if base.base.nbytes != array.nbytes:
                return False
            base = base.base
        if base.base is not None:  # memory owned by something else (mmap, bytes, ...)
            return False
        nbytes = array.nbytes
        if nbytes < self.min_bytes:
            return False
        flat = base.reshape(-1)
        key = _key(nbytes, array.dtype)
        with self._lock:
            tracked = self._tracked.get(key)
            if tracked and any(t is base or t is flat for t in tracked):
                return True  # already counted; reuse happens when it is dropped
            if self._bytes + nbytes > self.max_bytes:
                return False
            self._free.setdefault(key, []).append(flat)
            self._bytes += nbytes
            held = self._bytes
        _HELD.set(held)
        return True

    # ------------------------------------------------------------------ stats
    @property
    def bytes_held(self) -> int:
        """Bytes the pool keeps alive (free buffers plus tracked ones)."""
        return self._bytes

    def stats(self) -> dict[str, int]:
        """hits, misses, bytes_held, free_buffers, tracked_buffers."""
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "bytes_held": self._bytes,
                "free_buffers": sum(len(v) for v in self._free.values()),
                "tracked_buffers": sum(len(v) for v in self._tracked.values()),
            }

    def clear(self) -> None:
        """Drop every buffer the pool keeps (tracked ones stay valid for their holders)."""
        with self._lock:
            self._free.clear()
            self._tracked.clear()
            self._bytes = 0
        _HELD.set(0)


class Region:
    """Buffers taken inside a region go back to the pool when it closes.

    Why: a caller that knows a set of intermediates dies together (one call of
    a compiled program) can hand them all back at once. Arrays still needed
    after the region must be copied or taken outside it.

    Example::

        with Region(pool) as r:
            tmp = r.take((n,), "float64")
            ...
    """

    def __init__(self, pool: BufferPool | None = None) -> None:
        self.pool = pool if pool is not None else default_pool()
        self._taken: list[np.ndarray] = []

    def take(self, shape: tuple[int, ...] | int, dtype: Any) -> np.ndarray:
        array = self.pool.take(shape, dtype)
        self._taken.append(array)
        return array

    def close(self) -> None:
        taken, self._taken = self._taken, []
        for array in taken:
            self.pool.give(array)

    def __enter__(self) -> Region:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def region(pool: BufferPool | None = None) -> Iterator[Region]:
    """``with region() as r:`` — a :class:`Region` on the default pool."""
    r = Region(pool)
    try:
        yield r
    finally:
        r.close()


_default: BufferPool | None = None
_default_lock = threading.Lock()


def default_pool() -> BufferPool:
    """The process-wide pool the backends write their outputs into."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = BufferPool()
    return _default


__all__ = ["BufferPool", "Region", "default_pool", "region"]
