"""This process's resident memory, now and at its peak.

Why one place: region chunks are ``mmap`` memory that ``tracemalloc`` does not
see, so the regions' report, the per-task region stats sent back by workers
and ``noodle bench memory`` all read RSS, and should read it the same way.

Example::

    from noodle.metrics.process import peak_rss_bytes, rss_bytes
    print(rss_bytes(), peak_rss_bytes())
"""

from __future__ import annotations

import os
import sys

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """This process's resident set size now, in bytes; 0 where the system does not say."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        try:
            import psutil

            return int(psutil.Process().memory_info().rss)
        except Exception:  # no /proc and no psutil answer: say nothing rather than fail
            return 0


def peak_rss_bytes() -> int:
    """This process's highest resident set size so far, in bytes (at least the current one: the kernel
    updates its high-water mark lazily); 0 where the system does not say."""
    now = rss_bytes()
    try:
        import resource
    except ImportError:  # Windows
        return now
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(now, peak if sys.platform == "darwin" else peak * 1024)  # macOS: bytes; Linux: KiB


__all__ = ["peak_rss_bytes", "rss_bytes"]
