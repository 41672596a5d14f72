"""``RegionAllocator``: one region's allocations, registered objects and end.

The design (why chunks, what is an escape, which outputs land in a region) is
described in :mod:`noodle.memory.region`; the chunks are
:mod:`noodle.memory.arena`'s, the exit analysis :mod:`noodle.memory.reclaim`'s,
and the bookkeeping shared between regions (free lists, escaped chunks,
objects to look at again) belongs to :class:`~noodle.memory.manager.RegionManager`.

Example::

    with noodle.region() as alloc:        # a RegionAllocator
        x = alloc.zeros((1000, 1000))
"""

from __future__ import annotations

import math
import operator
import os
import sys
import threading
import types
import warnings
import weakref
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from noodle.errors import DTypeError, RegionError, RegionEscapeError, ShapeError
from noodle.memory import state
from noodle.memory.arena import ALIGN, HUGE_PAGE, PAGE, Chunk, round_up

if TYPE_CHECKING:
    from noodle.memory.manager import RegionManager

T = TypeVar("T")

_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_warned_sites: set[tuple[str, int]] = set()
_acct_lock = threading.Lock()   # held only around integer updates (finalizers take it from any thread)


class RegionEscapeWarning(RuntimeWarning):
    """Region memory was still referenced when its region ended (shown once per allocation site).

    Example::

        warnings.simplefilter("error", noodle.memory.RegionEscapeWarning)   # escapes fail loudly
    """


class Acct:
    """Escaped bytes of one region or manager; finalizers update it from any thread."""

    __slots__ = ("escaped",)

    def __init__(self) -> None:
        self.escaped = 0

    def add(self, n: int) -> None:
        with _acct_lock:
            self.escaped += n

    def get(self) -> int:
        with _acct_lock:
            return self.escaped


def _site() -> tuple[str, int]:
    """file:line of the first caller outside noodle (only the frame's filename and line: cheap)."""
    f: types.FrameType | None = sys._getframe(2)
    while f is not None and f.f_code.co_filename.startswith(_PKG):
        f = f.f_back
    if f is None:
        return ("<unknown>", 0)
    return (f.f_code.co_filename, f.f_lineno)


def _check_shape(shape: Any, what: str) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise ShapeError(f"{what}: shape must be an int or a tuple of ints, got {shape!r}") from None
    if any(s < 0 for s in dims):
        raise ShapeError(f"{what}: shape {dims} has a negative size; every size must be >= 0")
    return dims


def _check_dtype(dtype: Any, what: str) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise DTypeError(f"{what}: {dtype!r} is not a dtype ({exc}); expected a numeric dtype such as "
                         f"'float64', 'float32' or 'int64'") from None
    if dt.kind not in "biufc":
        raise DTypeError(f"{what}: dtype {dt} cannot live in region memory; expected bool, integer, float "
                         f"or complex (object arrays hold Python references, not data)")
    return dt


def _is_matrix_type(obj_type: Any) -> bool:
    # nd.Matrix, recognised by its one slot (the array package may not be imported from here)
    return isinstance(obj_type, type) and hasattr(obj_type, "_noodle_data")


