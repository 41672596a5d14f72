"""64-bit elementwise ``a * b % m`` and ``pow(b, e, m)`` as CUDA kernels (the GPU half of the 64-bit path).

The arithmetic is that of :mod:`noodle.crypto._mod64_cpu`, written once more in CUDA C: subtracting
Montgomery products with ``__umul64hi`` for the odd part ``q`` of ``m = q * 2^k``, wrapping uint64
products masked to ``k`` bits for the rest, joined by CRT; left-to-right binary powers, and a
Montgomery ladder (both products every step, masks instead of branches) for ``constant_time``.

Why a function that returns the source: the tests compile exactly this text with ``nvcc --ptx`` on
machines without a GPU, and compile its device functions as host C++ (``__umul64hi`` is swapped for
an ``unsigned __int128`` product there) to check every result against Python's ``pow`` before a GPU
ever runs it. On a GPU, CuPy's ``RawModule`` compiles the same text with NVRTC.

Inputs may be NumPy or CuPy arrays (NumPy ones are copied to the device); results are CuPy arrays.
A scalar modulus has its constants computed once on the host and passed as kernel arguments (a
64-bit division is a long emulated sequence on a GPU); per-element moduli compute them per thread.

Example::

    from noodle.crypto import _mod64_cuda
    if _mod64_cuda.available()[0]:
        out = _mod64_cuda.modpow(x, False, e, m, n=x.size)
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from noodle.crypto._mod64_cpu import scalar_constants
from noodle.errors import CompileError

KERNELS = ("nd_mod64_mul_sm", "nd_mod64_mul_vm", "nd_mod64_pow_sm", "nd_mod64_pow_vm",
           "nd_mod64_ladder_sm", "nd_mod64_ladder_vm", "nd_mod64_inv")

_THREADS = 256

_DEVICE_FUNCTIONS = r"""
// ---- noodle 64-bit modular arithmetic: device functions (host C++ too, for tests) ----
#ifndef __CUDACC__
#define __host__
#define __device__
#define __forceinline__ inline
#endif
#define ND_HD __host__ __device__ __forceinline__

typedef unsigned long long nd_u64;
typedef long long nd_i64;

ND_HD nd_u64 nd_mulhi(nd_u64 a, nd_u64 b) {
#ifdef __CUDA_ARCH__
    return __umul64hi(a, b);
#else
    return (nd_u64)(((unsigned __int128)a * b) >> 64);
#endif
}

ND_HD int nd_clz(nd_u64 x) {
#ifdef __CUDA_ARCH__
    return __clzll((long long)x);
#else
    return x ? __builtin_clzll(x) : 64;
#endif
}

ND_HD int nd_ctz(nd_u64 x) {
#ifdef __CUDA_ARCH__
    return x ? __ffsll((long long)x) - 1 : 64;
#else
    return x ? __builtin_ctzll(x) : 64;
#endif
}

// (hi * 2^64 + lo) / 2^64 mod q for hi < q, q odd, qinv = q^-1 mod 2^64; never overflows
ND_HD nd_u64 nd_redc(nd_u64 hi, nd_u64 lo, nd_u64 q, nd_u64 qinv) {
    nd_u64 h2 = nd_mulhi(lo * qinv, q);
    return (hi - h2) + (q & (0ull - (nd_u64)(hi < h2)));
}

// a * b / 2^64 mod q, exact whenever a < q or b < q
ND_HD nd_u64 nd_mont(nd_u64 a, nd_u64 b, nd_u64 q, nd_u64 qinv) {
    return nd_redc(nd_mulhi(a, b), a * b, q, qinv);
}

ND_HD nd_u64 nd_submod(nd_u64 a, nd_u64 b, nd_u64 q) {
    return (a - b) + (q & (0ull - (nd_u64)(a < b)));
}

ND_HD nd_u64 nd_inv64(nd_u64 q) {
    nd_u64 x = q;
    for (int i = 0; i < 5; ++i) x *= 2ull - q * x;
    return x;
}

