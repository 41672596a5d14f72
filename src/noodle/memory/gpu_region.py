"""Device memory of a ``device='cuda'`` region: a CuPy memory pool of its own.

Why a pool per region: CuPy's default pool keeps every freed block for the
life of the process, so a burst of temporaries leaves the device's memory
held. A region routes its thread's CuPy allocations to its own
``cupy.cuda.MemoryPool`` (``cupy.cuda.using_allocator``) while it is active,
and at exit gives the pool's blocks back to the device with
``free_all_blocks``. A block still used by an array that outlived the region
is never freed (that would leave it dangling): the pool is kept alive, by the
:class:`~noodle.memory.region.RegionManager`, until its ``used_bytes()`` drops
to zero.

CuPy is imported only when a region with ``device='cuda'`` is created.

Example::

    with noodle.region(device="cuda") as r:
        x = r.zeros((4096, 4096))          # a cupy array in the region's pool
        y = x @ x                          # CuPy's output comes from the pool too
    # the pool's free blocks are back on the device here
"""

from __future__ import annotations

import importlib
from typing import Any

from noodle.errors import DeviceUnavailableError


class GpuRegionPool:
    """One region's CuPy memory pool on device ``index``."""

    def __init__(self, index: int) -> None:
        try:
            cupy = importlib.import_module("cupy")
        except ImportError as exc:
            raise DeviceUnavailableError(
                f"region(device='cuda'): CuPy cannot be imported ({exc}); install noodle's GPU extra "
                f"(CuPy for your CUDA version) or use device='cpu'") from None
        try:
            count = int(cupy.cuda.runtime.getDeviceCount())
        except Exception as exc:   # no driver, no device: CuPy raises its own runtime errors
            raise DeviceUnavailableError(
                f"region(device='cuda'): no usable CUDA device ({type(exc).__name__}: {exc}); "
                f"use device='cpu'") from None
        if not 0 <= index < count:
            raise DeviceUnavailableError(
                f"region(device='cuda:{index}'): this machine has {count} CUDA device(s), numbered "
                f"0..{count - 1}; pick one of those or use device='cpu'")
        self.cupy = cupy
        self.index = index
        with cupy.cuda.Device(index):
            self.pool = cupy.cuda.MemoryPool()
        self._ctx: Any = None

    def enter(self) -> None:
        """Route this thread's CuPy allocations to the pool (until :meth:`exit`)."""
        self._ctx = self.cupy.cuda.using_allocator(self.pool.malloc)
        self._ctx.__enter__()

    def exit(self) -> None:
        """Restore the thread's previous allocator."""
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            ctx.__exit__(None, None, None)

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """An uninitialized CuPy array in the pool."""
        cp = self.cupy
        with cp.cuda.Device(self.index), cp.cuda.using_allocator(self.pool.malloc):
            return cp.empty(shape, dtype)

    def asarray(self, data: Any, dtype: Any = None) -> Any:
        """A copy of ``data`` (host or device) in the pool."""
        cp = self.cupy
        with cp.cuda.Device(self.index), cp.cuda.using_allocator(self.pool.malloc):
            return cp.array(data, dtype=dtype, copy=True)

    def export(self, x: Any) -> Any:
        """A copy of ``x`` in CuPy's default pool (outside any region)."""
        cp = self.cupy
        with cp.cuda.Device(self.index), cp.cuda.using_allocator(cp.get_default_memory_pool().malloc):
            return x.copy()

    def used_bytes(self) -> int:
        """Bytes of the pool that arrays still use."""
        return int(self.pool.used_bytes())

    def release(self) -> None:
        """Give the pool's unused blocks back to the device."""
        self.pool.free_all_blocks()


def is_gpu_array(x: Any) -> bool:
    """A CuPy (or other CUDA array interface) array, without importing CuPy."""
    return hasattr(x, "__cuda_array_interface__")


__all__ = ["GpuRegionPool", "is_gpu_array"]
