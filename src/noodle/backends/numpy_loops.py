"""NumPy's own ufunc inner loops, called from inside generated Numba kernels.

Why: a fused region with ``exp``/``log``/``sin``/... must give NumPy's bits, and Numba's libm
calls differ in the last bit (the rule of :mod:`noodle.backends.numba_plan`). So the kernels stop
at each such op and NumPy's ufunc runs on a block, called from Python: a few microseconds per
block, with the block loop itself in Python. NumPy exposes each ufunc's strided inner loop
(``ufunc._resolve_dtypes_and_context`` and ``ufunc._get_strided_loop``, added in NumPy 1.24 for
compilers that call its loops); a kernel calls that loop through its function pointer, so the
values are NumPy's by construction (the same C function, which picks its SIMD variant itself)
and the whole block loop stays in compiled code.

A loop is used only when NumPy resolves exactly the dtypes asked for (no cast) and says it needs
no Python API; otherwise :func:`strided_loop` returns None and the caller keeps its Python path.
The handles are process-local addresses: they are passed to compiled code as arguments at run
time, never baked into it, so Numba's disk cache stays valid across processes.

Example::

    >>> import numpy as np
    >>> h = strided_loop("exp", ("float64", "float64"))
    >>> x = np.linspace(-3, 3, 7)
    >>> out = np.empty_like(x)
    >>> call_unary(h, x, out)
    True
    >>> bool(np.array_equal(out, np.exp(x)))
    True
"""

from __future__ import annotations

import ctypes
import functools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

_CAPSULE = b"numpy_1.24_ufunc_call_info"
_lock = threading.Lock()


class _CallInfo(ctypes.Structure):
    # the layout NumPy documents for the "numpy_1.24_ufunc_call_info" capsule
    _fields_ = [("strided_loop", ctypes.c_void_p), ("context", ctypes.c_void_p), ("auxdata", ctypes.c_void_p),
                ("requires_pyapi", ctypes.c_bool), ("no_floatingpoint_errors", ctypes.c_bool)]


_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.restype = ctypes.c_void_p
_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


@dataclass(frozen=True)
class LoopHandle:
    """One resolved NumPy inner loop: the function, its context and auxdata (addresses), and the
    capsule that owns them (kept alive with the handle, for the life of the process)."""

    ufunc: str
    dtypes: tuple[str, ...]
    fn: int
    context: int
    auxdata: int
    capsule: Any

    def array(self) -> np.ndarray:
        """``[fn, context, auxdata]`` as int64: what a compiled kernel takes per loop."""
        return np.array([self.fn, self.context, self.auxdata], np.int64)


@functools.lru_cache(maxsize=256)
def strided_loop(ufunc: str, dtypes: tuple[str, ...]) -> LoopHandle | None:
    """NumPy's inner loop of ``np.<ufunc>`` for exactly ``dtypes`` (inputs then output), or None
    where this NumPy has no such API, would cast, or needs the Python API in the loop."""
    fn = getattr(np, ufunc, None)
    if not isinstance(fn, np.ufunc) or not hasattr(fn, "_get_strided_loop") or len(dtypes) != fn.nin + fn.nout:
        return None
    want = tuple(np.dtype(d) for d in dtypes)
    with _lock:
        try:
            got, capsule = fn._resolve_dtypes_and_context(want)
            if tuple(got) != want:
                return None
            fn._get_strided_loop(capsule)
            info = _CallInfo.from_address(_get_pointer(capsule, _CAPSULE))
        except (TypeError, ValueError, AttributeError, np.exceptions.DTypePromotionError):
            return None
    if not info.strided_loop or info.requires_pyapi:
        return None
    return LoopHandle(ufunc, tuple(d.name for d in want), int(info.strided_loop), int(info.context or 0),
                      int(info.auxdata or 0), capsule)


def resolve(loops: Any) -> tuple[list[LoopHandle], np.ndarray] | None:
    """The handles of a generated module's ``LOOPS`` (``(ufunc, dtypes)`` per ufunc step, in
    order) and their ``[fn, context, auxdata]`` triples as one int64 array, what its compiled
    driver takes; None when NumPy gives no loop for one of them (the Python driver runs). The
    caller keeps the handles: their capsules own what the addresses point to."""
    handles = [strided_loop(fn, tuple(dtypes)) for fn, dtypes in loops]
    if any(h is None for h in handles):
        return None
    arrays = [h.array() for h in handles]  # type: ignore[union-attr]
    return handles, (np.concatenate(arrays) if arrays else np.empty(0, np.int64))  # type: ignore[return-value]


def __getattr__(name: str) -> Any:
    """``call_loop``, ``call2`` and ``call3`` (:mod:`noodle.backends.numpy_loops_call`, which
    imports Numba: loaded on first use, not when ``nd.jit`` imports this module)."""
    if name in ("call_loop", "call2", "call3", "call_matmul"):
        from noodle.backends import numpy_loops_call  # noqa: PLC0415

        return getattr(numpy_loops_call, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def call_unary(handle: LoopHandle, x: np.ndarray, out: np.ndarray) -> bool:
    """Run a unary loop over contiguous 1-D ``x`` into ``out`` (a check of the loop from Python):
    the arrays must have the loop's own dtypes, or it would read them as another type."""
    if x.ndim != 1 or out.shape != x.shape or not (x.flags.c_contiguous and out.flags.c_contiguous):
        raise ValueError("call_unary takes two contiguous 1-D arrays of one length")
    if len(handle.dtypes) != 2 or (x.dtype.name, out.dtype.name) != handle.dtypes:
        raise TypeError(f"the {handle.ufunc} loop takes {' -> '.join(handle.dtypes)}, "
                        f"got {x.dtype.name} -> {out.dtype.name}")
    return bool(__getattr__("call2")(handle.array(), x.ctypes.data, x.itemsize, out.ctypes.data, out.itemsize,
                                     x.size, np.empty(8, np.int64)))


__all__ = ["LoopHandle", "call_unary", "resolve", "strided_loop"]   # and call2, call3, call_loop, call_matmul (built on first use)