struct nd_mod64 {      // m = q * 2^k
    nd_u64 q, qinv, r1, r2, mask;
    int k;
};

ND_HD nd_mod64 nd_constants(nd_u64 m) {
    nd_mod64 c;
    c.k = nd_ctz(m);
    c.q = m >> c.k;
    c.qinv = nd_inv64(c.q);
    c.r1 = (0ull - c.q) % c.q;
    nd_u64 x = c.r1 + c.r1 - (c.q & (0ull - (nd_u64)(c.r1 >= c.q - c.r1)));   // 2R mod q
    for (int i = 0; i < 6; ++i) x = nd_mont(x, x, c.q, c.qinv);                // 2^64 R = R^2
    c.r2 = x;
    c.mask = (1ull << c.k) - 1ull;
    return c;
}

ND_HD nd_mod64 nd_scalar(nd_u64 q, nd_u64 qinv, nd_u64 r1, nd_u64 r2, nd_u64 k, nd_u64 mask) {
    nd_mod64 c;
    c.q = q; c.qinv = qinv; c.r1 = r1; c.r2 = r2; c.k = (int)k; c.mask = mask;
    return c;
}

// x R mod q for uint64 bits x, read as an int64 when sgn is 1 (negative: x - 2^64)
ND_HD nd_u64 nd_to_mont(nd_u64 x, nd_u64 sgn, const nd_mod64& c) {
    nd_u64 xm = nd_mont(x, c.r2, c.q, c.qinv);
    return nd_submod(xm, c.r2 & (0ull - ((x >> 63) & sgn)), c.q);
}

ND_HD nd_u64 nd_crt(nd_u64 rq, nd_u64 r2k, const nd_mod64& c) {
    return rq + c.q * (((r2k - rq) * c.qinv) & c.mask);
}

ND_HD nd_u64 nd_mul_one(nd_u64 a, nd_u64 fa, nd_u64 b, nd_u64 fb, const nd_mod64& c) {
    nd_u64 am = nd_to_mont(a, fa, c);
    nd_u64 rq = nd_mont(am, b, c.q, c.qinv);
    rq = nd_submod(rq, am & (0ull - ((b >> 63) & fb)), c.q);
    return nd_crt(rq, a * b, c);
}

// left-to-right binary powering from the exponent's top set bit
ND_HD nd_u64 nd_pow_one(nd_u64 x, nd_u64 fx, nd_u64 e, const nd_mod64& c) {
    if (e == 0ull) return nd_crt(nd_redc(0ull, c.r1, c.q, c.qinv), 1ull, c);
    nd_u64 xm = nd_to_mont(x, fx, c);
    nd_u64 r = xm, w = x;
    for (int j = 62 - nd_clz(e); j >= 0; --j) {
        r = nd_mont(r, r, c.q, c.qinv);
        w = w * w;
        if ((e >> j) & 1ull) {
            r = nd_mont(r, xm, c.q, c.qinv);
            w = w * x;
        }
    }
    return nd_crt(nd_redc(0ull, r, c.q, c.qinv), w, c);
}

// Montgomery ladder over all 64 bits: both products every step, selection by masks
ND_HD nd_u64 nd_ladder_one(nd_u64 x, nd_u64 fx, nd_u64 e, const nd_mod64& c) {
    nd_u64 xm = nd_to_mont(x, fx, c);
    nd_u64 a0 = c.r1, a1 = xm, w0 = 1ull, w1 = x;
    for (int i = 63; i >= 0; --i) {
        nd_u64 sel = 0ull - ((e >> i) & 1ull);
        nd_u64 t = nd_mont(a0, a1, c.q, c.qinv);
        nd_u64 s_in = a0 ^ ((a0 ^ a1) & sel);
        nd_u64 s = nd_mont(s_in, s_in, c.q, c.qinv);
        a0 = s ^ ((s ^ t) & sel);
        a1 = t ^ ((t ^ s) & sel);
        nd_u64 tw = w0 * w1;
        nd_u64 sw_in = w0 ^ ((w0 ^ w1) & sel);
        nd_u64 sw = sw_in * sw_in;
        w0 = sw ^ ((sw ^ tw) & sel);
        w1 = tw ^ ((tw ^ sw) & sel);
    }
    return nd_crt(nd_redc(0ull, a0, c.q, c.qinv), w0, c);
}

