"""The threads the Numba kernels share: one lock for parallel launches, a small block pool, and
the size below which a kernel runs serially.

Why a module of its own: the fused kernels (:mod:`noodle.backends.numba_cpu`), the
defined-order sums (:mod:`noodle.backends.numba_reduce`) and the modular-arithmetic
kernels all launch ``parallel=True`` Numba code, and Numba's default ``workqueue``
threading layer aborts when two threads launch at once: they must take the same
lock, which therefore cannot live in any one of them.

Below :func:`parallel_min` elements a kernel runs on the caller's thread with no thread launch:
starting Numba's workers (or the block pool) costs tens of microseconds on a busy machine,
more than the work of 1e5 elements. The serial and parallel variants give the same bits (the
chunking of reductions does not depend on the thread count), so the threshold is a speed
setting only: ``NOODLE_NUMBA_PARALLEL_MIN`` (elements), or :func:`set_parallel_min`.
The threshold counts plain elements: an element of a region with math-library ops
(``exp``, ``tanh``, ``sin``...) costs 10-50x an add, so such a region counts each element
:func:`work_weight` times and goes parallel at a tenth of the size or less (the fused
chain and GELU at 1e5 elements ran 0.87-0.94x NumPy serially: NumPy's own ``exp``/``tanh``
loops are vectorized, Numba's calls are one element at a time).

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
from typing import Any

from noodle.devices.detect import cpu_threads
from noodle.errors import ConfigError
from noodle.ir.ops import OPS

#: on this shared 2-core machine (sum((a - b) ** 2) and the fused chain, float64, best of 9x20
#: calls, serial vs parallel alternated twice): at 1e5 elements the serial kernel was as fast or
#: faster (sum: 0.99/1.22x NumPy serial, 0.86/0.47x parallel); at 3e5 the two were within the
#: run-to-run noise, which was large (the same case read 0.78x and 3.10x): not a calibrated value
DEFAULT_PARALLEL_MIN = 250_000
_parallel_min: int | None = None

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


def parallel_min() -> int:
    """Elements from which a kernel launches threads (see the module docstring); kernels read it
    when they are built."""
    if _parallel_min is not None:
        return _parallel_min
    raw = os.environ.get("NOODLE_NUMBA_PARALLEL_MIN", "").strip()
    if not raw:
        return DEFAULT_PARALLEL_MIN
    try:
        value = int(float(raw))
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError("NOODLE_NUMBA_PARALLEL_MIN", raw, "a count of elements, an integer >= 0 such as 250000 "
                          "(0: always parallel)", "the environment")
    return value


#: what one math-library op adds to an element's weight (an add is 1): 1e5 elements of one
#: ``exp`` take 0.3-1.2 ms serially here, far above a thread launch, while 1e5 adds take ~50 µs
LIBM_WEIGHT = 8


def work_weight(spec: Any) -> int:
    """How many plain elements one element of ``spec``'s region counts as against
    :func:`parallel_min`: 1, plus :data:`LIBM_WEIGHT` per math-library op in its body."""
    return 1 + LIBM_WEIGHT * sum(1 for ins in getattr(spec, "body", ()) if OPS[ins.op].libm)


def set_parallel_min(value: int | None) -> None:
    """Set the serial threshold for kernels built from now on (None: back to the setting).

    Example::

        set_parallel_min(0)        # every kernel built from now on launches threads
        set_parallel_min(None)
    """
    global _parallel_min
    if value is not None and (not isinstance(value, int) or value < 0):
        raise ConfigError("parallel_min", value, "an integer >= 0 (elements), or None for the setting")
    _parallel_min = value


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


__all__ = ["DEFAULT_PARALLEL_MIN", "LIBM_WEIGHT", "parallel_lock", "parallel_min", "set_parallel_min", "work_weight",
           "workers"]
