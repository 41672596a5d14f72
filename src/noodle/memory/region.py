"""Region-based memory: arenas whose memory and objects end together at a ``with`` block's end.

Why: math objects built around large arrays often die together (one step of
a loop, one request). Two costs disappear when they are allocated in a region:

* page faults: a region's arrays are bump-allocated from large ``mmap``
  chunks that go back *warm* to a per-scope free list at exit, so the next
  region of the same scope writes into pages that are already mapped
  (:mod:`noodle.memory.arena`);
* cycles that wait for the garbage collector: objects registered with the
  region are broken apart at exit when nothing outside holds them
  (:mod:`noodle.memory.reclaim`), so their arrays are freed at once.

What lands in region memory while a region is active on the current thread:
arrays from ``alloc.empty/zeros/full/alloc/asarray``, ``nd.Matrix(...,
allocator=alloc)``, the outputs of the host eager ops ``add subtract multiply
divide power maximum minimum matmul`` (2-D) and of the elementwise unary ops
(``exp log sqrt sin cos tanh abs negative``), and the output buffers of
functions compiled by ``@noodle.jit`` on the Numba backend. Their inputs are
not copied. ``where``, the reductions, ``astype`` and ``reshape``/``transpose``
(views) keep using the heap. Requests below ``small_bytes`` (64 KiB), and eager
or jitted outputs below ``eager_min_bytes`` (1 MiB), use the heap too: malloc
serves those from warm memory, and the region's bookkeeping (~2 us an array)
would cost more than it saves.

Objects: ``alloc.create(obj)``, ``alloc.alloc(noodle.Matrix, ...)`` and
``noodle.Matrix(data, allocator=alloc)`` register an object with the region,
which breaks it apart at exit if nothing outside holds it. The Matrix results
of arithmetic inside a region keep their data in region memory but are not
registered: the region would hold every temporary until it ends.

Safety at exit, never a dangling view: an array (or anything holding one)
that outlives its region keeps reading correct data. Each chunk's base array
counts its views; a chunk with a live view is neither reused nor unmapped
until the last view dies (a ``weakref.finalize`` on the base array returns it
to the free list then). Such memory is *escaped*: counted in the
``noodle_region_escaped_bytes`` gauge and reported once per allocation site by
a :class:`RegionEscapeWarning` naming ``file:line``, or, with ``strict=True``,
by :class:`~noodle.errors.RegionEscapeError` (raised after the data was made
safe). References held only by local variables of the function that ran the
``with`` are not reported (they are the usual ``x = ...`` inside the block;
the memory is reused once they are rebound or the function returns);
anything else is: a global, a container or object outside the region, a
value returned from inside the block, another thread. ``alloc.export(x)``
copies what you mean to keep to the heap.

Threads: a region belongs to the thread that created it. Allocating through it
or entering it from another thread raises :class:`~noodle.errors.RegionError`;
"the current region" is per thread, so other threads' eager ops never land in
it.

Example::

    import numpy as np, noodle as nd

    with nd.region("step") as alloc:
        x = alloc.zeros((1000, 1000))
        m = nd.Matrix(np.eye(1000), allocator=alloc)   # copied into the region
        y = nd.add(x, 1.0)                             # output in region memory
        keep = alloc.export(y)                         # a heap copy that outlives it
"""

from __future__ import annotations

from noodle.memory.allocator import RegionAllocator, RegionEscapeWarning
from noodle.memory.manager import RegionManager, default_manager
from noodle.memory.state import current


def region(scope: str = "compute", *, strict: bool = False, device: str = "cpu") -> RegionAllocator:
    """A region of ``scope`` on the process-wide manager: ``with noodle.region() as alloc:``.

    Regions nest (the inner one's memory ends at the inner exit). Outside any
    region everything uses the heap as before.

    Example::

        with noodle.region("compute", strict=True) as alloc:
            x = alloc.zeros((1000, 1000))
            y = noodle.multiply(noodle.add(x, 1.0), 2.0)   # in region memory
            total = float(y.sum())
    """
    return default_manager().create_region(scope, strict=strict, device=device)


__all__ = ["RegionAllocator", "RegionEscapeWarning", "RegionManager", "current", "default_manager", "region"]