// x^-1 mod m (x as an int64 when fx is 1), *ok = 0 when gcd(x, m) != 1; extended Euclid on
// magnitudes: the coefficients alternate in sign, so |t| fits in 64 bits and the sign is the parity
// x mod m in [0, m), Python's way (x as an int64 when fx is 1)
ND_HD nd_u64 nd_reduce(nd_u64 x, nd_u64 fx, nd_u64 m) {
    if (fx && (x >> 63)) {
        nd_u64 r = (0ull - x) % m;
        return r ? m - r : 0ull;
    }
    return x % m;
}

ND_HD nd_u64 nd_inv_one(nd_u64 x, nd_u64 fx, nd_u64 m, int* ok) {
    x = nd_reduce(x, fx, m);
    nd_u64 r0 = m, r1 = x, t0 = 0ull, t1 = 1ull;
    int steps = 0;
    while (r1 != 0ull) {
        nd_u64 qq = r0 / r1;
        nd_u64 r2 = r0 - qq * r1;
        r0 = r1; r1 = r2;
        nd_u64 t2 = t0 + qq * t1;
        t0 = t1; t1 = t2;
        ++steps;
    }
    if (r0 != 1ull) { *ok = 0; return 0ull; }
    *ok = 1;
    return (steps % 2 == 0) ? (m - t0) % m : t0 % m;
}
"""

_KERNELS = r"""
// ---- kernels: operands are length 1 (stride 0) or n (stride 1); grid-stride loops ----
#define ND_LOOP for (nd_i64 i = (nd_i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; \
                     i += (nd_i64)gridDim.x * blockDim.x)

extern "C" __global__ void nd_mod64_mul_sm(const nd_u64* __restrict__ a, nd_i64 sa, nd_u64 fa,
        const nd_u64* __restrict__ b, nd_i64 sb, nd_u64 fb, nd_u64 q, nd_u64 qinv, nd_u64 r1, nd_u64 r2,
        nd_u64 k, nd_u64 mask, nd_u64* __restrict__ out, nd_i64 n) {
    const nd_mod64 c = nd_scalar(q, qinv, r1, r2, k, mask);
    ND_LOOP { out[i] = nd_mul_one(a[i * sa], fa, b[i * sb], fb, c); }
}

extern "C" __global__ void nd_mod64_mul_vm(const nd_u64* __restrict__ a, nd_i64 sa, nd_u64 fa,
        const nd_u64* __restrict__ b, nd_i64 sb, nd_u64 fb, const nd_u64* __restrict__ m,
        nd_u64* __restrict__ out, nd_i64 n) {
    ND_LOOP { out[i] = nd_mul_one(a[i * sa], fa, b[i * sb], fb, nd_constants(m[i])); }
}

extern "C" __global__ void nd_mod64_pow_sm(const nd_u64* __restrict__ x, nd_i64 sx, nd_u64 fx,
        const nd_u64* __restrict__ e, nd_i64 se, nd_u64 q, nd_u64 qinv, nd_u64 r1, nd_u64 r2, nd_u64 k,
        nd_u64 mask, nd_u64* __restrict__ out, nd_i64 n) {
    const nd_mod64 c = nd_scalar(q, qinv, r1, r2, k, mask);
    ND_LOOP { out[i] = nd_pow_one(x[i * sx], fx, e[i * se], c); }
}

