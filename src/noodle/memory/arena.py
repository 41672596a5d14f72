"""Anonymous-memory chunks for regions: bump allocation and warm per-scope free lists.

Why chunks of ``mmap`` memory instead of one ``np.empty`` per array:

* writing into *fresh* memory costs a page fault per 4 KiB page (ANCHORS.md:
  about 2x on a memory-bound kernel at 1e7 float64); a chunk that goes back
  warm to its scope's free list is already mapped when the next region of that
  scope takes it, and ``MADV_HUGEPAGE`` makes even the first touch fault in
  2 MiB steps where the kernel offers transparent huge pages;
* one chunk is one base array (``np.frombuffer(mmap)``), and every array a
  region hands out is a view of it, so ``sys.getrefcount(chunk.arr)`` tells
  whether *anything* (an array, a view of a view, a Matrix, another thread)
  still reads the chunk. That is what makes reuse safe: a chunk is bumped
  back to offset 0, put on a free list or unmapped only when that count says
  nobody holds a view; otherwise it is left alone (``mmap.close`` would raise
  ``BufferError`` anyway, and ``MADV_DONTNEED`` would silently zero the data).

Large requests (over half a chunk) get a chunk of their own, rounded up to a
page, so that their memory is recycled as soon as that one array dies.

Example::

    chunk = Chunk(8 << 20)
    off = chunk.bump(8000)
    x = chunk.view(off, 8000, (1000,), np.dtype("float64"))
    chunk.busy()          # True while x (or a view of it) lives
"""

from __future__ import annotations

import mmap
import sys
from typing import Any

import numpy as np

ALIGN = 64                 # every array starts on a cache line (and on SIMD-load boundaries)
HUGE_PAGE = 2 << 20        # shared chunks are multiples of this, so whole huge pages can back them
PAGE = mmap.PAGESIZE       # a chunk of its own is rounded to pages only: a huge page over its tail
                           # would be resident memory nobody asked for
_FREE_REFS = 2             # getrefcount(chunk.arr) when only the chunk holds it: the slot + the argument
_HAS_HUGE = hasattr(mmap, "MADV_HUGEPAGE")


def round_up(n: int, to: int) -> int:
    """``n`` rounded up to a multiple of ``to`` (a power of two)."""
    return (n + to - 1) & ~(to - 1)


class Chunk:
    """One anonymous private mapping, handed out by bumping an offset.

    ``arr`` is the uint8 base array every handed-out view refers to; it is
    None while the chunk is escaped (held only by the views, so that a
    finalizer on it fires when the last view dies) and rebuilt on reuse.
    ``sites`` lists ``(weakref to the view, filename, lineno)`` of the
    allocations since the last reset, to name them if they escape.
    """

    __slots__ = ("mm", "arr", "size", "offset", "sites", "dedicated", "arena", "__weakref__")

    def __init__(self, size: int, dedicated: bool = False, arena: Any = None) -> None:
        # MAP_PRIVATE: a forked child gets copy-on-write pages, not memory shared with us
        # (mmap(-1) alone is MAP_SHARED, i.e. shmem, where transparent huge pages are usually off)
        self.mm = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
        if _HAS_HUGE:
            try:
                self.mm.madvise(mmap.MADV_HUGEPAGE)
            except OSError:   # a kernel without THP: plain pages are fine
                pass
        self.arr: np.ndarray | None = np.frombuffer(self.mm, np.uint8)
        self.size = size
        self.offset = 0
        self.sites: list[tuple[Any, str, int]] = []
        self.dedicated = dedicated
        self.arena = arena

    def busy(self) -> bool:
        """Whether any view of the chunk is alive (see the module docstring)."""
        return sys.getrefcount(self.arr) > _FREE_REFS

    def views(self) -> int:
        """How many references to the base array exist besides the chunk's own."""
        return sys.getrefcount(self.arr) - _FREE_REFS

    def bump(self, nbytes: int) -> int:
        """The offset of ``nbytes`` more bytes, or -1 when they do not fit."""
        off = self.offset
        end = off + nbytes
        if end > self.size:
            return -1
        self.offset = round_up(end, ALIGN)
        return off

    def view(self, off: int, nbytes: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A C-contiguous array of ``shape``/``dtype`` (``nbytes`` long) at ``off``; its base is ``arr``
        (NumPy collapses the chain of views)."""
        v = self.arr[off:off + nbytes].view(dtype)   # ~0.25 us, against ~0.4 for np.ndarray(buffer=)
        return v if len(shape) == 1 else v.reshape(shape)

    def reset(self) -> None:
        """Start bumping from 0 again (only when :meth:`busy` is False)."""
        self.offset = 0
        self.sites.clear()

    def rewrap(self) -> None:
        """Rebuild the base array after an escape ended (its finalizer fired)."""
        if self.arr is None:
            self.arr = np.frombuffer(self.mm, np.uint8)
        self.reset()

    def release(self) -> bool:
        """Unmap the chunk; False (and nothing done) if a view still holds it."""
        if self.arr is not None and self.busy():
            return False
        self.arr = None
        try:
            self.mm.close()
        except BufferError:   # an export we did not see: keep the mapping, never free memory in use
            return False
        return True


class ScopeArena:
    """The warm free list of one region scope, bounded by ``max_retained`` bytes.

    Not thread-safe by itself: :class:`noodle.memory.region.RegionManager`
    calls it under its lock.
    """

    def __init__(self, scope: str, max_retained: int, first_keep: int = 0) -> None:
        self.scope = scope
        self.max_retained = max_retained
        # Why a scope is kept warm only once it repeats: warmth pays off for the next region of the
        # scope (a loop); a region that runs once would leave its peak resident for nothing. Until
        # a second region of the scope ends, at most ``first_keep`` bytes stay warm (the manager: 0).
        self.first_keep = first_keep
        self.exits = 0
        self.free: list[Chunk] = []
        self.retained = 0

    @property
    def bound(self) -> int:
        """The warm bytes this scope may keep now."""
        return self.max_retained if self.exits >= 2 else min(self.max_retained, self.first_keep)

    def get(self, size: int, dedicated: bool) -> Chunk | None:
        """The smallest free chunk of the kind asked for that holds ``size`` bytes without wasting
        more than a quarter of itself (or one huge page), or None."""
        best = -1
        limit = size + max(size // 4, HUGE_PAGE)
        for i, c in enumerate(self.free):
            if c.dedicated == dedicated and size <= c.size <= limit and (best < 0 or c.size < self.free[best].size):
                best = i
        if best < 0:
            return None
        chunk = self.free.pop(best)
        self.retained -= chunk.size
        chunk.rewrap()
        return chunk

    def put(self, chunk: Chunk) -> bool:
        """Keep ``chunk`` warm if the bound allows; otherwise unmap it. True if kept."""
        if self.retained + chunk.size <= self.bound:
            chunk.reset()
            self.free.append(chunk)
            self.retained += chunk.size
            return True
        chunk.release()
        return False

    def trim(self) -> int:
        """Unmap every free chunk; the bytes given back."""
        freed = 0
        keep = []
        for c in self.free:
            if c.release():
                freed += c.size
            else:
                keep.append(c)
        self.free = keep
        self.retained -= freed
        return freed


__all__ = ["ALIGN", "HUGE_PAGE", "PAGE", "Chunk", "ScopeArena", "round_up"]