class RegionAllocator:
    """One region: allocate in it, register objects with it, and end it (``with`` or :meth:`close`).

    Created by :func:`region` or :meth:`RegionManager.create_region`. Usable
    from the thread that created it only (others get
    :class:`~noodle.errors.RegionError`). While it is entered it is this
    thread's current region: eager op and jitted outputs land in it (see the
    module docstring for which). At the end, registered objects that nothing
    outside holds are broken apart, idle chunks go back warm to the scope, and
    escaped memory stays valid (reported once per site; ``strict=True``
    raises :class:`~noodle.errors.RegionEscapeError`).

    Example::

        with noodle.region("compute") as alloc:
            a = alloc.alloc(np.ndarray, shape=(1000, 1000), dtype="float32", fill=0)
            m = alloc.alloc(noodle.Matrix, shape=(1000, 1000))
            t = alloc.create(Tensor(a))       # any object: cleaned up at exit
            out = alloc.export(m)             # survives the region on the heap
    """

    def __init__(self, manager: RegionManager, scope: str, strict: bool, device: str, index: int = 0) -> None:
        self.manager = manager
        self.scope = scope
        self.strict = strict
        self.device = device if device == "cpu" else f"cuda:{index}"
        self.small_bytes = manager.small_bytes
        self.eager_min_bytes = manager.eager_min_bytes
        self._dedicated_min = manager.chunk_bytes // 2
        self._owner = threading.get_ident()
        self._state = "open"           # -> "active" (entered) -> "closed"
        self._chunks: list[Chunk] = []
        self._shared: Chunk | None = None
        self._objects: list[Any] = []
        self._registered: set[int] = set()
        self._gpu_arrays: list[tuple[weakref.ref, str, int]] = []
        self._acct = Acct()
        self._allocated = 0
        self._nchunks = 0
        self._held = 0
        self._peak = 0
        self._reused = 0
        self._heap = 0
        self._cleared = 0
        self._gpu: Any = None
        if device != "cpu":
            from noodle.memory.gpu_region import GpuRegionPool

            self._gpu = GpuRegionPool(index)

    # ------------------------------------------------------------------ lifecycle
    def _check(self, what: str) -> None:
        if threading.get_ident() != self._owner:
            raise RegionError(f"region {self.scope!r}: {what} from another thread; a region is used by the "
                              f"thread that created it. Create one region per thread (noodle.region() in "
                              f"each) and pass results between threads with alloc.export(x)")
        if self._state == "closed":
            raise RegionError(f"region {self.scope!r}: {what} after the region ended; create a new region "
                              f"(noodle.region()) for more allocations")

    def __enter__(self) -> RegionAllocator:
        self._check("entered")
        if self._state == "active":
            raise RegionError(f"region {self.scope!r} is already entered; a region is entered once "
                              f"(nest a new noodle.region() instead)")
        if self._gpu is not None:
            self._gpu.enter()
        state.push(self)
        self._state = "active"
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # the frame running the with statement calls __exit__ itself: its locals are not escapes
        self._end(sys._getframe(1), raising=exc_type is not None)

    def close(self) -> None:
        """End the region (what leaving its ``with`` block does); a second call does nothing.

        Example::

            alloc = noodle.memory.RegionManager().create_region()
            x = alloc.zeros(10)
            alloc.close()
        """
        self._end(sys._getframe(1), raising=False)

    def _end(self, frame: types.FrameType | None, raising: bool) -> None:
        if self._state == "closed":
            return
        self._check("ended")
        if self._state == "active":
            if not state.pop(self):
                raise RegionError(f"region {self.scope!r} ended while an inner region is still active; "
                                  f"end regions in the reverse order of entering them (use with blocks)")
            if self._gpu is not None:
                self._gpu.exit()
        self._state = "closed"
        reports = self.manager._settle(self, frame)
        del frame
        if not reports:
            return
        if self.strict and not raising:
            nbytes = sum(n for _, _, n in reports)
            where = ", ".join(f"{f}:{ln}" for f, ln, _ in reports)
            raise RegionEscapeError(
                f"region {self.scope!r} (strict=True): memory allocated at {where} is still referenced after "
                f"the region ended ({nbytes} bytes in the chunks involved). The data stays valid; copy what "
                f"you keep with alloc.export(x), or drop the reference inside the region")
        for f, ln, n in reports:
            if (f, ln) in _warned_sites:
                continue
            if len(_warned_sites) < 10_000:
                _warned_sites.add((f, ln))
            warnings.warn_explicit(
                f"region {self.scope!r}: memory allocated at {f}:{ln} is still referenced after the region ended "
                f"({n} bytes in its chunk); it stays valid and is reused once the last reference is dropped. "
                f"Copy what you keep with alloc.export(x) to silence this",
                RegionEscapeWarning, f, ln)

    # ------------------------------------------------------------------ allocation
    def take(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialized host array in region memory (on the heap below ``small_bytes``).

        For noodle's eager ops and backends (no argument checks: ``shape`` is a
        tuple of ints >= 0 and ``dtype`` a numeric ``np.dtype``); users call
        :meth:`empty`.

        Example::

            out = alloc.take((1 << 20,), np.dtype("float64"))
        """
        if threading.get_ident() != self._owner or self._state == "closed":
            self._check("allocated")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < self.small_bytes:
            self._heap += 1
            return np.empty(shape, dtype)
        return self._carve(shape, dtype, nbytes)

    def _take_large(self, shape: tuple[int, ...], dtype: np.dtype, nbytes: int) -> np.ndarray:
        """:meth:`take` for the eager ops and backends, which checked ``nbytes >= eager_min_bytes``."""
        if threading.get_ident() != self._owner or self._state == "closed":
            self._check("allocated")
        return self._carve(shape, dtype, nbytes)

    def _carve(self, shape: tuple[int, ...], dt: np.dtype, nbytes: int) -> np.ndarray:
        need = round_up(nbytes, ALIGN)
        if need > self._dedicated_min:
            chunk = self._dedicated(need)
            off = 0
            chunk.offset = need
        else:
            chunk = self._shared
            if chunk is None:
                off = -1
            else:
                if chunk.offset and not chunk.busy():
                    # everything handed out from it died: start over, on bytes still hot in the cache
                    chunk.reset()
                off = chunk.bump(need)
            if off < 0:
                chunk = self._next_shared()
                off = chunk.bump(need)
        view = chunk.view(off, nbytes, shape, dt)
        chunk.sites.append((weakref.ref(view), *_site()))
        self._allocated += nbytes
        return view

    def _dedicated(self, need: int) -> Chunk:
        limit = need + max(need // 4, HUGE_PAGE)
        for c in self._chunks:
            if c.dedicated and need <= c.size <= limit and not c.busy():
                c.reset()
                self._reused += 1
                return c
        return self._new_chunk(round_up(need, PAGE), True)

    def _next_shared(self) -> Chunk:
        for c in self._chunks:
            if not c.dedicated and not c.busy():
                c.reset()
                self._reused += 1
                self._shared = c
                return c
        self._shared = self._new_chunk(self.manager.chunk_bytes, False)
        return self._shared

    def _new_chunk(self, size: int, dedicated: bool) -> Chunk:
        chunk, warm = self.manager._take_chunk(self.scope, size, dedicated)
        if warm:
            self._reused += 1
        self._chunks.append(chunk)
        self._nchunks += 1
        self._held += chunk.size
        if self._held > self._peak:
            self._peak = self._held
        return chunk

    def _device_empty(self, shape: tuple[int, ...], dt: np.dtype) -> Any:
        if self._gpu is None:
            return self.take(shape, dt)
        self._check("allocated")
        x = self._gpu.empty(shape, dt)
        self._track_gpu(x)
        return x

    def _track_gpu(self, x: Any) -> None:
        try:
            self._gpu_arrays.append((weakref.ref(x), *_site()))
        except TypeError:
            pass

    def empty(self, shape: Any, dtype: Any = "float64") -> Any:
        """An uninitialized array in the region (a CuPy array for ``device='cuda'``).

        Example::

            x = alloc.empty((1024, 1024), "float32")
        """
        self._check("allocated")
        return self._device_empty(_check_shape(shape, "empty"), _check_dtype(dtype, "empty"))

    def zeros(self, shape: Any, dtype: Any = "float64") -> Any:
        """An array of zeros in the region.

        Example::

            x = alloc.zeros(1 << 20)
        """
        x = self.empty(shape, dtype)
        x.fill(0)
        return x

    def full(self, shape: Any, fill_value: Any, dtype: Any = None) -> Any:
        """An array filled with ``fill_value`` (its dtype by default, as ``np.full``).

        Example::

            x = alloc.full((3, 3), 7.0)
        """
        if dtype is None:
            try:
                dtype = np.asarray(fill_value).dtype
            except (TypeError, ValueError) as exc:
                raise DTypeError(f"full: cannot use {fill_value!r} as a fill value ({exc})") from None
        x = self.empty(shape, dtype)
        _fill(x, fill_value, "full")
        return x

    def alloc(self, obj_type: Any, **kwargs: Any) -> Any:
        """Create an ``obj_type`` in the region: ``np.ndarray`` or ``noodle.Matrix``.

        Keyword arguments: ``shape`` (required), ``dtype`` (default float64),
        ``fill`` (default 0; None leaves the memory uninitialized). A Matrix is
        registered with the region. Your own classes: build them from
        :meth:`empty` arrays and register them with :meth:`create`.

        Example::

            m = alloc.alloc(noodle.Matrix, shape=(1000, 1000), dtype="float32")
            a = alloc.alloc(np.ndarray, shape=(10,), fill=1.5)
        """
        self._check("allocated")
        unknown = sorted(set(kwargs) - {"shape", "dtype", "fill"})
        if unknown:
            raise RegionError(f"alloc: unknown argument(s) {', '.join(unknown)}; expected shape=, dtype= and fill=")
        if "shape" not in kwargs:
            raise ShapeError("alloc: shape= is required, e.g. alloc.alloc(np.ndarray, shape=(1000, 1000))")
        is_matrix = _is_matrix_type(obj_type)
        if not is_matrix and obj_type not in (np.ndarray, "ndarray", "array") and not (
                self._gpu is not None and getattr(obj_type, "__module__", "").startswith("cupy")):
            raise RegionError(
                f"alloc: cannot create {getattr(obj_type, '__name__', obj_type)!r} in a region; expected "
                f"numpy.ndarray or noodle.Matrix. For your own objects, build them from alloc.empty(...) "
                f"arrays and register them with alloc.create(obj)")
        x = self.empty(kwargs["shape"], kwargs.get("dtype", "float64"))
        fill = kwargs.get("fill", 0)
        if fill is not None:
            _fill(x, fill, "alloc")
        return obj_type(x, allocator=self) if is_matrix else x

    def asarray(self, data: Any, dtype: Any = None) -> Any:
        """``data`` in region memory: itself if it already is, else a copy (what ``Matrix(...,
        allocator=alloc)`` stores).

        Example::

            x = alloc.asarray(np.arange(1_000_000.0))
        """
        self._check("allocated")
        if self._gpu is not None:
            dt = None if dtype is None else _check_dtype(dtype, "asarray")
            x = self._gpu.asarray(data, dt)
            _check_dtype(x.dtype, "asarray")
            self._track_gpu(x)
            return x
        if hasattr(data, "__cuda_array_interface__"):
            raise RegionError(f"asarray: the data lives on a GPU but region {self.scope!r} allocates on the "
                              f"CPU; use noodle.region(device='cuda'), or bring it to the host first")
        if type(data) is np.ndarray and (dtype is None or np.dtype(dtype) == data.dtype) and self.owns(data):
            return data
        try:
            src = np.asarray(data, dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise DTypeError(f"asarray: cannot make a numeric array from {type(data).__name__} ({exc})") from None
        out = self.take(src.shape, _check_dtype(src.dtype, "asarray"))
        np.copyto(out, src)
        return out

    def create(self, obj: T) -> T:
        """Register ``obj`` (any math object): at exit, if nothing outside the region's objects
        holds it, its ``__dict__`` and slots are cleared so that its cycles die at once; if
        something does, it is left intact (and looked at again at later exits, when a loop has
        rebound the variables that held it). Returns ``obj``.

        The region holds ``obj`` until it ends: register the objects that form cycles, not every
        short-lived temporary of a long region.

        Example::

            t = alloc.create(Tensor(alloc.zeros((1000, 1000))))
        """
        self._check("registered an object")
        if obj is None or isinstance(obj, (type, types.ModuleType, types.FunctionType, int, float, str, bytes)):
            raise RegionError(f"create: {type(obj).__name__} objects are not math objects a region can own; "
                              f"register instances holding your data (e.g. alloc.create(Tensor(...)))")
        k = id(obj)
        if k not in self._registered:
            self._registered.add(k)
            self._objects.append(obj)
        return obj

    # ------------------------------------------------------------------ leaving
    def export(self, x: Any) -> Any:
        """A copy of ``x`` (an array or a Matrix) on the heap, outside any region, to keep.

        Example::

            result = alloc.export(m)       # valid and region-free after the with block
        """
        if hasattr(type(x), "_noodle_data"):
            try:
                data = x._noodle_data
            except AttributeError:
                raise RegionError("export: this Matrix was cleared when its region ended; export it "
                                  "inside the region") from None
            return type(x)(self.export(data))
        if isinstance(x, np.ndarray):
            return np.array(x, copy=True, order="K")
        if hasattr(x, "__cuda_array_interface__"):
            if self._gpu is not None:
                return self._gpu.export(x)
            return x.copy()
        raise RegionError(f"export: cannot copy a {type(x).__name__} out of a region; expected a NumPy or "
                          f"CuPy array or a noodle.Matrix (copy your own objects' arrays one by one)")

    def owns(self, x: Any) -> bool:
        """Whether ``x`` (an array or a Matrix) lives in this region's memory (while it is open).

        Example::

            assert alloc.owns(nd.add(a, b))
        """
        if hasattr(type(x), "_noodle_data"):
            x = getattr(x, "_noodle_data", None)
        if type(x) is not np.ndarray:
            return any(ref() is x for ref, _, _ in self._gpu_arrays)
        base = x.base
        return base is not None and any(c.arr is base for c in self._chunks)

    def stats(self) -> dict[str, Any]:
        """Counts of this region, independent of RSS.

        ``bytes_allocated``: bytes handed out in region memory; ``peak``: most
        chunk bytes held at once; ``chunks``: chunks used; ``chunks_reused``:
        of those, or of their reuses, how many were warm; ``escaped_bytes``:
        bytes of its chunks still referenced after it ended (drops as they
        are released); ``objects_cleared``: registered objects broken apart
        at exit; ``heap_allocations``: requests below ``small_bytes``.

        Example::

            alloc.stats()["chunks_reused"]
        """
        escaped = self._acct.get()
        return {"bytes_allocated": self._allocated, "peak": self._peak, "chunks": self._nchunks, "chunks_reused": self._reused, "escaped_bytes": escaped,
                "objects_cleared": self._cleared, "heap_allocations": self._heap, "state": self._state,
                "scope": self.scope, "device": self.device}

    def __repr__(self) -> str:
        return f"RegionAllocator(scope={self.scope!r}, device={self.device!r}, state={self._state!r})"


def _fill(x: Any, value: Any, what: str) -> None:
    try:
        x.fill(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DTypeError(f"{what}: cannot fill a {x.dtype} array with {value!r} ({exc})") from None


def _after_fork_in_child() -> None:
    global _acct_lock
    _acct_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


__all__ = ["Acct", "RegionAllocator", "RegionEscapeWarning"]
