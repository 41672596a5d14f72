"""64-bit elementwise ``a * b % m`` and ``pow(b, e, m)`` as Numba kernels (the CPU half of the 64-bit path).

Why Montgomery, and this variant: a 128-bit remainder has no fast spelling in Numba (LLVM lowers
``urem i128`` to ``__umodti3``, which Numba's JIT does not link), while a Montgomery product is three
64-bit multiplies. The product's high half comes from an LLVM ``i128`` multiply (one ``mul``
instruction on x86-64), not from 32-bit limbs. The reduction used is the *subtracting* one,
``t = hi(a*b) - hi(u*q)`` with ``u = lo(a*b) * q^-1 mod 2^64``: it never overflows, so it is exact
for every odd modulus below ``2^64`` (including ``q >= 2^63``), and its single correction (``+q`` when
the subtraction borrows) is a mask, not a branch.

Even moduli: ``m = q * 2^k`` with ``q`` odd. The odd part runs in Montgomery form, the ``2^k`` part is
plain wrapping ``uint64`` arithmetic masked to ``k`` bits, and the two are joined by CRT
(``x = r_q + q * ((r_2 - r_q) * q^-1 mod 2^k)``, below ``m`` by construction). An odd modulus is
``k = 0``, so one code path is exact for every modulus from 1 to ``2^64 - 1``.

Powers: for odd moduli, 4-bit fixed windows read left to right from the window of the exponent's top
set bit, two elements interleaved (two independent product chains in flight; no branch on exponent
bits to mispredict), about twice the rate of binary powering here; even moduli use binary powering for
both halves. ``constant_time`` runs a Montgomery ladder instead: all 64 exponent bits, both products
every step, the bit selecting by masks (no branch or table index depends on the base or exponent).

Inputs need not be reduced: the Montgomery form of any ``uint64`` ``x`` is ``mont(x, R^2 mod q)``
(the product stays below ``q * 2^64``), and an int64 input viewed as uint64 (``x_u = x + 2^64`` when
negative) is corrected by subtracting ``R^2`` (``2^64 * R``) in Montgomery form. So a negative or
oversized input costs one masked subtraction, never a division.

Layout (prepared by :mod:`noodle.crypto.modular`): every operand is a 1-D C-contiguous uint64 array
of length 1 (broadcast: stride 0) or ``n`` (stride 1), plus a flag saying whether its bits are an
int64's. A scalar modulus gets its constants computed once in Python (the benchmark case); an array of
moduli computes them per element (``R^2`` by one doubling and six Montgomery squarings, no 128-bit
division).

Parallel launches take the fused kernels' lock (Numba's ``workqueue`` layer aborts when two threads
launch parallel kernels at once); a caller that finds it busy runs the serial variant, same bits.

Example::

    >>> import numpy as np
    >>> x = np.array([3, 10], np.uint64)
    >>> modpow(x, False, np.array([5], np.uint64), np.array([7], np.uint64), n=2).tolist()
    [5, 5]
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from llvmlite import ir
from numba import get_num_threads, njit, prange, types, uint64
from numba.extending import intrinsic

_OPTS = dict(cache=True, nogil=True, error_model="numpy")
_fallback_lock = threading.Lock()

U0 = np.uint64(0)
U1 = np.uint64(1)
U15 = np.uint64(15)
U63 = np.uint64(63)
U64 = np.uint64(64)

# Parallel from this much work (elements x Montgomery products): thread start-up is ~20 µs.
PARALLEL_MIN_WORK = 1 << 17


# ------------------------------------------------------------------------------ primitives
@intrinsic
def _mulhi(typingctx: Any, a: Any, b: Any) -> Any:  # pragma: no cover - compiled
    """High 64 bits of the 128-bit product. Why an intrinsic: Numba has no 128-bit integer; an LLVM
    ``i128`` multiply is one ``mul`` on x86-64 (32-bit limbs would be four multiplies and carries)."""
    if a != types.uint64 or b != types.uint64:
        return None
    sig = types.uint64(types.uint64, types.uint64)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        i128 = ir.IntType(128)
        p = builder.mul(builder.zext(args[0], i128), builder.zext(args[1], i128))
        return builder.trunc(builder.lshr(p, ir.Constant(i128, 64)), ir.IntType(64))

    return sig, codegen


@intrinsic
def _clz(typingctx: Any, a: Any) -> Any:  # pragma: no cover - compiled
    """Leading zero bits (64 for 0): where the exponent's top set bit is."""
    if a != types.uint64:
        return None
    sig = types.uint64(types.uint64)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.ctlz(args[0], ir.Constant(ir.IntType(1), 0))

    return sig, codegen


