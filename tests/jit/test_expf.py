"""NumPy's float32 ``exp`` inline in generated kernels (:mod:`noodle.backends.numba_expf`), and the
row-wise ``max``/``min`` vector intrinsic (:mod:`noodle.backends.numba_extreme`).

The oracle is ``np.exp`` itself: every float32 input gives NumPy's bits (all 2**32 of them),
the runtime check notices a one-ulp change to one constant, and a jitted row-wise function
with ``exp`` returns the plain function's bits at the edges (underflow to subnormals and zero,
overflow, NaN, infinities).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit
from tests.jit.test_rowwise import check

import noodle as nd
from noodle.backends import numba_expf
from noodle.backends.numba_expf import check_inputs, exp_array, verified
from noodle.backends.numba_plan import plan
from noodle.backends.spec import Instr, KernelSpec
from noodle.errors import ConfigError

needs_inline = pytest.mark.skipif(not verified(), reason="this NumPy's float32 exp is not the SIMD algorithm "
                                  "noodle inlines (kernels call NumPy's loop here)")


def _bits(a):
    return np.asarray(a).view(np.uint32)


@needs_inline
def test_every_float32_input_gives_numpys_bits():
    step = 1 << 24
    bad = 0
    with np.errstate(all="ignore"):
        for k in range(1 << 8):
            x = np.arange(k * step, (k + 1) * step, dtype=np.uint64).astype(np.uint32).view(np.float32)
            got, want = exp_array(x), np.exp(x)
            diff = _bits(got) != _bits(want)
            if diff.any():
                first = x[diff][:3]
                pytest.fail(f"exp differs from NumPy at {[hex(int(v)) for v in first.view(np.uint32)]}")
            bad += int(diff.sum())
    assert bad == 0


def test_the_runtime_check_notices_a_one_ulp_change(monkeypatch):
    """The sample :func:`verified` compares is dense enough to catch an algorithm that is nearly
    NumPy's: the same code with one coefficient one ulp off."""
    p1 = np.float32(numba_expf._P[1])
    changed = list(numba_expf._P)
    changed[1] = float(np.nextafter(p1, np.float32(1)))
    monkeypatch.setattr(numba_expf, "_P", changed)

    @njit(cache=False)
    def perturbed(src, dst):   # compiled now: the intrinsic reads the patched constant
        for i in range(src.shape[0]):
            dst[i] = numba_expf.expf_numpy(src[i])

    x = check_inputs()
    out = np.empty_like(x)
    perturbed(x, out)
    with np.errstate(all="ignore"):
        want = np.exp(x)
    differ = int((_bits(out) != _bits(want)).sum())
    assert 0 < differ < x.size // 10   # nearly NumPy's: a few differ, and the check sees them


@needs_inline
@pytest.mark.parametrize("scalef", [True, False], ids=["ldexp", "two-products"])
def test_both_ways_of_scaling_by_two_to_the_k_give_numpys_bits(monkeypatch, scalef):
    """``llvm.ldexp`` (vscalefps with AVX-512) and the two exact products used without it round
    the same way: each, compiled now, gives NumPy's bits on the sample and at the subnormal edge."""
    monkeypatch.setattr(numba_expf, "_SCALEF", scalef)

    @njit(cache=False)
    def compiled_now(src, dst):   # the intrinsic reads _SCALEF when this compiles
        for i in range(src.shape[0]):
            dst[i] = numba_expf.expf_numpy(src[i])

    subnormal_edge = np.arange(0xC2AE0000, 0xC2D00000, 7, dtype=np.uint32).view(np.float32)
    x = np.concatenate([check_inputs(), subnormal_edge, -subnormal_edge])
    out = np.empty_like(x)
    compiled_now(x, out)
    with np.errstate(all="ignore"):
        want = np.exp(x)
    assert (_bits(out) == _bits(want)).all(), x[_bits(out) != _bits(want)][:5]


