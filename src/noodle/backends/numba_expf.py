"""NumPy's float32 ``exp`` as inline Numba code, used only where it gives NumPy's bits here.

Why: a kernel with ``exp`` otherwise stops at it, stores its operand, and calls NumPy's SIMD
loop on the block (Numba's own ``exp`` is libm's, which differs from NumPy's in the last bit).
NumPy's float32 ``exp`` on x86 with AVX2/FMA3 or AVX-512F is one short algorithm
(``simd_exp_FLOAT`` in NumPy's ``loops_exponent_log.dispatch.c.src``): Cody-Waite range
reduction with fused multiply-adds, a degree 5/2 rational approximation, and scaling by
``2**k``, with fixed results for NaN (the canonical quiet NaN), ``x >= 88.7228...`` (``inf``)
and ``x <= -103.972...`` (``0``). :func:`expf_numpy` emits the same operations in the same
order (``llvm.fma``, an IEEE division, ``k`` rounded by ``llvm.rint`` where NumPy adds and
subtracts 0x1.8p23, and ``2**k`` applied by ``llvm.ldexp``, which AVX-512
lowers to ``vscalefps`` itself, or else as two exact power-of-two products, so that a subnormal
result is rounded once, as ``vscalefps`` rounds it), and LLVM vectorizes the loops it sits in.
A row softmax then computes ``exp`` in the pass that reads the row.

Trust: a different NumPy build or CPU may take another path (the scalar libm loop on a machine
without AVX2, SVML in some future build). :func:`verified` compares this code with ``np.exp``
on four million float32 bit patterns spread over the whole range, plus the edges (zeros,
subnormals, infinities, NaNs, the overflow and underflow limits and their neighbours), once
per process; generated kernels use :func:`expf_numpy` only when that check passes, and call
NumPy's loop otherwise. On this machine every one of the 2**32 float32 inputs gives NumPy's
bits (``tests/jit/test_expf.py`` checks all of them).

Example::

    >>> import numpy as np
    >>> from noodle.backends.numba_expf import exp_array, verified
    >>> x = np.linspace(-5, 5, 11, dtype=np.float32)
    >>> bool(not verified() or (exp_array(x).view(np.uint32) == np.exp(x).view(np.uint32)).all())
    True
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from noodle.backends.numba_stamp import stamp_backend_caches
from noodle.config import env_flag

stamp_backend_caches()   # before this module's @njit(cache=True) (numba_stamp)


def _f32(bits: int) -> float:
    return float(np.uint32(bits).view(np.float32))


#: NumPy's constants (``npy_simd_data.h``, ``npy_math.h``) as float32 bit patterns
_LOG2E = _f32(0x3FB8AA3B)
_C1 = _f32(0xBF317200)           # -ln 2, high part (Cody-Waite)
_C2 = _f32(0xB5BFBE8E)           # -ln 2, low part
_P = [_f32(b) for b in (0x3F800000, 0x3F39CBD5, 0x3E7D4C58, 0x3D517D8C, 0x3BDD7159, 0x3A053DD8)]
_Q = [_f32(b) for b in (0x3F800000, 0xBE8C6857, 0x3CB0E832)]
XMAX = _f32(0x42B17218)          # 88.72283935546875: from here on, inf
XMIN = _f32(0xC2CFF1B5)          # -103.97208404541015625: up to here, 0
_NAN_BITS = 0x7FC00000


def _target_has_avx512f() -> bool:
    """Whether the code Numba generates here may use AVX-512F (its target: the host's features
    unless NUMBA_CPU_NAME/NUMBA_CPU_FEATURES say otherwise)."""
    from llvmlite import binding as llvm  # noqa: PLC0415
    from numba.core import config  # noqa: PLC0415

    if llvm.llvm_version_info < (17,):      # llvm.ldexp is LLVM 17's
        return False
    features = config.CPU_FEATURES
    if features is None:
        if config.CPU_NAME not in (None, "host"):
            return False
        features = llvm.get_host_cpu_features().flatten()
    return "+avx512f" in features.split(",")


#: scale by 2**k with one vscalefps (NumPy's instruction) rather than two products: a quarter
#: fewer cycles per element, same bits (both round once)
_SCALEF = _target_has_avx512f()


def _declare(builder: Any, name: str, ret: Any, params: list[Any]) -> Any:
    """The LLVM intrinsic ``name``, declared once per module."""
    return builder.module.globals.get(name) or ir.Function(builder.module, ir.FunctionType(ret, params), name)


def _emit(builder: Any, x_in: Any) -> Any:
    """The LLVM of NumPy's ``simd_exp_FLOAT`` for one float32 value (see the module docstring)."""
    f32, i32 = ir.FloatType(), ir.IntType(32)

    def c(v: float) -> Any:
        return ir.Constant(f32, v)

    def ci(v: int) -> Any:
        return ir.Constant(i32, v)

    nan = builder.fcmp_unordered("uno", x_in, x_in)
    # (ordered compares are false for NaN: NumPy zeroes a NaN first, with the same masks)
    over = builder.fcmp_ordered(">=", x_in, c(XMAX))
    under = builder.fcmp_ordered("<=", x_in, c(XMIN))
    x = builder.select(builder.or_(builder.or_(nan, under), over), c(0.0), x_in)
    # k = rint(x * log2(e)). NumPy rounds the product by the magic-number trick (+ 0x1.8p23,
    # - 0x1.8p23), which is round-half-even for |v| < 2**22 (here |v| < 150), as llvm.rint is;
    # the one difference, a -0 product giving k = +0, does not change a bit of the result
    # (k multiplies only constants, and poly(+0) == poly(-0)). One rounding op instead of two adds.
    k = builder.call(_declare(builder, "llvm.rint.f32", f32, [f32]), [builder.fmul(x, c(_LOG2E))])
    x = builder.fma(k, c(_C1), x)
    x = builder.fma(k, c(_C2), x)
    # NumPy's third Cody-Waite step, fma(k, c3, x) with c3 = 0, is left out: it returns x except
    # that a -0 becomes +0, and poly(+0) == poly(-0). One fma fewer per element.
    num = builder.fma(c(_P[5]), x, c(_P[4]))
    for p in (_P[3], _P[2], _P[1], _P[0]):
        num = builder.fma(num, x, c(p))
    den = builder.fma(c(_Q[2]), x, c(_Q[1]))
    den = builder.fma(den, x, c(_Q[0]))
    poly = builder.fdiv(num, den)
    ki = builder.fptosi(k, i32)
    if _SCALEF:
        # poly * 2**k rounded once: llvm.ldexp, which AVX-512 lowers to vscalefps as NumPy calls it
        res = builder.call(_declare(builder, "llvm.ldexp.f32.i32", f32, [f32, i32]), [poly, ki])
    else:
        # without AVX-512, ldexp is a libm call per element: 2**a * 2**b instead, a in [-125, 127]
        # (exact: the product stays normal), then b in [-25, 1] (one rounding, only where the
        # result is subnormal)
        a = builder.select(builder.icmp_signed("<", ki, ci(-125)), ci(-125), ki)
        a = builder.select(builder.icmp_signed(">", a, ci(127)), ci(127), a)
        b = builder.sub(ki, a)
        pow_a = builder.bitcast(builder.shl(builder.add(a, ci(127)), ci(23)), f32)
        pow_b = builder.bitcast(builder.shl(builder.add(b, ci(127)), ci(23)), f32)
        res = builder.fmul(builder.fmul(poly, pow_a), pow_b)
    res = builder.select(nan, builder.bitcast(ci(_NAN_BITS), f32), res)
    res = builder.select(over, c(float("inf")), res)
    return builder.select(under, c(0.0), res)


