"""Numba parallel loops for the eager binary ops where they beat NumPy.

Why only these: measured on this kind of machine (2 cores), a parallel Numba
loop writing into a NumPy-allocated output is 1.5-2x faster than NumPy for
add/subtract/multiply/divide/maximum/minimum from 1e5 elements up, because the page faults of
the fresh output and the streaming are split over both cores. For exp, log,
sin... it is 2.5x *slower*: llvmlite from PyPI has no SVML, so Numba calls a
scalar libm per element while NumPy's ufuncs are SIMD-vectorized. So the
transcendental ops stay on NumPy. Results are bit-identical to NumPy's (IEEE
+ - * / with fastmath off and NumPy's error model).

Kernels are compiled in a background thread on first sight of an
(op, dtype) pair and cached on disk (``cache=True``); until one is ready the
op runs on NumPy, so no caller ever waits on a compile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("noodle.array")

from noodle.placement.decide import NUMBA_DTYPES as SUPPORTED_DTYPES  # noqa: E402
from noodle.placement.decide import NUMBA_MIN_SPEEDUP as MIN_SPEEDUP  # noqa: E402
from noodle.placement.decide import NUMBA_OPS as _OPS  # noqa: E402
from noodle.placement.decide import register_numba_probe  # noqa: E402

SUPPORTED_OPS = _OPS

_FLOAT_ONLY = {"divide"}

_kernels: dict[tuple[str, str], Callable[..., Any] | None] = {}
_pending: set[tuple[str, str]] = set()
_lock = threading.Lock()
_launch_lock = threading.Lock()
_failed = False


def _add(a, b, out):  # pragma: no cover - compiled by Numba
    for i in _prange(a.shape[0]):
        out[i] = a[i] + b[i]


def _subtract(a, b, out):  # pragma: no cover
    for i in _prange(a.shape[0]):
        out[i] = a[i] - b[i]


def _multiply(a, b, out):  # pragma: no cover
    for i in _prange(a.shape[0]):
        out[i] = a[i] * b[i]


def _divide(a, b, out):  # pragma: no cover
    for i in _prange(a.shape[0]):
        out[i] = a[i] / b[i]


def _maximum(a, b, out):  # pragma: no cover
    # NumPy's rule, signed zeros and NaN payloads included: a if a > b or a is NaN, else b.
    for i in _prange(a.shape[0]):
        x = a[i]
        y = b[i]
        out[i] = x if (x > y or x != x) else y


def _minimum(a, b, out):  # pragma: no cover
    for i in _prange(a.shape[0]):
        x = a[i]
        y = b[i]
        out[i] = x if (x < y or x != x) else y


_PY = {"add": _add, "subtract": _subtract, "multiply": _multiply, "divide": _divide,
       "maximum": _maximum, "minimum": _minimum}
_prange = range  # replaced by numba.prange when Numba compiles (it resolves the global at compile time)


def _compile(op: str, dtype: str) -> Callable[..., Any] | None:
    global _prange
    import numba

    _prange = numba.prange
    nbtype = getattr(numba, dtype)
    sig = numba.void(nbtype[::1], nbtype[::1], nbtype[::1])
    return numba.njit(sig, parallel=True, error_model="numpy", fastmath=False, nogil=True,
                      cache=True)(_PY[op])


def binary_kernel(op: str, dtype: str = "float64") -> Callable[..., Any] | None:
    """Compile (synchronously) and return the kernel, or None if unsupported or Numba fails."""
    global _failed
    key = (op, dtype)
    if key in _kernels:
        return _kernels[key]
    if op not in _OPS or dtype not in SUPPORTED_DTYPES or (op in _FLOAT_ONLY and "float" not in dtype):
        return None
    try:
        kernel = _compile(op, dtype)
    except Exception as exc:  # a missing or broken Numba degrades to NumPy, said once
        if not _failed:
            log.warning("Numba kernels unavailable (%s); eager ops use NumPy only", exc)
            _failed = True
        kernel = None
    with _lock:
        _kernels[key] = kernel
    return kernel


def ready_kernel(op: str, dtype: str) -> Callable[..., Any] | None:
    """The compiled kernel if ready; otherwise start compiling it in the background and return None."""
    kernel = _kernels.get((op, dtype))
    if kernel is not None or (op, dtype) in _kernels:
        return kernel
    with _lock:
        if (op, dtype) in _pending or (op, dtype) in _kernels:
            return None
        _pending.add((op, dtype))
    threading.Thread(target=binary_kernel, args=(op, dtype), name=f"noodle-compile-{op}-{dtype}",
                     daemon=True).start()
    return None


def launch(kernel: Callable[..., Any], a: Any, b: Any, out: Any) -> bool:
    """Run a parallel kernel unless another thread is already running one (then the caller uses NumPy).

    Numba's workqueue threading layer aborts on concurrent parallel launches, and on
    two cores a second concurrent launch would only contend; the NumPy path gives the
    same bits, so skipping is free of any change to the answer.
    """
    if not _launch_lock.acquire(blocking=False):
        return False
    try:
        kernel(a, b, out)
    finally:
        _launch_lock.release()
    return True


def warm(ops: tuple[str, ...] = _OPS, dtypes: tuple[str, ...] = ("float64", "float32")) -> None:
    """Compile the common kernels now (benchmarks and tests call this to measure steady state)."""
    for op in ops:
        for dtype in dtypes:
            binary_kernel(op, dtype)


_policy_lock = threading.Lock()
_policy_started = False


def measure_speedup() -> float | None:
    """Numba's parallel add vs NumPy at 1e6 f64, both writing fresh NumPy-allocated output."""
    import numpy as np

    from noodle.placement.calibrate import best_time

    kernel = binary_kernel("add", "float64")
    if kernel is None:
        return None
    a = np.random.rand(1_000_000)
    b = np.random.rand(1_000_000)

    def with_numba() -> None:
        out = np.empty_like(a)
        kernel(a, b, out)

    def with_numpy() -> None:
        np.add(a, b)

    # Alternate the two, several rounds, and compare the best of each: a busy moment on a shared
    # machine then hurts both alike instead of deciding the policy for good.
    best_np = best_nb = float("inf")
    for _ in range(5):
        best_np = min(best_np, best_time(with_numpy, repeat=3))
        best_nb = min(best_nb, best_time(with_numba, repeat=3))
    return best_np / best_nb


