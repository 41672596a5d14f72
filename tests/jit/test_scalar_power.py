"""``a ** b`` of two NumPy scalars is NumPy's scalar math (C's ``pow``), not ``np.power``'s loop.

The two differ in the last bit for about 5% of float64 and 20% of float32 operands on this
machine (``np.power`` has SIMD loops and a square fast path for ``** 2``). A plain function's
``s ** y`` on a sum, an element ``x[i]``, an argument or a loop's scalar carry gets the scalar
result; the jitted function must return the same bits. Where NumPy itself calls the ufunc
(arrays, 0-d arrays, an explicit ``np.power``), so must the jitted function. The plain function,
run on the same values, is the oracle."""

from __future__ import annotations

import numpy as np
import pytest

import noodle as nd
from noodle.nbc import dumps, loads


def _bits(x) -> tuple:
    a = np.asarray(x)
    return a.tobytes(), a.dtype.str, type(x).__name__


def _operands(dtype: str, n: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    t = np.dtype(dtype).type
    xs = rng.uniform(0.01, 50.0, n)
    ys = np.concatenate([rng.uniform(-4, 4, n - 6), [2.0, 0.5, -1.0, 3.0, 1.0, 0.0]])
    return [(t(x), t(y)) for x, y in zip(xs, ys, strict=True)]


def _mismatches(jitted, plain, cases) -> list:
    bad = []
    with np.errstate(all="ignore"):
        for args in cases:
            got, want = jitted(*args), plain(*args)
            if _bits(got) != _bits(want):
                bad.append((args, got, want))
    return bad


def _jitted(fn, args, backend=None):
    j = nd.jit(fn) if backend is None else nd.jit(fn, backend=backend)
    j.compile(*args)
    return j


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", [None, "interpret"])
def test_power_of_two_numpy_scalars_is_scalar_math(dtype: str, backend) -> None:
    def f(x, y):
        return x ** y

    cases = _operands(dtype, 600, 1)
    bad = _mismatches(_jitted(f, cases[0], backend), f, cases)
    assert not bad, f"{len(bad)} of {len(cases)} differ, e.g. {bad[:3]}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_scalars_the_function_makes_itself(dtype: str) -> None:
    """An element, a sum and a Python float base: all scalars in NumPy."""

    def f(v, y):
        return v[1] ** y + v.sum() ** y * 0.0 + 1.5 ** y

    rng = np.random.default_rng(2)
    cases = [(rng.uniform(0.1, 3.0, 4).astype(dtype), y) for _, y in _operands(dtype, 300, 3)]
    bad = _mismatches(_jitted(f, cases[0]), f, cases)
    assert not bad, f"{len(bad)} of {len(cases)} differ, e.g. {bad[:3]}"


def test_scalar_carries_and_captured_scalars_in_loops() -> None:
    def fori(x, y):
        return nd.fori_loop(0, 3, lambda i, c: c ** y + i ** 2 * 0.0, x)

    def wloop(x, y):
        return nd.while_loop(lambda c: c[0] < 4, lambda c: (c[0] + 1, c[1] ** y), (np.int64(0), x))[1]

    cases = _operands("float64", 300, 4)
    cases = [(x, y / 4) for x, y in cases]
    for fn in (fori, wloop):
        bad = _mismatches(_jitted(fn, cases[0]), fn, cases)
        assert not bad, f"{fn.__name__}: {len(bad)} of {len(cases)} differ, e.g. {bad[:3]}"


def test_where_numpy_calls_the_ufunc_so_does_the_jitted_function() -> None:
    """0-d arrays passed in, an explicit np.power, and arrays keep the ufunc's results."""

    def op(a, b):
        return a ** b

    def explicit(a, b):
        return np.power(a, b)

    def arrays(v, y):
        return v ** y, v ** 2, v ** 0.5

    cases = _operands("float64", 300, 5)
    zero_d = [(np.asarray(x), np.asarray(y)) for x, y in cases]
    bad = _mismatches(_jitted(op, zero_d[0]), op, zero_d)
    assert not bad, f"0-d arrays: {len(bad)} differ, e.g. {bad[:3]}"
    bad = _mismatches(_jitted(explicit, cases[0]), explicit, cases)
    assert not bad, f"np.power: {len(bad)} differ, e.g. {bad[:3]}"
    rng = np.random.default_rng(6)
    v = rng.uniform(0.01, 50.0, 1000)
    j = _jitted(arrays, (v, np.float64(0.3)))
    for y in (np.float64(0.3), np.float64(-1.7)):
        for g, w in zip(j(v, y), arrays(v, y), strict=True):
            assert _bits(g) == _bits(w)


def test_the_scalar_power_survives_bytecode_and_is_not_strength_reduced() -> None:
    def f(x):
        return x ** 2.0

    j = _jitted(f, (np.float64(3.0),))
    text = j.nir(np.float64(3.0))
    assert "scalar=True" in text and "multiply" not in text, text
    program = j.state(np.float64(3.0)).program
    back = loads(dumps(program))
    assert dumps(back) == dumps(program)
    huge = np.float64(1.3407807929942596e154)   # a square near overflow: pow and x * x may differ
    assert _bits(j(huge)) == _bits(f(huge))


#: (name, function, arguments): where NumPy routes ``**`` to the ufunc or to scalar math by the
#: operands' kinds; found by a review of the first version of this fix, which marked every ``**``
#: of two 0-d values. Each case must match the plain function in value, dtype and type.
ROUTING = [
    ("int scalar ** Python float: ufunc", lambda x: x ** 2.5, (np.int64(34),)),
    ("int scalar ** float parameter: ufunc", lambda x, y: x ** y, (np.int64(6), -0.4944473915015619)),
    ("float parameter ** int scalar: ufunc", lambda x, y: x ** y, (16.698812793431905, np.int64(-2))),
    ("loop index ** Python float: ufunc",
     lambda x: nd.fori_loop(10, 11, lambda i, s: s + i ** 2.5, x), (np.float64(0.0),)),
    ("np.where of scalars is a 0-d array: ufunc",
     lambda x, y: np.where(x > 0, x, y) ** y, (np.float64(12.732), np.float64(-1.809))),
    ("astype of 0-d arrays stays an array: ufunc",
     lambda x, y: x.astype(np.float64) ** y.astype(np.float64), (np.asarray(12.732), np.asarray(-1.809))),
    ("copy of 0-d arrays stays an array: ufunc", lambda x, y: x.copy() ** y.copy(),
     (np.asarray(12.732), np.asarray(-1.809))),
    ("scalar[...] is a 0-d array: ufunc", lambda x, y: x[...] ** y,
     (np.float64(7.89932151419916), np.float64(2.680517657156548))),
    ("0-d array[()] is a scalar: scalar math", lambda x, y: x[()] ** y[()],
     (np.asarray(12.732), np.asarray(-1.809))),
    ("astype of scalars stays a scalar: scalar math",
     lambda x, y: x.astype(np.float64) ** y, (np.float32(12.692317), np.float64(-0.698))),
]


@pytest.mark.parametrize("backend", [None, "interpret"])
@pytest.mark.parametrize("case", ROUTING, ids=[c[0] for c in ROUTING])
def test_numpys_routing_of_power_between_ufunc_and_scalar_math(case, backend) -> None:
    _name, fn, args = case
    j = _jitted(fn, args, backend)
    with np.errstate(all="ignore"):
        for _ in range(2):
            got, want = j(*args), fn(*args)
            assert _bits(got) == _bits(want), (got, want)