@intrinsic
def expf_numpy(typingctx: Any, x: Any) -> Any:  # pragma: no cover - compiled
    """``np.exp`` of one float32 value by NumPy's SIMD algorithm (inline, vectorizable); use it
    only where :func:`verified` is True."""
    if x != types.float32:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return _emit(builder, args[0])

    return types.float32(types.float32), codegen


@njit("void(float32[::1], float32[::1])", cache=True, error_model="numpy", fastmath=False, nogil=True)
def _exp_into(src: Any, dst: Any) -> None:   # pragma: no cover - compiled
    for i in range(src.shape[0]):
        dst[i] = expf_numpy(src[i])


def exp_array(x: np.ndarray) -> np.ndarray:
    """:func:`expf_numpy` over a float32 array (a new contiguous array of the same shape)."""
    src = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.empty_like(src)
    _exp_into(src, out)
    return out.reshape(np.shape(x))


def check_inputs() -> np.ndarray:
    """The inputs :func:`verified` compares: bit patterns at a stride of 1021 over all 2**32,
    and the edges where a different path would show first."""
    spread = np.arange(0, 1 << 32, 1021, dtype=np.uint64).astype(np.uint32)
    edges = [0, 1, 2, 0x007FFFFF, 0x00800000, 0x7F7FFFFF, 0x7F800000, 0x7F800001, 0x7FC00000, 0x7FFFFFFF,
             0x3F800000, 0x3F000000, 0x33800000, 0x32800000]
    for limit in (XMAX, XMIN):
        b = int(np.float32(limit).view(np.uint32))
        edges += range(b - 64, b + 65)
    # where k reaches the subnormal range and where it crosses 2**128
    for v in (-87.3, -87.0, -88.0, -100.0, -103.9, 88.3, 88.5, 88.7):
        b = int(np.float32(v).view(np.uint32))
        edges += range(b - 256, b + 257)
    base = np.array(edges, dtype=np.uint32)
    return np.concatenate([spread, base, base | np.uint32(0x80000000)]).view(np.float32)


def _enabled() -> bool:
    return env_flag("NOODLE_INLINE_EXPF", "1 (NumPy's float32 exp inline where it checks out, the default) "
                    "or 0 (always NumPy's loop)")


_verdict: bool | None = None
_lock = threading.Lock()


def verified() -> bool:
    """Whether :func:`expf_numpy` gives ``np.exp``'s bits on this machine's NumPy (checked once
    per process on :func:`check_inputs`); ``NOODLE_INLINE_EXPF=0`` turns the inline code off."""
    global _verdict
    if _verdict is None:
        with _lock:
            if _verdict is None:
                if not _enabled():
                    _verdict = False
                else:
                    x = check_inputs()
                    with np.errstate(all="ignore"):
                        want = np.exp(x)
                    _verdict = bool((exp_array(x).view(np.uint32) == want.view(np.uint32)).all())
    return _verdict


def inline_exp(spec: Any, ins: Any) -> bool:
    """Whether a generated kernel computes instruction ``ins`` of ``spec`` with :func:`expf_numpy`
    (float32 ``exp`` of a float32 value, where :func:`verified`) instead of NumPy's loop.

    Never in a ``fastmath`` spec: Numba's fast flags on the inline code would reassociate its
    rounding steps (every value of a test row came out wrong)."""
    return (ins.op == "exp" and ins.dtype == "float32" and [spec.dtype_of(a) for a in ins.args] == ["float32"]
            and not getattr(spec, "fastmath", False) and verified())


__all__ = ["XMAX", "XMIN", "check_inputs", "exp_array", "expf_numpy", "inline_exp", "verified"]