@intrinsic
def _ctz(typingctx: Any, a: Any) -> Any:  # pragma: no cover - compiled
    """Trailing zero bits (64 for 0): the power of two in an even modulus."""
    if a != types.uint64:
        return None
    sig = types.uint64(types.uint64)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))

    return sig, codegen


@njit(inline="always", **_OPTS)
def _redc(hi: Any, lo: Any, q: Any, qinv: Any) -> Any:  # pragma: no cover - compiled
    """(hi * 2^64 + lo) / 2^64 mod q for hi < q, q odd, qinv = q^-1 mod 2^64; branch-free."""
    h2 = _mulhi(lo * qinv, q)
    return (hi - h2) + (q & (U0 - uint64(hi < h2)))


@njit(inline="always", **_OPTS)
def _mont(a: Any, b: Any, q: Any, qinv: Any) -> Any:  # pragma: no cover - compiled
    """a * b / 2^64 mod q; exact whenever a < q or b < q (the product is below q * 2^64)."""
    return _redc(_mulhi(a, b), a * b, q, qinv)


@njit(inline="always", **_OPTS)
def _submod(a: Any, b: Any, q: Any) -> Any:  # pragma: no cover - compiled
    """a - b mod q for a, b < q; branch-free."""
    d = a - b
    return d + (q & (U0 - uint64(a < b)))


@njit(inline="always", **_OPTS)
def _inv64(q: Any) -> Any:  # pragma: no cover - compiled
    """q^-1 mod 2^64 for odd q by Newton's iteration (3 correct bits, doubled five times)."""
    x = q
    for _ in range(5):
        x = x * (uint64(2) - q * x)
    return x


@njit(inline="always", **_OPTS)
def _constants(m: Any) -> Any:  # pragma: no cover - compiled
    """(q, q^-1 mod 2^64, R mod q, R^2 mod q, k, 2^k - 1) for m = q * 2^k, R = 2^64."""
    k = _ctz(m)
    q = m >> k
    qinv = _inv64(q)
    r1 = (U0 - q) % q
    x = r1 + r1 - (q & (U0 - uint64(r1 >= q - r1)))   # 2R mod q, without overflow for q >= 2^63
    for _ in range(6):                                  # 2^(2^j) R: 2^64 R = R^2 after six squarings
        x = _mont(x, x, q, qinv)
    return q, qinv, r1, x, k, (U1 << k) - U1


@njit(inline="always", **_OPTS)
def _to_mont(x: Any, signed: Any, q: Any, qinv: Any, r2: Any) -> Any:  # pragma: no cover - compiled
    """x R mod q for a uint64 x, or for an int64's bits when ``signed`` is 1 (negative: x_u - 2^64)."""
    xm = _mont(x, r2, q, qinv)
    return _submod(xm, r2 & (U0 - ((x >> U63) & signed)), q)


@njit(inline="always", **_OPTS)
def _crt(rq: Any, r2k: Any, q: Any, qinv: Any, mask: Any) -> Any:  # pragma: no cover - compiled
    """The x < q * 2^k with x = rq mod q and x = r2k mod 2^k."""
    return rq + q * (((r2k - rq) * qinv) & mask)


@njit(inline="always", **_OPTS)
def _mul_one(a: Any, fa: Any, b: Any, fb: Any, q: Any, qinv: Any, r2: Any,
             mask: Any) -> Any:  # pragma: no cover - compiled
    am = _to_mont(a, fa, q, qinv, r2)
    rq = _mont(am, b, q, qinv)                               # a * b_u mod q
    rq = _submod(rq, am & (U0 - ((b >> U63) & fb)), q)       # b negative: b = b_u - 2^64
    return _crt(rq, a * b, q, qinv, mask)


