"""Memory management: buffer pools (and, in a later issue, region arenas).

Why pools: on this machine writing into *fresh* memory costs page faults that
double the time of a memory-bound kernel (ANCHORS.md: 75 ms vs 45 ms at 1e7
float64). Recycling freed buffers of the same size removes that cost.
"""

from noodle.memory.pool import BufferPool, Region, default_pool

__all__ = ["BufferPool", "Region", "default_pool"]
