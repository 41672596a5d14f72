"""``RegionManager``: what regions share: warm chunks per scope, escaped chunks, objects to look at again.

Why a manager apart from the regions: a region lives for one ``with`` block,
but what makes regions cheap outlives it: the free list of warm chunks of its
scope, the chunks that escaped (handed back by a finalizer when their last
view dies), and the registered objects that local variables still held at an
exit (looked at again at later exits, when the loop has rebound those
variables). ``noodle.region()`` uses one process-wide manager.

Example::

    mgr = RegionManager(max_retained_bytes=256 << 20)
    with mgr.create_region("batch") as alloc:
        x = alloc.zeros(1 << 20)
    mgr.stats()
"""

from __future__ import annotations

import gc
import os
import threading
import types
import weakref
from collections import deque
from typing import Any

from noodle import metrics
from noodle.errors import DeviceError, RegionError
from noodle.memory.allocator import Acct, RegionAllocator
from noodle.memory.arena import HUGE_PAGE, Chunk, ScopeArena, round_up
from noodle.memory.reclaim import FrameLocals, analyse, clear, locals_of

_BYTES = metrics.counter("noodle_region_bytes_allocated_total",
                         "bytes of region memory handed out (smaller arrays use the heap)", ["scope"])
_PEAK = metrics.gauge("noodle_region_peak_bytes", "most chunk bytes one region of the scope held at once",
                      ["scope"])
_ESCAPED = metrics.gauge("noodle_region_escaped_bytes",
                         "bytes of region chunks still referenced after their region ended")
_REUSED = metrics.counter("noodle_region_chunks_reused_total",
                          "chunks served warm (from the scope's free list or reset inside a region)", ["scope"])
_RETAINED = metrics.gauge("noodle_region_retained_bytes", "bytes kept warm in the regions' free lists")
_REGIONS = metrics.counter("noodle_region_regions_total", "regions ended (bytes per region: bytes allocated / this)",
                           ["scope"])
_MAPPED = metrics.counter("noodle_region_chunks_mapped_total",
                          "chunks mapped fresh because no warm chunk of the scope fitted", ["scope"])
_CLEARED = metrics.counter("noodle_region_objects_cleared_total",
                           "registered objects broken apart at region exits", ["scope"])

_MAX_SCOPE_LABELS = 32      # scopes are user strings: past this many, they share the label "other"
_scope_labels: dict[str, str] = {}
_PENDING_TRIES = 8          # exits at which a kept registered object is looked at again
_MAX_PENDING = 100_000


def _scope_label(scope: str) -> str:
    label = _scope_labels.get(scope)
    if label is None:
        label = scope if len(_scope_labels) < _MAX_SCOPE_LABELS else "other"
        _scope_labels[scope] = label
    return label


def _parse_device(device: Any) -> tuple[str, int]:
    if isinstance(device, str):
        d = device.strip().lower()
        if d == "cpu":
            return "cpu", 0
        if d in ("cuda", "gpu"):
            return "cuda", 0
        if d.startswith("cuda:") and d[5:].isdigit():
            return "cuda", int(d[5:])
    raise DeviceError(f"region: device={device!r} is not a device a region can allocate on; "
                      f"expected 'cpu', 'cuda' (or 'gpu') or 'cuda:N'")


def _views_gone(manager_ref: weakref.ref, chunk: Chunk, acct: Acct) -> None:
    """Finalizer of an escaped chunk's base array: its last view died. Runs in whichever thread
    dropped that view, at any point of its code, so it only appends and adjusts integers."""
    acct.add(-chunk.size)
    _ESCAPED.labels().dec(chunk.size)
    manager = manager_ref()
    if manager is not None:
        manager._returned.append(chunk)
        manager._acct.add(-chunk.size)
    else:
        chunk.release()