def test_the_inline_exp_can_be_turned_off():
    code = "from noodle.backends.numba_expf import verified; print(verified())"
    env = {**os.environ, "NOODLE_INLINE_EXPF": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _row_exp(x):
    return np.exp(x - x.max(axis=-1, keepdims=True))


def _row_exp_min(x):
    return np.exp(x.min(axis=-1, keepdims=True) - x) * 0.5


@pytest.mark.parametrize("fn", [_row_exp, _row_exp_min])
@pytest.mark.parametrize("length", [1, 7, 63, 64, 65, 200, 1024, 1500])
def test_jitted_row_exp_equals_plain_numpy_at_the_edges(fn, length):
    """max/min, subtract and exp are exact or NumPy's own: the jitted function must give the
    plain function's bits, with rows that underflow to subnormals and zero, overflow, and hold
    NaN, infinities and signed zeros in the vector body and in the tail."""
    rng = np.random.default_rng(length)
    x = (rng.standard_normal((12, length)) * 40).astype(np.float32)
    x[1] *= 3.0                                   # exp underflows to subnormals and to zero
    x[2, :] = rng.uniform(-104.5, -86.0, length)  # around the subnormal and zero limits
    x[3, length // 2] = np.nan
    x[4, -1] = np.nan                             # in the tail
    x[5, 0] = np.inf
    x[6, length // 3] = -np.inf
    x[7, :] = 0.0
    x[7, ::2] = -0.0
    x[8, :] = -0.0
    x[9, :] = rng.uniform(-0.5, 0.5, length) + np.float32(88.5)
    jitted = nd.jit(fn, backend="numba")
    jitted.compile(x)
    with np.errstate(all="ignore"):
        want = fn(x)
        got = jitted(x)
    assert got.dtype == want.dtype
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(_bits(got)[~nan], _bits(want)[~nan])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("length", [31, 32, 64, 65, 130, 1000])
def test_row_max_and_min_follow_the_rules_past_the_vector_width(dtype, length):
    """The vector intrinsic covers 64 float32 or 32 float64 values a step: NaN anywhere wins,
    zeros tie to +0.0 for max and -0.0 for min, -inf/inf are ordinary values, byte for byte
    the interpreter's result."""
    rng = np.random.default_rng(length)
    x = rng.standard_normal((8, length)).astype(dtype)
    x[0, length - 1] = np.nan
    x[1, 5] = np.nan
    x[2, :] = -np.abs(x[2]) - 1
    x[2, length // 2] = 0.0
    x[2, length // 3] = -0.0
    x[3, :] = 0.0
    x[3, ::3] = -0.0
    x[4, :] = -np.inf
    x[5, 0] = np.inf
    x[6, :] = np.abs(x[6]) + 1
    x[6, -1] = -0.0

    def f(x):
        return x.max(axis=-1, keepdims=True) + x * 0.0, x.min(axis=-1, keepdims=True) + x * 0.0

    # the oracle is the interpreter (NumPy's own max of +0.0 and -0.0 depends on its SIMD order;
    # noodle defines it), and the interpreter is checked close to plain NumPy
    check(f, (x,))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_row_max_and_min_find_the_extreme_in_every_vector_lane(dtype):
    """Row ``k`` holds its maximum at column ``k`` and its minimum at column ``-1-k``: over
    every lane of the intrinsic's vector (64 float32, 32 float64) and its scalar tail, so a
    wrong step of the lanes' final reduction shows as a wrong row."""
    n = 64 + 32 + 6   # even: no row has both at one column
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (n, n)).astype(dtype)
    x[np.arange(n), np.arange(n)] = 5.0
    x[np.arange(n), n - 1 - np.arange(n)] = -5.0

    def f(x):
        return x.max(axis=-1, keepdims=True) + x * 0.0, x.min(axis=-1, keepdims=True) + x * 0.0

    hi, lo = nd.jit(f, backend="numba")(x)
    assert (np.asarray(hi) == 5.0).all() and (np.asarray(lo) == -5.0).all()
    check(f, (x,))


def _chain(a, b, e):
    return a * b - 0.5 * np.exp(-e)


def _broadcast_exp(x, col):
    return np.exp(x - col) + np.exp(col)


@pytest.mark.parametrize("n", [1, 5, 1000, 300_001])
def test_jitted_elementwise_exp_equals_plain_numpy(n):
    """A fused float32 kernel with exp (flat, and with a broadcast operand) gives the plain
    function's bits, at lengths below and above the parallel threshold."""
    rng = np.random.default_rng(n)
    a, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    e = (rng.standard_normal(n) * 60).astype(np.float32)
    e[::97] = np.nan
    e[1::101] = -np.inf
    e[2::103] = 120.0
    jitted = nd.jit(_chain, backend="numba")
    jitted.compile(a, b, e)
    with np.errstate(all="ignore"):
        want, got = _chain(a, b, e), jitted(a, b, e)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan) and np.array_equal(_bits(got)[~nan], _bits(want)[~nan])

    x = (rng.standard_normal((max(1, n // 100), 100)) * 50).astype(np.float32)
    col = (rng.standard_normal((x.shape[0], 1)) * 50).astype(np.float32)
    jb = nd.jit(_broadcast_exp, backend="numba")
    jb.compile(x, col)
    with np.errstate(all="ignore"):
        want, got = _broadcast_exp(x, col), jb(x, col)
    assert np.array_equal(_bits(got), _bits(want))


@needs_inline
def test_a_float32_exp_kernel_is_one_pass_not_stages():
    def spec(dtype):
        return KernelSpec(((dtype, (8,)),), (), (Instr("exp", (0,), dtype),), (1,), (8,))

    assert plan(spec("float32")).mode != "stages"
    assert plan(spec("float64")).mode == "stages"   # NumPy's float64 exp is not inlined


def test_a_fastmath_kernel_keeps_numpys_exp_loop():
    """Numba's fast-math flags would reassociate the inline algorithm's rounding steps (found in
    review: 4096 of 4096 values wrong), so a fastmath spec keeps NumPy's loop between stages."""
    from noodle.backends.registry import get_backend  # noqa: PLC0415

    x = np.linspace(-20, 20, 4096).astype(np.float32)
    spec = KernelSpec((("float32", (4096,)),), (), (Instr("exp", (0,), "float32"),), (1,), (4096,), fastmath=True)
    assert plan(spec).mode == "stages"
    (got,) = get_backend("numba").compile_kernel(spec)(x)
    assert np.array_equal(_bits(got), _bits(np.exp(x)))


@pytest.mark.parametrize("raw", ["0", "False", "OFF", "no"])
def test_the_switch_reads_booleans_and_refuses_the_rest(monkeypatch, raw):
    monkeypatch.setattr(numba_expf, "_verdict", None)
    monkeypatch.setenv("NOODLE_INLINE_EXPF", raw)
    assert numba_expf.verified() is False
    monkeypatch.setattr(numba_expf, "_verdict", None)
    monkeypatch.setenv("NOODLE_INLINE_EXPF", "disable")
    with pytest.raises(ConfigError, match="NOODLE_INLINE_EXPF"):
        numba_expf.verified()
