"""The compiled callers of NumPy's inner loops (:mod:`noodle.backends.numpy_loops` resolves the
loops; generated kernels import these).

Why a module of its own: it imports Numba, which ``nd.jit`` must not do when a function is
decorated (a second of every fresh process's first call), and its functions must be top-level
for Numba's disk cache (defined inside a function, they were compiled again in every process).

Example::

    >>> import numpy as np
    >>> from noodle.backends.numpy_loops import strided_loop
    >>> h = strided_loop("sqrt", ("float64", "float64"))
    >>> x, out = np.array([4.0, 9.0]), np.empty(2)
    >>> call2(h.array(), x.ctypes.data, 8, out.ctypes.data, 8, 2, np.empty(8, np.int64))
    True
    >>> out
    array([2., 3.])
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from noodle.backends.numba_stamp import stamp_backend_caches

stamp_backend_caches()   # before this module's @njit(cache=True) (numba_stamp)


@intrinsic
def call_loop(typingctx: Any, fn: Any, ctx: Any, data: Any, dims: Any, strides: Any, aux: Any) -> Any:
    """``fn(ctx, data, dims, strides, aux)``, a NumPy strided loop at address ``fn`` (all six are
    integers: addresses); returns its status, 0 on success."""
    sig = types.int32(types.int64, types.int64, types.int64, types.int64, types.int64, types.int64)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        i8p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.IntType(32), [i8p] * 5)
        target = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(target, [builder.inttoptr(v, i8p) for v in args[1:]])

    return sig, codegen


@njit("boolean(int64[::1], int64, int64, int64, int64, int64, int64[::1])", nogil=True, cache=True)
def call2(loop: Any, a: int, sa: int, out: int, so: int, n: int, buf: Any) -> bool:  # pragma: no cover - compiled
    """A unary loop over ``n`` elements: ``a`` and ``out`` addresses, ``sa``/``so`` byte strides
    (0 broadcasts); ``buf``: five int64 of scratch for the loop's arguments."""
    buf[0] = a
    buf[1] = out
    buf[2] = n
    buf[3] = sa
    buf[4] = so
    p = buf.ctypes.data
    return call_loop(loop[0], loop[1], p, p + 16, p + 24, loop[2]) == 0


@njit("boolean(int64[::1], int64, int64, int64, int64, int64, int64, int64, int64[::1])", nogil=True, cache=True)
def call3(loop: Any, a: int, sa: int, b: int, sb: int, out: int, so: int, n: int,
          buf: Any) -> bool:  # pragma: no cover - compiled
    """A binary loop over ``n`` elements (as :func:`call2`; ``buf``: seven int64)."""
    buf[0] = a
    buf[1] = b
    buf[2] = out
    buf[3] = n
    buf[4] = sa
    buf[5] = sb
    buf[6] = so
    p = buf.ctypes.data
    return call_loop(loop[0], loop[1], p, p + 24, p + 32, loop[2]) == 0


@njit("boolean(int64[::1], int64, int64, int64, int64, int64, int64, int64, int64, int64, int64, int64, int64, "
      "int64[::1])", nogil=True, cache=True)
def call_matmul(loop: Any, a: int, b: int, out: int, m: int, n: int, p: int, is1_m: int, is1_n: int, is2_n: int,
                is2_p: int, os_m: int, os_p: int, buf: Any) -> bool:  # pragma: no cover - compiled
    """NumPy's ``matmul`` inner loop (a gufunc ``(m?,n),(n,p?)->(m?,p?)``) on one product: ``a``,
    ``b`` and ``out`` addresses, the core extents and the byte strides NumPy hands its loop (a
    missing dimension of a 1-D operand: extent 1, stride 0). The loop picks its BLAS call (gemv,
    dot, gemm, syrk) from exactly these, so the product is NumPy's own. ``buf``: sixteen int64."""
    buf[0] = a
    buf[1] = b
    buf[2] = out
    buf[3] = 1
    buf[4] = m
    buf[5] = n
    buf[6] = p
    buf[7] = 0
    buf[8] = 0
    buf[9] = 0
    buf[10] = is1_m
    buf[11] = is1_n
    buf[12] = is2_n
    buf[13] = is2_p
    buf[14] = os_m
    buf[15] = os_p
    q = buf.ctypes.data
    return call_loop(loop[0], loop[1], q, q + 24, q + 56, loop[2]) == 0


__all__ = ["call2", "call3", "call_loop", "call_matmul"]
