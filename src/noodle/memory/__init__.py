"""Memory management: buffer pools and region arenas.

Why pools: on this machine writing into *fresh* memory costs page faults that
double the time of a memory-bound kernel (ANCHORS.md: 75 ms vs 45 ms at 1e7
float64). Recycling freed buffers of the same size removes that cost.

Why regions (:mod:`noodle.memory.region`): objects and arrays that die
together are allocated together, in warm chunks that go back to a per-scope
free list at the region's end, where registered objects in reference cycles
are broken apart without waiting for the garbage collector::

    with noodle.region("compute") as alloc:
        x = alloc.zeros((1000, 1000))

(``noodle.memory.region`` here is that function; the module is
``importlib.import_module("noodle.memory.region")``.)
"""

from noodle.memory.pool import BufferPool, Region, default_pool
from noodle.memory.region import (
    RegionAllocator,
    RegionEscapeWarning,
    RegionManager,
    default_manager,
    region,
)
from noodle.memory.region import (
    current as current_region,
)

__all__ = [
    "BufferPool", "Region", "RegionAllocator", "RegionEscapeWarning", "RegionManager", "current_region",
    "default_manager", "default_pool", "region",
]