extern "C" __global__ void nd_mod64_pow_vm(const nd_u64* __restrict__ x, nd_i64 sx, nd_u64 fx,
        const nd_u64* __restrict__ e, nd_i64 se, const nd_u64* __restrict__ m, nd_u64* __restrict__ out,
        nd_i64 n) {
    ND_LOOP { out[i] = nd_pow_one(x[i * sx], fx, e[i * se], nd_constants(m[i])); }
}

extern "C" __global__ void nd_mod64_ladder_sm(const nd_u64* __restrict__ x, nd_i64 sx, nd_u64 fx,
        const nd_u64* __restrict__ e, nd_i64 se, nd_u64 q, nd_u64 qinv, nd_u64 r1, nd_u64 r2, nd_u64 k,
        nd_u64 mask, nd_u64* __restrict__ out, nd_i64 n) {
    const nd_mod64 c = nd_scalar(q, qinv, r1, r2, k, mask);
    ND_LOOP { out[i] = nd_ladder_one(x[i * sx], fx, e[i * se], c); }
}

extern "C" __global__ void nd_mod64_ladder_vm(const nd_u64* __restrict__ x, nd_i64 sx, nd_u64 fx,
        const nd_u64* __restrict__ e, nd_i64 se, const nd_u64* __restrict__ m, nd_u64* __restrict__ out,
        nd_i64 n) {
    ND_LOOP { out[i] = nd_ladder_one(x[i * sx], fx, e[i * se], nd_constants(m[i])); }
}

extern "C" __global__ void nd_mod64_inv(const nd_u64* __restrict__ x, nd_i64 sx, nd_u64 fx,
        const nd_i64* __restrict__ e, nd_i64 se, const nd_u64* __restrict__ m, nd_i64 sm,
        nd_u64* __restrict__ out, unsigned char* __restrict__ ok, nd_i64 n) {
    ND_LOOP {
        if (e[i * se] < 0) {
            int good;
            out[i] = nd_inv_one(x[i * sx], fx, m[i * sm], &good);
            ok[i] = (unsigned char)good;
        } else {
            out[i] = nd_reduce(x[i * sx], fx, m[i * sm]);
            ok[i] = 1;
        }
    }
}
"""


def device_functions_source() -> str:
    """The device functions alone (also valid host C++, for tests that run them on the CPU)."""
    return _DEVICE_FUNCTIONS


def cuda_source() -> str:
    """The whole CUDA C source: device functions and the ``extern "C"`` kernels in :data:`KERNELS`."""
    return _DEVICE_FUNCTIONS + _KERNELS


# ------------------------------------------------------------------------------ runtime (needs a GPU)
_lock = threading.Lock()
_module: Any = None


def available() -> tuple[bool, str]:
    """(True, '') when CuPy and a usable CUDA GPU are there, else (False, why not)."""
    from noodle.crypto.placement import gpu_usable  # noqa: PLC0415 - reads the settings

    ok, why = gpu_usable()
    if not ok:
        return False, why
    from noodle.devices.detect import cupy_module  # noqa: PLC0415

    if cupy_module() is None:
        return False, "CuPy is not importable; install noodle[gpu]"
    return True, ""


def _cp() -> Any:
    from noodle.devices.detect import cupy_module  # noqa: PLC0415

    cp = cupy_module()
    if cp is None:
        from noodle.errors import DeviceUnavailableError  # noqa: PLC0415

        raise DeviceUnavailableError("the 64-bit modular GPU kernels need CuPy and a CUDA GPU; use "
                                     "device='cpu' or install noodle[gpu].")
    return cp


def array_module() -> Any:
    """CuPy: the array module of this backend's results (NumPy operands are copied to the device)."""
    return _cp()


def _kernel(name: str) -> Any:
    global _module
    cp = _cp()
    with _lock:
        if _module is None:
            try:
                _module = cp.RawModule(code=cuda_source(), options=("-std=c++14",))
            except Exception as exc:
                raise CompileError(f"NVRTC failed to compile the 64-bit modular kernels: {exc}") from exc
        return _module.get_function(name)