@njit(inline="always", **_OPTS)
def _pow_one(x: Any, fx: Any, e: Any, q: Any, qinv: Any, r1: Any, r2: Any, k: Any,
             mask: Any) -> Any:  # pragma: no cover - compiled
    """Left-to-right binary exponentiation from the exponent's top set bit (branches on its bits)."""
    if e == U0:
        return _crt(_redc(U0, r1, q, qinv), U1, q, qinv, mask)
    xm = _to_mont(x, fx, q, qinv, r2)
    r = xm
    w = x
    j = np.int64(U63 - _clz(e)) - 1
    if k == U0:
        while j >= 0:
            r = _mont(r, r, q, qinv)
            if (e >> uint64(j)) & U1:
                r = _mont(r, xm, q, qinv)
            j -= 1
        return _redc(U0, r, q, qinv)
    while j >= 0:
        r = _mont(r, r, q, qinv)
        w = w * w
        if (e >> uint64(j)) & U1:
            r = _mont(r, xm, q, qinv)
            w = w * x
        j -= 1
    return _crt(_redc(U0, r, q, qinv), w, q, qinv, mask)


@njit(inline="always", **_OPTS)
def _window_table(xm: Any, q: Any, qinv: Any, r1: Any, tab: Any) -> None:  # pragma: no cover - compiled
    """tab[t] = mont(x^t) for t < 16."""
    tab[0] = r1
    tab[1] = xm
    for t in range(2, 16):
        tab[t] = _mont(tab[t - 1], xm, q, qinv)


