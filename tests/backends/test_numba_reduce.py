"""The Numba defined-order sum (:mod:`noodle.backends.numba_reduce`) gives the bits of the
definition (:func:`noodle.ir.reduction.reduce_values`), for every layout it takes a path for.

Every float is compared as its integer bits (a flipped sign of zero counts), NaN as "NaN in the
same places". Inputs mix ordinary values with ±0.0, ±inf, NaN and magnitudes from 1e-300 to
1e300 (float32: its own range), so a change in the order of any two additions shows; sizes
sit around ``CHUNK`` (one element short, exact, one over, two chunks and one).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import noodle as nd
from noodle.backends import numba_reduce
from noodle.backends.numba_reduce import ordered_sum_fast
from noodle.backends.split_reduce import SplitReduceKernel
from noodle.ir.reduction import CHUNK, reduce_values

AROUND = [CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 1]


def bits(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def assert_same_bits(got, want) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, want.dtype, got.shape, want.shape)
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    assert np.array_equal(nan_g, nan_w), "NaN in different places"
    assert (bits(got[nan_g]) == bits(np.asarray(np.nan, got.dtype))).all(), "a NaN result is not np.nan"
    bad = np.flatnonzero(bits(got)[~nan_g] != bits(want)[~nan_w])
    assert bad.size == 0, f"{bad.size} of {got.size} differ, first {got[~nan_g][bad[0]]!r} vs {want[~nan_w][bad[0]]!r}"


def hard_values(shape: tuple[int, ...], dtype, rng: np.random.Generator, specials: bool = True) -> np.ndarray:
    """Normal values times 10**k for k over most of the dtype's range, with ±0.0, ±inf, NaN
    sprinkled in (a few per mille each, so most sums stay finite)."""
    big = 300 if np.dtype(dtype) == np.float64 else 36
    with np.errstate(over="ignore"):
        x = (rng.standard_normal(shape) * 10.0 ** rng.integers(-big, big + 1, shape)).astype(dtype)
        # cancellation: many sums near zero, where the order shows most
        x = np.where(rng.random(shape) < 0.3, -np.roll(x, 1), x).astype(dtype)
    if specials:
        pick = rng.random(shape)
        x[pick < 0.002] = 0.0
        x[(pick >= 0.002) & (pick < 0.004)] = -0.0
        x[(pick >= 0.004) & (pick < 0.0045)] = np.inf
        x[(pick >= 0.0045) & (pick < 0.005)] = -np.inf
        x[(pick >= 0.005) & (pick < 0.0055)] = np.nan
    return x


def check(x: np.ndarray, axes: tuple[int, ...]) -> None:
    with np.errstate(all="ignore"):
        want = reduce_values("sum", x, axes, False, "float64")
        got = ordered_sum_fast(x, axes)
    assert_same_bits(got, want)


CASES = [
    ((CHUNK - 1,), (0,)), ((CHUNK,), (0,)), ((CHUNK + 1,), (0,)), ((2 * CHUNK + 1,), (0,)), ((70_001,), (0,)),
    ((1,), (0,)), ((7,), (0,)),
    ((5, CHUNK + 1), (1,)), ((3, 2 * CHUNK + 1), (1,)), ((9, 4095), (1,)), ((300, 17), (1,)), ((2, 3), (1,)),
    ((CHUNK + 1, 40), (0,)), ((2 * CHUNK + 1, 3), (0,)), ((4096, 70), (0,)), ((9, 700), (0,)), ((5, 1), (0,)),
    ((6, 4097, 33), (1,)), ((4, 5, 4095), (0, 1)), ((3, 7, 5, 4097), (2, 3)), ((4097, 3, 5, 6), (0, 1)),
    ((5, 6, 7, 8), (0, 2)), ((5, 6, 7, 8), (1, 3)), ((5, 6, 7, 8), (0, 3)), ((5, 6, 7, 8), (0, 1, 3)),
    ((3, 1, 4097, 1), (1, 2)), ((1, 4097, 1, 2), (0, 1, 2)), ((4, 1, 5), (1,)), ((6, 7, 8), (0, 1, 2)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axes", CASES)
def test_matches_the_definition_bit_for_bit(shape, axes, dtype) -> None:
    rng = np.random.default_rng(hash((shape, axes)) & 0xFFFF)
    check(hard_values(shape, dtype, rng), axes)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_signed_zeros_and_infinities(dtype) -> None:
    """-0.0 sums stay -0.0 (every lane starts at -0.0), inf - inf is NaN, one inf wins."""
    for r in AROUND[:2] + [9]:
        x = np.full((4, r), -0.0, dtype)
        x[1, r // 2] = 0.0
        x[2, 0], x[2, -1] = np.inf, -np.inf
        x[3, -1] = -np.inf
        check(x, (1,))
        check(np.ascontiguousarray(x.T), (0,))
        wide = np.full((r, 40), -0.0, dtype)   # the outer path (kept axis contiguous, wide)
        wide[r // 2, ::3] = 0.0
        wide[0, 1::5], wide[-1, 1::5] = np.inf, -np.inf
        check(wide, (0,))
        check(wide.reshape(1, r, 40), (1,))
    big = np.finfo(np.float64).max / 1.5   # float32 values are added in float64: no overflow there
    check(np.array([big, big, -big, -big] * 9, np.float64), (0,))   # overflow to inf, order decides


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_contiguous_and_other_layouts(dtype) -> None:
    rng = np.random.default_rng(3)
    x = hard_values((2 * CHUNK + 3, 60), dtype, rng)
    check(x.T, (1,))                    # Fortran order
    check(x[::2, ::3], (0,))            # strided
    check(x[::-1], (0,))                # negative strides
    check(x.T[5:9], (1,))
    y = hard_values((6, 9, CHUNK + 1), dtype, rng)
    check(np.moveaxis(y, 2, 0), (0, 2))
    check(y[:, ::2, 1:], (0, 2))


def test_float16_and_empty() -> None:
    rng = np.random.default_rng(4)
    check(rng.standard_normal((40, 300)).astype(np.float16), (1,))
    for shape, axes in [((0,), (0,)), ((3, 0), (1,)), ((0, 3), (1,)), ((0, 3), (0,)), ((4, 0, 2), (0, 2)),
                        ((2, 3), ())]:
        check(np.zeros(shape, np.float32), axes)


@pytest.mark.parametrize("threads", [1, 2])
def test_the_thread_count_changes_no_bit(threads) -> None:
    rng = np.random.default_rng(5)
    # large enough for the parallel variants (1 << 20 elements and more)
    cases = [((600, 2 * CHUNK + 5), (1,)), ((2 * CHUNK + 5, 300), (0,)), ((1 << 21,), (0,)),
             ((3, 3 * CHUNK, 100), (1,))]
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        for shape, axes in cases:
            check(hard_values(shape, np.float64, rng), axes)
    finally:
        numba.set_num_threads(old)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from([1, 2, 3, 8, 9, 31, 500, CHUNK - 1, CHUNK + 1]), min_size=1, max_size=4),
       st.data(), st.sampled_from([np.float32, np.float64]), st.booleans())
def test_any_shape_any_axes(dims, data, dtype, transpose) -> None:
    while np.prod(dims) > 3_000_000:
        dims = dims[1:]
    shape = tuple(dims)
    axes = tuple(sorted(data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))))
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    x = hard_values(shape, dtype, rng, specials=data.draw(st.booleans()))
    if transpose:
        x = x.T
        axes = tuple(sorted(x.ndim - 1 - a for a in axes))
    check(x, axes)


# ---------------------------------------------------------------------- through the JIT
def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("name,fn,shape,dtype", [
    ("sum0", lambda a: (a * 2.0).sum(axis=0), (1000, 1000), np.float64),
    ("sum1", lambda a: (a * 2.0).sum(axis=1), (1000, 1000), np.float64),
    ("mean0", lambda a: (a * 2.0).mean(axis=0, keepdims=True), (CHUNK + 3, 300), np.float32),
    ("softmax", _softmax, (512, 1024), np.float32),
    ("softmax64", _softmax, (300, CHUNK + 1), np.float64),
])
def test_compiled_axis_reductions_match_the_interpreter(name, fn, shape, dtype, monkeypatch) -> None:
    calls = []

    def counted(values, axes):
        calls.append(axes)
        return ordered_sum_fast(values, axes)

    # the Numba backend hands its split kernels this sum (looked up at each call)
    monkeypatch.setattr(numba_reduce, "ordered_sum_fast", counted)
    x = hard_values(shape, dtype, np.random.default_rng(6), specials=False)
    x[3, 5] = np.nan
    with np.errstate(all="ignore"):
        want = np.asarray(nd.jit(fn, backend="interpret")(x))
        f = nd.jit(fn, hot_threshold=10 ** 9)
        assert f.compile(x) == "numba", f"compile failed: {f.state(x).error}"
        got = np.asarray(f(x))
    assert f.stats()["compiled_calls"] == 1
    if not name.startswith("softmax"):   # softmax is one row-wise kernel now (its own defined-order row sums)
        assert calls, "the compiled sum did not run the Numba defined-order sum"
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    assert np.array_equal(nan_g, nan_w) and nan_g.any()
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(bits(got)[~nan_g], bits(want)[~nan_w]), name


def test_split_kernel_reports_its_own_plan(numba_backend) -> None:
    from noodle.backends.spec import Instr, KernelSpec, Reduce

    shape = (400, 300)
    spec = KernelSpec((("float32", shape),), (("float32", 2.0),), (Instr("multiply", (0, 1), "float32"),),
                      (), shape, reduce=Reduce("mean", 2, (0,), False, "float32", (300,)))
    k = numba_backend.compile_kernel(spec)
    assert isinstance(k, SplitReduceKernel)
    assert k.plan.mode == "split" and k.plan.values_mode == k.values.plan.mode
    x = hard_values(shape, np.float32, np.random.default_rng(7), specials=False)
    (got,) = k(x)
    want = reduce_values("mean", x * np.float32(2.0), (0,), False, "float32")
    assert_same_bits(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("length", [1, 7, 8, 9, 1000, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 9])
def test_four_rows_at_once_give_each_rows_defined_sum(length, dtype) -> None:
    """``_rsum_rows`` (the row kernels' group of ``ROWS`` sums, their chains overlapped) against
    the definition row by row, from an offset and with rows a stride apart, specials included."""
    rng = np.random.default_rng(length)
    stride = length + 3
    buf = hard_values((5 + numba_reduce.ROWS * stride,), dtype, rng)
    got = numba_reduce._rsum_rows(buf, 5, stride, length)
    rows = np.stack([buf[5 + g * stride:5 + g * stride + length] for g in range(numba_reduce.ROWS)])
    with np.errstate(all="ignore"):
        want = reduce_values("sum", rows, (1,), False, "float64")
    assert_same_bits(np.array(got), want)
