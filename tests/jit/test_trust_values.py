"""Edge values and narrow dtypes: the jitted result is plain NumPy's, interpreted and compiled.

NaN, infinities, signed zeros, huge values cast to integers, integer wraparound in int8..uint32
(NumPy wraps every intermediate value, not only what is stored), and what NumPy refuses
(an integer to a negative integer power; results in float16, which noodle programs do not have)
raise a ``noodle.errors`` exception of the kind NumPy raises instead of returning a number.
Elementwise results are compared bit for bit (NaN by position), integer reductions exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

import noodle as nd
from noodle.errors import DTypeError, OpValueError

F = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e300, -1e300, 3.7, -2.5, 2.0**63, -(2.0**63) - 5000.0,
              1e-310] * 500)
I64 = np.array([np.iinfo(np.int64).min, -1, 0, 1, np.iinfo(np.int64).max, 7] * 1000, dtype=np.int64)
I32 = np.array([np.iinfo(np.int32).min, -1, 0, 1, np.iinfo(np.int32).max, 7] * 1000, dtype=np.int32)
I8 = np.random.default_rng(0).integers(-128, 128, 6000).astype(np.int8)
U8 = np.array([0, 1, 255, 128] * 1500, dtype=np.uint8)
Z = np.array([0.0, -0.0, 1.0, -1.0, np.nan] * 20)
CAST32 = np.resize(np.array([-42.0, np.nan, 7e4, -1.0, 3.0, -3.7, 1e10, -1e10, 3e9, np.inf, -np.inf, 65535.9,
                             1e19, -0.5, 127.9, -129.0], np.float32), 4096)
NANS = np.zeros(4096)
NANS[10], NANS[11] = np.nan, -np.nan

CASES = {
    "float->int64": (lambda x: x.astype(np.int64), F),
    "float->int32": (lambda x: x.astype(np.int32), F),
    "float->uint8": (lambda x: x.astype(np.uint8), F),
    # vectorized, LLVM's fptoui gave 65535 for NaN and negatives (NumPy: 0, and -42.0 -> 65494)
    "float32->uint16": (lambda x: x.astype(np.uint16), CAST32),
    "float32->int8/int16/uint8": (lambda x: (x.astype(np.int8), x.astype(np.int16), x.astype(np.uint8)), CAST32),
    "float64->uint16/int64": (lambda x: (x.astype(np.uint16), x.astype(np.int64)), CAST32.astype(np.float64)),
    "float->bool": (lambda x: x.astype(np.bool_), F),
    "float->float32": (lambda x: x.astype(np.float32), F),
    "abs int64 min": (lambda x: abs(x), I64),
    "neg int64": (lambda x: -x, I64),
    "int64 wraps": (lambda x: x * x + x, I64),
    "int64 ** 2": (lambda x: x ** 2, I64),
    "int32 ** 3": (lambda x: x ** 3, I32),
    "int / int": (lambda x: x / (x - 1), I64),
    "maximum nan": (lambda x: np.maximum(x, 1.0), F),
    "minimum nan": (lambda x: np.minimum(x, 1.0), F),
    "compare nan": (lambda x: (x < 1.0) | (x != x), F),
    "where": (lambda x: np.where(x > 0, x, -x), F),
    "uint8 - 200": (lambda x: x - 200, U8),
    "uint8 * uint8": (lambda x: x * x, U8),
    "uint8 sum": (lambda x: x.sum(), U8),
    "int8 square sum": (lambda x: (x * x).sum(), I8),
    "int8 square > 0": (lambda x: (x * x) > 0, I8),
    "int8 abs -128": (lambda x: abs(x) + x, I8),
    "int8 neg max": (lambda x: (-x).max(), I8),
    "int32 mean": (lambda x: x.mean(), I32),
    "int64 max": (lambda x: x.max(), I64),
    "sqrt": (lambda x: np.sqrt(x), F),
    "log": (lambda x: np.log(x), F),
    "float ** 2.5": (lambda x: x ** 2.5, F),
    "2.0 ** x": (lambda x: 2.0 ** x, F),
    "x / 0.0": (lambda x: x / 0.0, F),
    "tanh cos exp": (lambda x: np.tanh(x) + np.cos(x) * np.exp(-np.abs(x)), F),
    "maximum/minimum of +0 and -0": (lambda x: (1.0 / np.maximum(x, -x), 1.0 / np.minimum(-x, x)), Z),
    "relu of -0": (lambda x: 1.0 / np.maximum(x, 0.0), Z),
    "clip keeps -0": (lambda x: (1.0 / x.clip(0.0, 1.0), 1.0 / np.clip(x, -1.0, 0.0)), Z),
    "float->uint32": (lambda x: (x * 1.0).astype(np.uint32), F),
    "float->uint64": (lambda x: (x * 1.0).astype(np.uint64), F),
    "nan signs in a sum": (lambda x: (x + 1.0).sum(), NANS),
}
# casts with no portable result for out-of-range values stay interpreted (NumPy's bits)
INTERPRETED = {"float->uint32", "float->uint64"}


def _same(got, want, where):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (where, got.dtype, want.dtype)
    if got.dtype.kind == "f":
        assert np.array_equal(np.isnan(got), np.isnan(want)), where
        bits = np.uint32 if got.dtype == np.float32 else np.uint64
        np.testing.assert_array_equal(got[~np.isnan(got)].view(bits), want[~np.isnan(want)].view(bits), where)
    else:
        np.testing.assert_array_equal(got, want, where)


@pytest.mark.parametrize("mode", ["interpret", "compiled"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_edge_values_match_numpy(name, mode):
    fn, x = CASES[name]
    with np.errstate(all="ignore"):
        want = fn(x.copy())
        if mode == "interpret":
            got = nd.jit(fn, backend="interpret")(x)
        else:
            f = nd.jit(fn, hot_threshold=10**9)
            assert f.compile(x) == ("interpret" if name in INTERPRETED else "numba"), f.state(x).error
            got = f(x)
    if isinstance(want, tuple):
        for g, w in zip(got, want, strict=True):
            _same(g, w, name)
    else:
        _same(got, want, name)


@pytest.mark.parametrize("mode", ["interpret", "compiled"])
def test_integer_to_a_negative_power_raises_like_numpy(mode):
    x = np.arange(1, 9, dtype=np.int64)
    e = np.array([2, -1] * 4, dtype=np.int64)
    with pytest.raises(ValueError):
        x ** e   # the oracle refuses
    f = nd.jit(lambda a, b: a ** b, hot_threshold=0 if mode == "compiled" else 10**9)
    for _ in range(3):   # before and after any compile: never a number
        with pytest.raises(OpValueError, match="negative integer powers"):
            f(x, e)


def test_results_numpy_would_give_in_float16_are_refused_with_advice():
    x = np.arange(-5, 5, dtype=np.int8)
    assert np.exp(x).dtype == np.float16   # what NumPy would compute in
    with pytest.raises(DTypeError, match=r"float16.*astype"):
        nd.jit(lambda a: np.exp(a), backend="interpret")(x)
    np.testing.assert_array_equal(nd.jit(lambda a: np.exp(a.astype(np.float32)))(x), np.exp(x.astype(np.float32)))


_X8 = np.array([-1, 2, 3, -128, 127], np.int8)
_U8 = np.array([0, 5, 255], np.uint8)
_U64 = np.array([2**64 - 1, 0, 7], np.uint64)
_F32 = np.array([-1.0, 2.0, np.nan, 3.5], np.float32)
_B = np.array([True, False, True])


@pytest.mark.parametrize("mode", ["interpret", "compiled"])
@pytest.mark.parametrize("fn, x", [
    # NEP 50 in where: a Python scalar branch takes the other branch's dtype, not the condition's
    (lambda x: np.where(x > 0, 1, x), _X8),
    (lambda x: np.where(x > 0, x, 0.5), _F32),
    (lambda x: nd.where(x > 0, x, 0.5), _F32),
    (lambda x: np.where(x != x, 0, x), _F32),
    (lambda x: np.where(x > 0, x, 1), _U64),      # was float64, losing the low bits of 2**64 - 1
    (lambda x: np.where(x > 0, 1.5, x), _X8),
    (lambda x: np.where(x > 0, 1, 2), _X8),
    # an out-of-range Python int branch keeps its low bits in NumPy's where (arithmetic raises)
    (lambda x: (np.where(x > 0, x, 300), np.where(x > 0, -129, x)), _X8),
    (lambda x: np.where(x > 0, x, -1), _U8),
    # a Python int condition is a truth value, not a value of the branches' dtype
    (lambda x: (np.where(256, x, 0), np.where(0, x, 300)), _X8),
    # a Python int outside an int array's range compares exactly (NumPy does not raise)
    (lambda x: (x > 300, x == 1000, x <= -129, 300 > x, x != -1000), _X8),
    (lambda x: (x < -1, -5 != x, x >= 256), _U8),
    (lambda x: x <= 2**70, _U64),
    # b ** 2 is np.square: int8 for bool (b ** 3 is the power loop: int64)
    (lambda x: (x ** 2, x ** 3), _B),
])
def test_python_scalars_follow_nep50_in_where_comparisons_and_squares(fn, x, mode):
    with np.errstate(all="ignore"):
        want = fn(x.copy())
        f = nd.jit(fn, backend="interpret") if mode == "interpret" else nd.jit(fn, hot_threshold=0)
        for _ in range(2):
            got = f(x)
            for g, w in zip(got if isinstance(want, tuple) else (got,), want if isinstance(want, tuple) else (want,),
                            strict=True):
                _same(g, w, "nep50")


def _bool_sums(a, b):
    return (a + b).astype(np.int64), (a * b) * 1.5, (a + b) > True, np.where((a + b) == 1, 1.0, 0.0), a + b


@pytest.mark.parametrize("backend", [None, "iree"])
def test_adding_bools_is_logical_or_in_every_use_of_the_sum(backend):
    """NumPy's bool + bool is True, not 2 (and bool * bool an and): a compiled kernel computed 2 and
    a cast or a comparison read it before it was stored as a bool."""
    if backend == "iree":
        pytest.importorskip("iree.compiler")
    a = np.array([True, True, False, False] * 64)
    b = np.array([True, False, True, False] * 64)
    want = _bool_sums(a, b)
    f = nd.jit(_bool_sums, backend=backend)
    f.compile(a, b)
    for got, w in zip(f(a, b), want, strict=True):
        assert got.dtype == w.dtype and np.array_equal(got, w)


def test_adding_bools_in_a_compiled_loop():
    def fn(a, b):
        body = lambda c: (c[0] + np.int64(1), (a + b).astype(np.int64) + c[1])  # noqa: E731
        return nd.while_loop(lambda c: c[0] < np.int64(2), body, (np.int64(0), np.zeros(a.shape, np.int64)))

    a, b = np.array([True, True, False]), np.array([True, False, False])
    f = nd.jit(fn)
    f.compile(a, b)
    assert np.array_equal(f(a, b)[1], fn(a, b)[1])


@pytest.mark.parametrize("a, b", [(np.int8(126), np.float32(-2.5)), (np.int16(32766), np.float32(-2.5)),
                                  (np.float32(2.5), np.int8(3)), (np.int64(7), np.float32(0.3))])
@pytest.mark.parametrize("mode", ["interpret", None])
def test_a_power_of_an_integer_and_a_float_numpy_scalar_is_numpys_scalar_math(a, b, mode):
    """``np.int8 ** np.float32`` is NumPy's float32 scalar pow, which differs from the ufunc's loop by
    an ulp for some operands: the jitted function computes it as the plain code does."""
    fn = lambda a, b: a ** b  # noqa: E731
    want = fn(a, b)
    f = nd.jit(fn, backend=mode)
    f.compile(a, b)
    got = f(a, b)
    assert type(got) is type(want) and np.asarray(got).tobytes() == np.asarray(want).tobytes()