def _measure_and_record() -> None:
    from noodle.placement import calibrate

    cal = calibrate.load_or_measure()
    if cal.numba_binary_speedup is None:
        try:
            speedup = measure_speedup()
        except Exception as exc:  # calibration must never break the ops
            log.info("numba calibration failed (%s); elementwise ops stay on NumPy", exc)
            speedup = None
        calibrate.update_numba_speedup(0.0 if speedup is None else speedup)


def measured_speedup() -> float | None:
    """Numba's measured speedup over NumPy here, or None while that measurement is pending (starts nothing)."""
    from noodle.placement import calibrate

    cal = calibrate.current() or calibrate.load_cached()
    return None if cal is None else cal.numba_binary_speedup


def policy() -> bool | None:
    """Whether Numba's loop beats NumPy here: True/False once measured, None while measuring.

    The first call starts the measurement (CPU calibration plus one kernel compile,
    both cached on disk) in a background thread; until it is known, ops use NumPy.
    """
    global _policy_started
    speedup = measured_speedup()
    if speedup is not None:
        return speedup > MIN_SPEEDUP
    with _policy_lock:
        if _policy_started:
            return None
        _policy_started = True
    threading.Thread(target=_measure_and_record, name="noodle-calibrate", daemon=True).start()
    return None


def wait_for_policy(timeout: float = 120.0) -> bool | None:
    """Block until the policy is known (benchmarks and tests use this)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = policy()
        if result is not None:
            return result
        time.sleep(0.05)
    return None


def backend_now(op: str, dtype: str) -> tuple[str, str]:
    """(backend, why): what the eager fast path runs *now* for ``op`` on eligible ``dtype`` operands.

    For explain(): it must report what will actually run, and Numba runs only after the
    one-time background measurement shows it wins *and* the kernel has compiled in the
    background; until then the op runs on NumPy, and this says which of the two is pending.
    Nothing is started or compiled by asking.
    """
    speedup = measured_speedup()
    if speedup is None:
        when = "it is running in the background" if _policy_started else "it starts at the first such call"
        return "numpy", ("NumPy for now: the one-time background measurement of Numba against NumPy is "
                         f"pending ({when}); Numba's parallel loop is used only once it shows Numba wins here")
    if speedup <= MIN_SPEEDUP:
        return "numpy", (f"NumPy: Numba's parallel loop measured {speedup:.2f}x NumPy here, "
                         f"below the {MIN_SPEEDUP}x it must reach to be used")
    key = (op, dtype)
    if key in _kernels:
        if _kernels[key] is None:
            return "numpy", f"NumPy: the Numba kernel for {op} on {dtype} could not be compiled"
        return "numba", f"Numba's parallel loop (measured {speedup:.2f}x NumPy here)"
    if op in _FLOAT_ONLY and "float" not in dtype:
        return "numpy", f"NumPy: there is no Numba loop for {op} on {dtype}"
    when = "compiling in the background" if key in _pending else "compiled in the background from the first such call"
    return "numpy", (f"NumPy for now: Numba wins here ({speedup:.2f}x), but its kernel for {op} on {dtype} "
                     f"is pending ({when})")


register_numba_probe(backend_now)