class RegionManager:
    """Creates regions and keeps, per scope, the warm chunks they return.

    ``chunk_bytes`` is the size of the chunks small and medium arrays share
    (requests over half of it get a chunk of their own); below ``small_bytes``
    the heap serves ``alloc.empty`` and friends, and below ``eager_min_bytes``
    it serves eager op and jitted outputs (there malloc hands back warm memory
    and the region's ~2 us of bookkeeping per array would cost more than it
    saves); ``max_retained_bytes`` bounds the warm bytes
    kept per scope (beyond, chunks are unmapped: RSS goes down). A scope is
    kept warm only once a second region of it has ended (a loop): after a
    region that runs once, no free chunk stays mapped, so RSS returns to the
    live bytes.
    ``noodle.region()`` uses one process-wide manager (:func:`default_manager`).

    Example::

        mgr = RegionManager(max_retained_bytes=256 << 20)
        for step in range(3):
            with mgr.create_region("batch") as alloc:
                total = float(alloc.full((1 << 20,), 2.0).sum())   # nothing holds the array at exit
        mgr.stats()["scopes"]["batch"]["retained_bytes"]           # its 8 MiB chunk is kept warm
    """

    def __init__(self, *, chunk_bytes: int = 8 << 20, small_bytes: int = 64 << 10,
                 eager_min_bytes: int = 1 << 20, max_retained_bytes: int = 512 << 20) -> None:
        for name, value in (("chunk_bytes", chunk_bytes), ("small_bytes", small_bytes),
                            ("eager_min_bytes", eager_min_bytes), ("max_retained_bytes", max_retained_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RegionError(f"RegionManager: {name}={value!r} is invalid; expected an int >= 0 (bytes)")
        if chunk_bytes < HUGE_PAGE:
            raise RegionError(f"RegionManager: chunk_bytes={chunk_bytes} is below one huge page ({HUGE_PAGE}); "
                              f"pass at least {HUGE_PAGE}")
        self.chunk_bytes = round_up(chunk_bytes, HUGE_PAGE)
        self.small_bytes = small_bytes
        self.eager_min_bytes = max(eager_min_bytes, small_bytes)
        self.max_retained_bytes = max_retained_bytes
        self._lock = threading.RLock()
        self._arenas: dict[str, ScopeArena] = {}
        self._returned: deque[Chunk] = deque()   # escaped chunks whose last view died (finalizers)
        self._pending: list[tuple[weakref.ref, int]] = []   # kept registered objects, looked at again later
        self._gpu_held: list[Any] = []           # GPU pools still used after their region
        self._acct = Acct()
        self._self_ref = weakref.ref(self)
        _managers.add(self)

    # ------------------------------------------------------------------ regions
    def create_region(self, scope: str = "compute", *, strict: bool = False,
                      device: str = "cpu") -> RegionAllocator:
        """A new region of ``scope`` (regions of one scope share warm chunks); see :class:`RegionAllocator`.

        Example::

            alloc = RegionManager().create_region("compute")
            with alloc:
                x = alloc.zeros(1 << 20)
        """
        if not isinstance(scope, str) or not scope:
            raise RegionError(f"region: scope must be a non-empty string such as 'compute', got {scope!r}")
        if not isinstance(strict, bool):
            raise RegionError(f"region: strict must be True or False, got {strict!r}")
        kind, index = _parse_device(device)
        return RegionAllocator(self, scope, strict, kind, index)

    # ------------------------------------------------------------------ chunks
    def _arena(self, scope: str) -> ScopeArena:
        arena = self._arenas.get(scope)
        if arena is None:
            arena = self._arenas[scope] = ScopeArena(scope, self.max_retained_bytes, 0)
        return arena

    def _take_chunk(self, scope: str, size: int, dedicated: bool) -> tuple[Chunk, bool]:
        """A chunk of at least ``size`` bytes: warm from the scope's free list, else a new mapping."""
        with self._lock:
            self._drain()
            arena = self._arena(scope)
            chunk = arena.get(size, dedicated)
            retained = self._retained()
        _RETAINED.set(retained)
        if chunk is not None:
            return chunk, True
        try:
            chunk = Chunk(size, dedicated, arena)
        except OSError as exc:
            raise MemoryError(f"region {scope!r}: cannot map {size} bytes of anonymous memory ({exc})") from None
        _MAPPED.labels(_scope_label(scope)).inc()
        return chunk, False

    def _give_back(self, chunks: list[Chunk]) -> None:
        with self._lock:
            for arena in {id(c.arena): c.arena for c in chunks if c.arena is not None}.values():
                arena.exits += 1
            for c in chunks:
                c.arena.put(c)
            self._drain()
            retained = self._retained()
        _RETAINED.set(retained)

    def _drain(self) -> None:
        # under self._lock: chunks whose escape ended go back to their scope's free list
        while self._returned:
            chunk = self._returned.popleft()
            if chunk.arena is not None:
                chunk.arena.put(chunk)
            else:
                chunk.release()

    def _retained(self) -> int:
        return sum(a.retained for a in self._arenas.values())

    def _escape(self, chunk: Chunk, acct: Acct) -> None:
        """Hand ``chunk`` over to its views: our reference to the base array goes, a finalizer
        brings the chunk back when the last view dies."""
        base = chunk.arr
        chunk.arr = None
        acct.add(chunk.size)
        self._acct.add(chunk.size)
        _ESCAPED.labels().inc(chunk.size)
        fin = weakref.finalize(base, _views_gone, self._self_ref, chunk, acct)
        fin.atexit = False
        del base

    # ------------------------------------------------------------------ exit
    def _settle(self, region: RegionAllocator, frame: types.FrameType | None) -> list[tuple[str, int, int]]:
        """A region's exit: break garbage cycles, return idle chunks, escape the held ones.

        ``frame`` is the frame that ran the ``with`` (its locals are not escapes).
        Returns the escapes to report: ``(filename, lineno, nbytes)``.
        """
        members = region._objects
        region._objects = []
        tries = self._revive_pending(members)
        chunks = region._chunks
        region._chunks = []
        region._shared = None
        busy = [c for c in chunks if c.busy()]
        gpu_alive = [(ref, f, ln) for ref, f, ln in region._gpu_arrays if ref() is not None]
        region._gpu_arrays = []
        local_views: Any = {}
        cyclic = False
        in_locals: set[int] = set()
        if members or busy or gpu_alive:
            fl = locals_of(frame)
            if gpu_alive:
                in_locals = {id(v) for v in fl.values}
            verdict = analyse(members, fl, {id(c.arr) for c in busy}, {id(region), id(self)}, _BOOKKEEPING)
            fl.release()
            del members
            region._cleared += clear(verdict.garbage)
            verdict.garbage = []
            self._keep_pending(verdict.kept, tries)
            verdict.kept = []
            local_views, cyclic = verdict.local_views, verdict.cyclic_garbage
        held = [c for c in chunks if c.busy()]
        loose = [c for c in held if c.views() > local_views.get(id(c.arr), 0)]
        if loose and cyclic and gc.isenabled():
            # a cycle of objects the region does not know holds region memory: one young collection
            gc.collect(1)
            held = [c for c in held if c.busy()]
            loose = [c for c in held if c.views() > local_views.get(id(c.arr), 0)]
        self._give_back([c for c in chunks if not c.busy()])
        reports = []
        for c in loose:
            sites = [(f, ln) for ref, f, ln in c.sites if ref() is not None] or [(f, ln) for _, f, ln in c.sites]
            for f, ln in dict.fromkeys(sites):
                reports.append((f, ln, c.size))
        for c in held:
            c.sites.clear()
            self._escape(c, region._acct)
        # device arrays handed out by alloc.* and alive now that garbage objects are gone; a local
        # variable of the with block holding one is not an escape (as for host memory)
        reports += [(f, ln, 0) for ref, f, ln in gpu_alive if ref() is not None and id(ref()) not in in_locals]
        gpu, region._gpu = region._gpu, None
        self._check_gpu(gpu)
        self._publish(region)
        return reports

    def _revive_pending(self, members: list[Any]) -> dict[int, int]:
        """Registered objects kept at earlier exits join this analysis (their weakrefs made strong);
        returns how many more looks each one gets."""
        with self._lock:
            pending, self._pending = self._pending, []
        tries = {}
        for ref, left in pending:
            obj = ref()
            if obj is not None:
                members.append(obj)
                tries[id(obj)] = left
        return tries

    def _keep_pending(self, kept: list[Any], tries: dict[int, int]) -> None:
        new = []
        for obj in kept:
            left = tries.get(id(obj), _PENDING_TRIES) - 1
            if left <= 0:
                continue   # looked at often enough: the garbage collector's business now
            try:
                new.append((weakref.ref(obj), left))
            except TypeError:   # no weakref slot: cannot wait for it without keeping it alive
                continue
        with self._lock:
            self._pending.extend(new)
            if len(self._pending) > _MAX_PENDING:
                del self._pending[:len(self._pending) - _MAX_PENDING]

    def _check_gpu(self, gpu: Any = None) -> None:
        """Give back to the device the pools (the ending region's, and those kept earlier) that no
        array uses any more; keep the others."""
        held = []
        with self._lock:
            pools, self._gpu_held = self._gpu_held, []
        for pool in ([gpu] if gpu is not None else []) + pools:
            if pool.used_bytes() == 0:
                pool.release()
            else:
                pool.release()   # frees only the blocks nobody uses
                held.append(pool)
        with self._lock:
            self._gpu_held.extend(held)

    def _publish(self, region: RegionAllocator) -> None:
        label = _scope_label(region.scope)
        _REGIONS.labels(label).inc()
        if region._cleared:
            _CLEARED.labels(label).inc(region._cleared)
        if region._allocated:
            _BYTES.labels(label).inc(region._allocated)
        if region._reused:
            _REUSED.labels(label).inc(region._reused)
        peak = _PEAK.labels(label)
        if region._peak > peak.value:
            peak.set(region._peak)

    # ------------------------------------------------------------------ public
    def collect(self) -> int:
        """Return chunks whose escape has ended to their free lists and look at kept objects again
        (every region exit does this too); the number of objects cleared.

        Example::

            default_manager().collect()
        """
        members: list[Any] = []
        tries = self._revive_pending(members)
        verdict = analyse(members, FrameLocals(), set(), {id(self)})
        del members
        n = clear(verdict.garbage)
        verdict.garbage = []
        self._keep_pending(verdict.kept, tries)
        self._check_gpu()
        with self._lock:
            self._drain()
        return n

    def trim(self, scope: str | None = None) -> int:
        """Unmap the warm chunks kept for ``scope`` (all scopes by default); the bytes given back to
        the operating system. Call it after a phase that used much more memory than what follows.

        Example::

            default_manager().trim()
        """
        with self._lock:
            self._drain()
            arenas = list(self._arenas.values()) if scope is None else [self._arena(scope)]
            freed = sum(a.trim() for a in arenas)
            retained = self._retained()
        _RETAINED.set(retained)
        return freed

    def stats(self) -> dict[str, Any]:
        """Warm bytes and chunks per scope, escaped bytes, objects waiting to be looked at again.

        Example::

            default_manager().stats()["escaped_bytes"]
        """
        with self._lock:
            self._drain()
            scopes = {name: {"retained_bytes": a.retained, "free_chunks": len(a.free)}
                      for name, a in self._arenas.items()}
            pending = len(self._pending)
            held_gpu = len(self._gpu_held)
        escaped = self._acct.get()
        return {"scopes": scopes, "retained_bytes": sum(s["retained_bytes"] for s in scopes.values()),
                "escaped_bytes": escaped, "pending_objects": pending, "gpu_pools_held": held_gpu}


_managers: weakref.WeakSet[RegionManager] = weakref.WeakSet()
_BOOKKEEPING = (RegionAllocator, RegionManager, Chunk, ScopeArena)


_default: RegionManager | None = None
_default_lock = threading.Lock()


def default_manager() -> RegionManager:
    """The process-wide manager behind :func:`region`.

    Example::

        noodle.memory.default_manager().trim()
    """
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = RegionManager()
    return _default


def _after_fork_in_child() -> None:
    """A forked child keeps only the forking thread: a manager lock another thread held is new again."""
    for m in list(_managers):
        m._lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


__all__ = ["RegionManager", "default_manager"]