def _dev(x: Any, n: int, dtype: Any = np.uint64) -> tuple[Any, np.int64]:
    cp = _cp()
    d = cp.ascontiguousarray(cp.asarray(x, dtype=dtype)).reshape(-1)
    if d.shape[0] not in (1, n):
        raise AssertionError("mod64 operands are 1-D of length 1 or n")
    return d, np.int64(0 if d.shape[0] == 1 and n != 1 else 1)


def _launch(name: str, n: int, args: tuple[Any, ...]) -> None:
    cp = _cp()
    sms = int(cp.cuda.Device().attributes.get("MultiProcessorCount", 132))
    blocks = max(1, min(-(-n // _THREADS), sms * 32))
    _kernel(name)((blocks,), (_THREADS,), args)


def _flag(signed: bool) -> np.uint64:
    return np.uint64(1 if signed else 0)


def _scalar_args(m: Any) -> tuple[np.uint64, ...]:
    return tuple(np.uint64(v) for v in scalar_constants(int(m[0])))


def modmul(a: Any, a_signed: bool, b: Any, b_signed: bool, m: Any, n: int) -> Any:
    """``a * b mod m`` for ``n`` elements as a CuPy uint64 array (operands as in the CPU backend)."""
    cp = _cp()
    out = cp.empty(n, cp.uint64)
    if n == 0:
        return out
    (da, sa), (db, sb) = _dev(a, n), _dev(b, n)
    head = (da, sa, _flag(a_signed), db, sb, _flag(b_signed))
    if m.shape[0] == 1:
        _launch("nd_mod64_mul_sm", n, (*head, *_scalar_args(_host1(m)), out, np.int64(n)))
    else:
        dm, _ = _dev(m, n)
        _launch("nd_mod64_mul_vm", n, (*head, dm, out, np.int64(n)))
    return out


def modpow(x: Any, x_signed: bool, e: Any, m: Any, *, n: int, constant_time: bool = False) -> Any:
    """``pow(x, e, m)`` for ``n`` elements as a CuPy uint64 array; ``e`` holds exponents >= 0."""
    cp = _cp()
    out = cp.empty(n, cp.uint64)
    if n == 0:
        return out
    (dx, sx), (de, se) = _dev(x, n), _dev(e, n)
    head = (dx, sx, _flag(x_signed), de, se)
    kind = "ladder" if constant_time else "pow"
    if m.shape[0] == 1:
        _launch(f"nd_mod64_{kind}_sm", n, (*head, *_scalar_args(_host1(m)), out, np.int64(n)))
    else:
        dm, _ = _dev(m, n)
        _launch(f"nd_mod64_{kind}_vm", n, (*head, dm, out, np.int64(n)))
    return out


def invert_where_negative(x: Any, x_signed: bool, e: Any, m: Any, n: int) -> tuple[Any, Any]:
    """(bases, ok) as CuPy arrays: ``x^-1 mod m`` where the int64 exponent is negative, else ``x mod m``."""
    cp = _cp()
    out = cp.empty(n, cp.uint64)
    ok = cp.empty(n, cp.uint8)
    if n:
        (dx, sx), (de, se), (dm, sm) = _dev(x, n), _dev(e, n, np.int64), _dev(m, n)
        _launch("nd_mod64_inv", n, (dx, sx, _flag(x_signed), de, se, dm, sm, out, ok, np.int64(n)))
    return out, ok


def _host1(m: Any) -> np.ndarray:
    """A one-element modulus on the host (the scalar constants are computed there)."""
    return m.get() if type(m).__module__.split(".")[0] == "cupy" else np.asarray(m)


__all__ = ["KERNELS", "array_module", "available", "cuda_source", "device_functions_source", "invert_where_negative",
           "modmul", "modpow"]
