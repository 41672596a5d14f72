"""The threads the Numba kernels share: one lock for parallel launches and a small block pool.

Why a module of its own: the fused kernels (:mod:`noodle.backends.numba_cpu`), the
defined-order sums (:mod:`noodle.backends.numba_reduce`) and the modular-arithmetic
kernels all launch ``parallel=True`` Numba code, and Numba's default ``workqueue``
threading layer aborts when two threads launch at once: they must take the same
lock, which therefore cannot live in any one of them.

A forked child inherits the lock's state and the pool object but not its threads:
both start afresh there.

Example::

    >>> lock = parallel_lock()
    >>> if lock.acquire(blocking=False):   # else run the serial variant
    ...     lock.release()
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from noodle.devices.detect import cpu_threads

_par_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _executor, _par_lock, _executor_lock
    _executor = None
    _par_lock = threading.Lock()
    _executor_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def parallel_lock() -> threading.Lock:
    """The lock every parallel Numba launch in this process holds (read it at each launch: a
    fork replaces it)."""
    return _par_lock


def workers() -> ThreadPoolExecutor:
    """The pool that runs the blocks of staged kernels (one thread fewer than the CPU threads:
    the caller's thread works too)."""
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=max(1, cpu_threads() - 1),
                                               thread_name_prefix="noodle-block")
    return _executor


__all__ = ["parallel_lock", "workers"]