@njit(inline="always", **_OPTS)
def _pow_pair(xa: Any, ea: Any, qa: Any, qinva: Any, r1a: Any, r2a: Any, xb: Any, eb: Any, qb: Any,
              qinvb: Any, r1b: Any, r2b: Any, fx: Any, ta: Any, tb: Any) -> Any:  # pragma: no cover - compiled
    """pow for two elements with odd moduli, interleaved: 4-bit fixed windows read left to right from
    the window holding the larger exponent's top set bit.

    Why not plain binary powering: a Montgomery product is a ~13-cycle chain of dependent multiplies,
    and binary powering mispredicts a branch on every other random exponent bit. Fixed windows take
    the same ~92 products for a 62-bit exponent with no data-dependent branch, and two independent
    elements per loop keep two product chains in flight (measured here: 1.8-2x the binary loop)."""
    _window_table(_to_mont(xa, fx, qa, qinva, r2a), qa, qinva, r1a, ta)
    _window_table(_to_mont(xb, fx, qb, qinvb, r2b), qb, qinvb, r1b, tb)
    nb = np.int64(U64 - _clz(ea | eb))
    j = max((nb + 3) // 4 * 4 - 4, 0)
    ra = ta[np.int64((ea >> uint64(j)) & U15)]
    rb = tb[np.int64((eb >> uint64(j)) & U15)]
    j -= 4
    while j >= 0:
        for _ in range(4):
            ra = _mont(ra, ra, qa, qinva)
            rb = _mont(rb, rb, qb, qinvb)
        ra = _mont(ra, ta[np.int64((ea >> uint64(j)) & U15)], qa, qinva)
        rb = _mont(rb, tb[np.int64((eb >> uint64(j)) & U15)], qb, qinvb)
        j -= 4
    return _redc(U0, ra, qa, qinva), _redc(U0, rb, qb, qinvb)


@njit(inline="always", **_OPTS)
def _ladder_one(x: Any, fx: Any, e: Any, q: Any, qinv: Any, r1: Any, r2: Any,
                mask: Any) -> Any:  # pragma: no cover - compiled
    """Montgomery ladder over all 64 exponent bits: both products every step, the bit selects by
    masks (no branch or index depends on the exponent or the base)."""
    xm = _to_mont(x, fx, q, qinv, r2)
    a0 = r1            # mont(1)
    a1 = xm
    w0 = U1            # the 2^k part, wrapping
    w1 = x
    for i in range(64):
        bit = (e >> uint64(63 - i)) & U1
        sel = U0 - bit                                  # all ones when the bit is set
        t = _mont(a0, a1, q, qinv)
        s_in = a0 ^ ((a0 ^ a1) & sel)
        s = _mont(s_in, s_in, q, qinv)
        a0 = s ^ ((s ^ t) & sel)
        a1 = t ^ ((t ^ s) & sel)
        tw = w0 * w1
        sw_in = w0 ^ ((w0 ^ w1) & sel)
        sw = sw_in * sw_in
        w0 = sw ^ ((sw ^ tw) & sel)
        w1 = tw ^ ((tw ^ sw) & sel)
    return _crt(_redc(U0, a0, q, qinv), w0, q, qinv, mask)


@njit(inline="always", **_OPTS)
def _reduce(x: Any, fx: Any, m: Any) -> Any:  # pragma: no cover - compiled
    """x mod m in [0, m), Python's way, for uint64 bits x (an int64's when ``fx`` is 1)."""
    if fx != U0 and (x >> U63) != U0:
        r = (U0 - x) % m
        return (m - r) if r != U0 else U0
    return x % m


@njit(inline="always", **_OPTS)
def _inv_one(x: Any, fx: Any, m: Any) -> Any:  # pragma: no cover - compiled
    """(x^-1 mod m, 1) or (0, 0) when gcd(x, m) != 1: extended Euclid on magnitudes (the
    coefficients alternate in sign, so |t| fits in uint64 and the sign is the step's parity)."""
    x = _reduce(x, fx, m)
    r0 = m
    r1 = x
    t0 = U0            # |coefficient of x| for r0; its sign is - for odd steps
    t1 = U1
    steps = 0
    while r1 != U0:
        qq = r0 // r1
        r0, r1 = r1, r0 - qq * r1
        t0, t1 = t1, t0 + qq * t1
        steps += 1
    if r0 != U1:      # m == 1 always has r0 == 1 (the gcd divides m): pow(x, -1, 1) == 0
        return U0, U0
    # r0 = gcd = 1 was reached after `steps` steps; its coefficient is t0 with sign (-1)^(steps+1)
    if steps % 2 == 0:
        return (m - t0) % m, U1
    return t0 % m, U1


# ------------------------------------------------------------------------------ ranges (serial)
@njit(**_OPTS)
def _mul_sm(lo: int, hi: int, a: Any, sa: int, fa: Any, b: Any, sb: int, fb: Any, q: Any, qinv: Any,
            r2: Any, mask: Any, out: Any) -> None:  # pragma: no cover - compiled
    for i in range(lo, hi):
        out[i] = _mul_one(a[i * sa], fa, b[i * sb], fb, q, qinv, r2, mask)


@njit(**_OPTS)
def _mul_vm(lo: int, hi: int, a: Any, sa: int, fa: Any, b: Any, sb: int, fb: Any, m: Any,
            out: Any) -> None:  # pragma: no cover - compiled
    for i in range(lo, hi):
        q, qinv, r1, r2, k, mask = _constants(m[i])
        out[i] = _mul_one(a[i * sa], fa, b[i * sb], fb, q, qinv, r2, mask)


@njit(**_OPTS)
def _pow_sm(lo: int, hi: int, x: Any, sx: int, fx: Any, e: Any, se: int, q: Any, qinv: Any, r1: Any,
            r2: Any, k: Any, mask: Any, ct: Any, out: Any) -> None:  # pragma: no cover - compiled
    if ct != U0:
        for i in range(lo, hi):
            out[i] = _ladder_one(x[i * sx], fx, e[i * se], q, qinv, r1, r2, mask)
    elif k == U0:
        ta = np.empty(16, np.uint64)
        tb = np.empty(16, np.uint64)
        for i in range(lo, hi, 2):
            j = min(i + 1, hi - 1)      # an odd tail computes its last element twice
            out[i], out[j] = _pow_pair(x[i * sx], e[i * se], q, qinv, r1, r2,
                                       x[j * sx], e[j * se], q, qinv, r1, r2, fx, ta, tb)
    else:
        for i in range(lo, hi):
            out[i] = _pow_one(x[i * sx], fx, e[i * se], q, qinv, r1, r2, k, mask)


@njit(**_OPTS)
def _pow_vm(lo: int, hi: int, x: Any, sx: int, fx: Any, e: Any, se: int, m: Any, ct: Any,
            out: Any) -> None:  # pragma: no cover - compiled
    if ct != U0:
        for i in range(lo, hi):
            q, qinv, r1, r2, k, mask = _constants(m[i])
            out[i] = _ladder_one(x[i * sx], fx, e[i * se], q, qinv, r1, r2, mask)
    else:
        ta = np.empty(16, np.uint64)
        tb = np.empty(16, np.uint64)
        for i in range(lo, hi, 2):
            j = min(i + 1, hi - 1)
            qa, qinva, r1a, r2a, ka, maska = _constants(m[i])
            qb, qinvb, r1b, r2b, kb, maskb = _constants(m[j])
            if (ka | kb) == U0:
                out[i], out[j] = _pow_pair(x[i * sx], e[i * se], qa, qinva, r1a, r2a,
                                           x[j * sx], e[j * se], qb, qinvb, r1b, r2b, fx, ta, tb)
            else:
                out[i] = _pow_one(x[i * sx], fx, e[i * se], qa, qinva, r1a, r2a, ka, maska)
                out[j] = _pow_one(x[j * sx], fx, e[j * se], qb, qinvb, r1b, r2b, kb, maskb)


@njit(**_OPTS)
def _inv_range(lo: int, hi: int, x: Any, sx: int, fx: Any, e: Any, se: int, m: Any, sm: int, out: Any,
               ok: Any) -> None:  # pragma: no cover - compiled
    for i in range(lo, hi):
        if e[i * se] < 0:
            v, good = _inv_one(x[i * sx], fx, m[i * sm])
            out[i] = v
            ok[i] = np.uint8(good)
        else:
            out[i] = _reduce(x[i * sx], fx, m[i * sm])
            ok[i] = np.uint8(1)


# ------------------------------------------------------------------------------ parallel drivers
@njit(parallel=True, **_OPTS)
def _mul_sm_par(nch: int, n: int, a: Any, sa: int, fa: Any, b: Any, sb: int, fb: Any, q: Any, qinv: Any,
                r2: Any, mask: Any, out: Any) -> None:  # pragma: no cover - compiled
    for c in prange(nch):
        _mul_sm(c * n // nch, (c + 1) * n // nch, a, sa, fa, b, sb, fb, q, qinv, r2, mask, out)


@njit(parallel=True, **_OPTS)
def _mul_vm_par(nch: int, n: int, a: Any, sa: int, fa: Any, b: Any, sb: int, fb: Any, m: Any,
                out: Any) -> None:  # pragma: no cover - compiled
    for c in prange(nch):
        _mul_vm(c * n // nch, (c + 1) * n // nch, a, sa, fa, b, sb, fb, m, out)


@njit(parallel=True, **_OPTS)
def _pow_sm_par(nch: int, n: int, x: Any, sx: int, fx: Any, e: Any, se: int, q: Any, qinv: Any, r1: Any,
                r2: Any, k: Any, mask: Any, ct: Any, out: Any) -> None:  # pragma: no cover - compiled
    for c in prange(nch):
        _pow_sm(c * n // nch, (c + 1) * n // nch, x, sx, fx, e, se, q, qinv, r1, r2, k, mask, ct, out)


@njit(parallel=True, **_OPTS)
def _pow_vm_par(nch: int, n: int, x: Any, sx: int, fx: Any, e: Any, se: int, m: Any, ct: Any,
                out: Any) -> None:  # pragma: no cover - compiled
    for c in prange(nch):
        _pow_vm(c * n // nch, (c + 1) * n // nch, x, sx, fx, e, se, m, ct, out)


@njit(parallel=True, **_OPTS)
def _inv_par(nch: int, n: int, x: Any, sx: int, fx: Any, e: Any, se: int, m: Any, sm: int, out: Any,
             ok: Any) -> None:  # pragma: no cover - compiled
    for c in prange(nch):
        _inv_range(c * n // nch, (c + 1) * n // nch, x, sx, fx, e, se, m, sm, out, ok)


# ------------------------------------------------------------------------------ host side
def array_module() -> Any:
    """NumPy: the array module this backend's operands and results use (CuPy for the GPU one)."""
    return np


def scalar_constants(m: int) -> tuple[int, int, int, int, int, int]:
    """(q, q^-1 mod 2^64, R mod q, R^2 mod q, k, 2^k - 1) of one modulus 1 <= m < 2^64, m = q 2^k.

    Why in Python: exact big-int arithmetic, computed once per call (the per-element kernels compute
    the same numbers without a 128-bit division)."""
    k = (m & -m).bit_length() - 1
    q = m >> k
    return q, pow(q, -1, 1 << 64), (1 << 64) % q, (1 << 128) % q, k, (1 << k) - 1


def _stride(x: np.ndarray, n: int) -> int:
    if x.dtype != np.uint64 or x.ndim != 1 or not x.flags.c_contiguous or x.shape[0] not in (1, n):
        raise AssertionError("mod64 operands are 1-D C-contiguous uint64 arrays of length 1 or n")
    return 0 if x.shape[0] == 1 and n != 1 else 1


def _threads() -> int:
    return max(1, int(get_num_threads()))


def _launch(par: Any, ser: Any, n: int, work: int, args: tuple[Any, ...]) -> None:
    """``par`` for enough work and a free launch lock, else ``ser`` over all ``n`` elements."""
    if work >= PARALLEL_MIN_WORK and _threads() > 1 and n > 1:
        try:
            from noodle.backends import numba_cpu  # noqa: PLC0415 - the fused kernels' lock
            lock = numba_cpu._par_lock
        except Exception:  # pragma: no cover - the backend module failed to import
            lock = _fallback_lock
        if lock.acquire(blocking=False):
            try:
                par(min(n, 4 * _threads()), n, *args)
                return
            finally:
                lock.release()
    ser(0, n, *args)


def _out(n: int) -> np.ndarray:
    """The result buffer, from the backends' pool (tracked): fresh memory costs a page fault per
    4 KiB, which halved modmul's rate at 1e7 elements; last call's dropped result is reused."""
    from noodle.memory.pool import default_pool  # noqa: PLC0415 - light, but only when a kernel runs

    return default_pool().take(n, np.uint64, track=True)


def _flag(signed: bool) -> np.uint64:
    return U1 if signed else U0


def modmul(a: np.ndarray, a_signed: bool, b: np.ndarray, b_signed: bool, m: np.ndarray, n: int) -> np.ndarray:
    """``a * b mod m`` for ``n`` elements as uint64 (``m`` already checked >= 1; int64 bits when signed)."""
    sa, sb, sm = _stride(a, n), _stride(b, n), _stride(m, n)
    out = _out(n)
    if n == 0:
        return out
    fa, fb = _flag(a_signed), _flag(b_signed)
    if sm == 0:
        q, qinv, _r1, r2, _k, mask = scalar_constants(int(m[0]))
        args = (a, sa, fa, b, sb, fb, np.uint64(q), np.uint64(qinv), np.uint64(r2), np.uint64(mask), out)
        _launch(_mul_sm_par, _mul_sm, n, 4 * n, args)
    else:
        _launch(_mul_vm_par, _mul_vm, n, 16 * n, (a, sa, fa, b, sb, fb, m, out))
    return out


def modpow(x: np.ndarray, x_signed: bool, e: np.ndarray, m: np.ndarray, *, n: int,
           constant_time: bool = False) -> np.ndarray:
    """``pow(x, e, m)`` for ``n`` elements as uint64; ``e`` holds exponents >= 0 as uint64."""
    sx, se, sm = _stride(x, n), _stride(e, n), _stride(m, n)
    out = _out(n)
    if n == 0:
        return out
    fx, ct = _flag(x_signed), _flag(constant_time)
    work = n * (130 if constant_time else 96)
    if sm == 0:
        q, qinv, r1, r2, k, mask = (np.uint64(v) for v in scalar_constants(int(m[0])))
        args = (x, sx, fx, e, se, q, qinv, r1, r2, k, mask, ct, out)
        _launch(_pow_sm_par, _pow_sm, n, work, args)
    else:
        _launch(_pow_vm_par, _pow_vm, n, work, (x, sx, fx, e, se, m, ct, out))
    return out


def invert_where_negative(x: np.ndarray, x_signed: bool, e: np.ndarray, m: np.ndarray,
                          n: int) -> tuple[np.ndarray, np.ndarray]:
    """(bases, ok): ``x^-1 mod m`` where the int64 exponent ``e`` is negative, ``x mod m`` elsewhere
    (so every base is unsigned afterwards); ``ok`` is 0 where no inverse exists. Why separate: only
    ``allow_negative_exp`` calls need it."""
    if e.dtype != np.int64:
        raise AssertionError("exponents for invert_where_negative are int64")
    sx, sm = _stride(x, n), _stride(m, n)
    se = 0 if e.shape[0] == 1 and n != 1 else 1
    out = np.empty(n, np.uint64)
    ok = np.empty(n, np.uint8)
    if n:
        _launch(_inv_par, _inv_range, n, 64 * n, (x, sx, _flag(x_signed), e, se, m, sm, out, ok))
    return out, ok


__all__ = ["array_module", "invert_where_negative", "modmul", "modpow", "scalar_constants"]
