"""A while_loop compiled as one Numba function (noodle.backends.numba_while): the same bits as the
interpreter (the spec) and, where the plain function computes in the same order, as the eager
function; what it does not translate, or a call it was not compiled for, runs the Python loop
and still gives those bits."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.jit.call_helpers import assert_same_bits, example_module

import noodle as nd
from noodle.backends.numba_full_reduce import float_extreme, int_extreme, integer_sum, ordered_sum
from noodle.ir.reduction import reduce_values

COMPILED = "compiled as one Numba function"


def _bits(x) -> bytes:
    a = np.asarray(x)
    return a.tobytes() + str(a.dtype).encode() + str(a.shape).encode()


_same = assert_same_bits
_example = example_module


def _notes(f, *args) -> str:
    return "\n".join(f.explain(*args).notes)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n", [1, 2, 17, 300])
def test_the_cg_solve_is_one_compiled_loop_with_the_eager_bits(n: int, dtype: str) -> None:
    mod = _example("dense_layers")
    rng = np.random.default_rng(n)
    m = rng.standard_normal((n, n))
    a = (m @ m.T + n * np.eye(n)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    x, k = mod.conjugate_gradient(a, b)
    solve = nd.jit(mod.conjugate_gradient)
    solve.compile(a, b)
    assert COMPILED in _notes(solve, a, b)
    for _ in range(2):
        xj, kj = solve(a, b)
        _same(kj, k)
        _same(xj, x)


def test_a_matrix_in_fortran_order_still_gives_the_eager_bits() -> None:
    """NumPy picks its BLAS call from the operands' strides: a layout the loop was not compiled for
    runs the Python loop, whose products are NumPy's own."""
    mod = _example("dense_layers")
    rng = np.random.default_rng(3)
    m = rng.standard_normal((40, 40))
    a = m @ m.T + 40 * np.eye(40)
    b = rng.standard_normal(40)
    solve = nd.jit(mod.conjugate_gradient)
    for aa, bb in ((np.asfortranarray(a), b), (a, b)):
        x, k = mod.conjugate_gradient(aa, bb)
        xj, kj = solve(aa, bb)
        _same(kj, k)
        _same(xj, x)


def _all_ops(x, s, k):
    """Elementwise ops of every kind, libm ops through NumPy's loops, casts, comparisons, where,
    products of each rank pair and whole-array reductions, on 0-d and array carries."""

    def cond(c):
        return c[0] < k

    def body(c):
        i, v, t, w, acc, flag = c
        e = np.exp(v * 0.01) - np.tanh(v) + np.sin(t) * np.cos(t) + np.log(abs(v) + 1.0)
        p = np.where(v > 0, v ** 1.5, -v) + abs(t) ** 0.5
        q = (e + p) * 0.25 + t / (abs(s) + 1.0) + np.maximum(v, -s) - np.minimum(t, 0.5)
        m = w @ q + (q @ w) @ w
        cnt = (q > 0.1).astype(np.int32)
        ints = i * np.int64(3) - cnt.astype(np.int64).sum()
        return (i + 1, np.tanh(m * 0.1) + nd.mean(q) * 0.0, t * 0.5 + np.exp(s * 0.001),
                w * 0.999, acc + nd.sum(q * q) + nd.max(m) - nd.min(t) + (ints > 7) * 1.0,
                flag ^ (nd.max(q) > 1.0))

    w0 = np.outer(np.linspace(0.1, 1.0, x.shape[0]), np.ones(x.shape[0])) / x.shape[0]
    return nd.while_loop(cond, body, (np.int64(0), x, x * 0.5, w0.astype(x.dtype), np.float64(0.0),
                                      np.bool_(False)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_translated_op_gives_the_interpreters_bits(dtype: str) -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal(9).astype(dtype)
    s = np.asarray(0.3, dtype)[()]
    args = (x, s, np.int64(6))
    with np.errstate(all="ignore"):
        want = nd.jit(_all_ops, backend="interpret")(*args)
        f = nd.jit(_all_ops)
        f.compile(*args)
        assert COMPILED in _notes(f, *args)
        for _ in range(2):
            _same(f(*args), want)
        # another length: the same compiled function (no extent in its source), the same bits
        x2 = rng.standard_normal(31).astype(dtype)
        _same(f(x2, s, np.int64(4)), nd.jit(_all_ops, backend="interpret")(x2, s, np.int64(4)))


def test_one_compiled_loop_serves_every_length() -> None:
    def fn(x):
        return nd.while_loop(lambda c: c[1] < 5, lambda c: (c[0] * 1.25 - 0.5, c[1] + 1), (x, np.int64(0)))

    f = nd.jit(fn)
    f(np.ones(3))   # the first length compiles
    f.compile(np.ones(3))
    before = {m for m in sys.modules if m.startswith("noodle_kernel_w")}
    for n in (1, 4, 9, 50, 1000):
        x = np.linspace(-1.0, 1.0, n)
        f.compile(x)
        _same(f(x), fn(x))
    after = {m for m in sys.modules if m.startswith("noodle_kernel_w")}
    assert after == before


def test_integer_and_bool_carries_wrap_and_flip_as_numpy_does() -> None:
    def fn(a, b):
        def body(c):
            i, x, y, flag = c
            return i + 1, x * np.int8(3) + np.int8(7), y - np.int64(1 << 62) * 3, flag != (nd.max(x) > 0)

        return nd.while_loop(lambda c: c[0] < 9, body, (np.int64(0), a, b, np.bool_(True)))

    a = np.arange(-20, 20, dtype=np.int8)
    b = np.int64(5)
    with np.errstate(all="ignore"):
        want = fn(a, b)
        f = nd.jit(fn)
        f.compile(a, b)
        assert COMPILED in _notes(f, a, b)
        _same(f(a, b), want)


def test_what_is_not_translated_runs_the_python_loop_and_explain_names_it() -> None:
    def fn(x):   # a reduction over the first axis in the body
        return nd.while_loop(lambda c: c[1] < 3, lambda c: (c[0] * 2.0 + c[0].sum(axis=0), c[1] + 1),
                             (x, np.int64(0)))

    x = np.arange(6.0).reshape(2, 3)
    f = nd.jit(fn)
    f.compile(x)
    notes = _notes(f, x)
    assert COMPILED not in notes and "over some axes" in notes
    _same(f(x), fn(x))


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8"])
def test_a_gather_in_a_compiled_loop_follows_numpys_bounds_rule(dtype: str) -> None:
    """``x[idx]`` (rows of a matrix, or elements) inside the compiled function: negative indices
    count from the end; an index outside ``-n..n-1`` raises NumPy's IndexError (the Python loop
    runs and raises), never a read outside the array."""
    order = np.array([5, 4, 3, 2, 1, 0], dtype)
    for x in (np.arange(6.0), np.arange(12.0).reshape(6, 2)):
        def fn(x, order=order):
            return nd.while_loop(lambda c: c[1] < 3, lambda c: (c[0] * 2.0 + c[0][order], c[1] + 1),
                                 (x, np.int64(0)))

        f = nd.jit(fn)
        f.compile(x)
        assert COMPILED in _notes(f, x)
        _same(f(x), fn(x))
    if dtype != "uint8":
        back = np.array([-1, -6, 0, 2, 3, 1], dtype)

        def wrapped(x):
            return nd.while_loop(lambda c: c[1] < 2, lambda c: (c[0] + c[0][back] * 0.5, c[1] + 1), (x, np.int64(0)))

        x = np.linspace(0, 1, 6)
        _same(nd.jit(wrapped)(x), wrapped(x))
    bad = np.array([0, 1, 6], dtype)

    def outside(x):
        return nd.while_loop(lambda c: c[1] < 2, lambda c: (c[0][:3] + c[0][bad][:3], c[1] + 1), (x[:3], np.int64(0)))

    with pytest.raises(IndexError):
        outside(np.arange(6.0))
    f = nd.jit(outside)
    f.compile(np.arange(6.0))
    assert COMPILED in _notes(f, np.arange(6.0))   # the compiled loop stops at the bad index
    with pytest.raises(IndexError):
        f(np.arange(6.0))


def _stencil(u, k):
    """An explicit diffusion step with fixed ends: slices of the carried value and a concatenate."""
    def body(c):
        v, i = c
        inner = v[1:-1] + k * (v[2:] - 2.0 * v[1:-1] + v[:-2])
        return nd.concatenate([v[:1], inner, v[-1:]]), i + 1

    return nd.while_loop(lambda c: c[1] < 25, body, (u, np.int64(0)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_stencil_with_slices_and_concatenate_is_one_compiled_loop(dtype: str) -> None:
    k = np.asarray(0.2, dtype)[()]
    f = nd.jit(_stencil)
    for n in (3, 50, 1001):
        u = np.random.default_rng(n).standard_normal(n).astype(dtype)
        want = _stencil(u, k)
        f.compile(u, k)
        assert COMPILED in _notes(f, u, k)
        _same(f(u, k), want)


_VIEWS = [
    lambda v: v + v[::-1],                                  # a reversed view, elementwise
    lambda v: nd.concatenate([v[1:], v[:1]]) * 0.5,        # a rotation
    lambda v: v - nd.sum(v[::2]) * 0.01,                    # a whole-array sum of a strided view
    lambda v: v + nd.max(v[1:]) * 0.25,                     # of a contiguous one
    lambda v: nd.concatenate([v[-8::-1], v[:0], v])[-v.shape[0]:] * 0.9,   # empty under either step sign
    lambda v: v * 0.5 + v[::-3].sum() * 0.0,
]


@pytest.mark.parametrize("k", range(len(_VIEWS)))
@pytest.mark.parametrize("n", [2, 5, 12])
def test_views_in_a_compiled_loop_give_the_interpreters_bits(k: int, n: int) -> None:
    def fn(x):
        return nd.while_loop(lambda c: c[1] < 3, lambda c: (_VIEWS[k](c[0]), c[1] + 1), (x, np.int64(0)))

    x = np.random.default_rng(n).standard_normal(n)
    with np.errstate(all="ignore"):
        want = nd.jit(fn, backend="interpret")(x)
        _same(want, fn(x))
        f = nd.jit(fn)
        f.compile(x)
        assert COMPILED in _notes(f, x)
        _same(f(x), want)


def test_views_in_two_dimensions() -> None:
    def fn(x):
        def body(c):
            v, i = c
            rows = nd.concatenate([v[1:], v[:1]], axis=0)           # contiguous row blocks
            cols = nd.concatenate([v[:, 1:], v[:, :1]], axis=1)     # strided column blocks
            return rows * 0.5 + cols * 0.25 + nd.sum(v[:, ::2]) * 1e-3, i + 1

        return nd.while_loop(lambda c: c[1] < 4, body, (x, np.int64(0)))

    x = np.random.default_rng(7).standard_normal((5, 6))
    want = nd.jit(fn, backend="interpret")(x)      # the defined-order sum (NumPy's own order may differ)
    np.testing.assert_allclose(want[0], fn(x)[0], rtol=1e-12)
    f = nd.jit(fn)
    f.compile(x)
    assert COMPILED in _notes(f, x)
    _same(f(x), want)


@pytest.mark.parametrize("body, why", [
    (lambda v: nd.concatenate([np.tanh(v[::2]), v[1::2]]), "strided view"),
    (lambda v: v[::-1], "view of another"),
])
def test_views_a_compiled_loop_does_not_take_run_the_python_loop(body, why) -> None:
    def fn(x):
        return nd.while_loop(lambda c: c[1] < 3, lambda c: (body(c[0]), c[1] + 1), (x, np.int64(0)))

    x = np.random.default_rng(1).standard_normal(8)
    f = nd.jit(fn)
    f.compile(x)
    notes = _notes(f, x)
    assert COMPILED not in notes and why in notes
    _same(f(x), fn(x))


def test_a_max_of_no_values_raises_as_numpy_does() -> None:
    def fn(x):
        return nd.while_loop(lambda c: (c[1] < 3) & (nd.max(c[0]) > 0), lambda c: (c[0] + 1.0, c[1] + 1),
                             (x, np.int64(0)))

    x = np.zeros(0)
    f = nd.jit(fn)
    with pytest.raises(ValueError, match="zero-size"):
        fn(x)
    with pytest.raises(ValueError, match="empty axis has no identity"):   # said when traced
        f(x)


def test_a_loop_that_never_runs_returns_its_initial_carry() -> None:
    def fn(x):
        return nd.while_loop(lambda c: c[1] > 0, lambda c: (c[0] * 2.0, c[1] - 1), (x, np.int64(0)))

    x = np.arange(4.0)
    f = nd.jit(fn)
    f.compile(x)
    _same(f(x), fn(x))


_VALUES = st.lists(st.sampled_from([0.0, -0.0, 1.5, -2.25, 1e300, -1e300, np.inf, -np.inf, np.nan, 3e-310,
                                    7.0, -7.0, 0.1, 1e16, -1e16]), min_size=0, max_size=40)


@settings(max_examples=60, deadline=None)
@given(_VALUES, st.sampled_from(["float64", "float32"]), st.integers(1, 4))
def test_whole_array_reductions_follow_the_defined_order(values, dtype, reps) -> None:
    x = np.asarray(values * reps, dtype=dtype)
    with np.errstate(all="ignore"):
        want = reduce_values("sum", x, None, False, "float64")
    assert _bits(np.float64(ordered_sum(x))) == _bits(np.float64(want))
    if x.size:
        for op, largest in (("max", True), ("min", False)):
            want = reduce_values(op, x, None, False, dtype)
            assert _bits(np.asarray(float_extreme(x, largest), dtype)) == _bits(want), op


@pytest.mark.parametrize("n", [4095, 4096, 4097, 20000])
def test_ordered_sum_over_chunks(n: int) -> None:
    x = np.random.default_rng(n).standard_normal(n) * 10.0 ** np.random.default_rng(n + 1).integers(-8, 8, n)
    assert ordered_sum(x) == float(reduce_values("sum", x, None, False, "float64"))
    assert ordered_sum(x.astype(np.float32)) == float(reduce_values("sum", x.astype(np.float32), None, False,
                                                                    "float64"))


@pytest.mark.parametrize("dtype", ["int8", "uint16", "int64", "uint64", "bool"])
def test_integer_reductions_wrap_like_numpy(dtype: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 200, 1000).astype(dtype) if dtype != "bool" else rng.integers(0, 2, 1000).astype(bool)
    if dtype == "int64":
        x = x * np.int64(1 << 56)       # the sum wraps
    acc = np.uint64(0) if dtype.startswith("uint") else np.int64(0)
    with np.errstate(all="ignore"):
        assert integer_sum(x, acc) == reduce_values("sum", x, None, False, str(np.asarray(acc).dtype))
    if dtype != "bool":
        assert int_extreme(x, True) == x.max() and int_extreme(x, False) == x.min()


_OPS = [
    lambda v, s: v * s + 1.0,
    lambda v, s: v - s * v,
    lambda v, s: np.exp(v * 0.1),
    lambda v, s: np.tanh(v),
    lambda v, s: np.where(v > s, v, s - v),
    lambda v, s: abs(v) ** 0.5,
    lambda v, s: np.maximum(v, s) / (1.0 + abs(s)),
    lambda v, s: (v * 1000.0).astype(np.int32).astype(v.dtype) * 0.001,
    lambda v, s: v + nd.mean(v),
    lambda v, s: -v + nd.max(v) * 0.5,
    lambda v, s: v + v[::-1] * s,
    lambda v, s: nd.concatenate([v[1:], v[:1]]) - s,
    lambda v, s: v[np.arange(v.shape[0])[::-1]] * s + v,          # a gather (a constant index array)
]


def _random_loop(table, ops, trips):
    """``fn(x, s)``: a while_loop of ``trips`` steps, each the ops of ``table`` picked by ``ops``."""
    def fn(x, s):
        def body(c):
            v, k = c
            for o in ops:
                v = table[o](v, s).astype(v.dtype)
            return v, k + 1

        return nd.while_loop(lambda c: c[1] < trips, body, (x, np.int64(0)))

    return fn


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, len(_OPS) - 1), min_size=1, max_size=6), st.integers(0, 5),
       st.sampled_from(["float64", "float32"]), st.integers(1, 40))
def test_random_loop_bodies_give_the_interpreters_bits(ops, trips, dtype, n) -> None:
    fn = _random_loop(_OPS, ops, trips)

    x = np.random.default_rng(n).standard_normal(n).astype(dtype)
    s = np.asarray(0.7, dtype)[()]
    with np.errstate(all="ignore"):
        want = nd.jit(fn, backend="interpret")(x, s)
        f = nd.jit(fn)
        f.compile(x, s)
        assert COMPILED in _notes(f, x, s)
        _same(f(x, s), want)


_BROADCASTS = [
    # (carry shape, operand shape, body): operands of another shape are broadcast as NumPy does
    ((4, 6), (6,), lambda v, w: v * w + 1.0),                      # a row vector along the rows
    ((4, 6), (4, 1), lambda v, w: v - w * 0.5),                    # a column
    ((4, 6), (1, 6), lambda v, w: np.maximum(v, w) * 0.75),        # a (1, n) row
    ((5, 3), (5,), lambda v, w: v * 0.5 + w[:, None] * w[None, :3]),   # an outer product: no operand of the full shape
    ((2, 3, 4), (3, 1), lambda v, w: v * 0.9 + w),                 # the middle dimension broadcast
    ((1, 7), (7,), lambda v, w: v + w * 0.125),                    # a dimension of 1 in the result
    ((3, 4), (4,), lambda v, w: np.where(v > w, v - w, w * 0.5)),  # where, three shapes
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("k", range(len(_BROADCASTS)))
def test_broadcast_operands_in_a_compiled_loop_give_the_interpreters_bits(k: int, dtype: str) -> None:
    """Elementwise work whose operands have other shapes (rows, columns, outer products) is
    indexed as NumPy broadcasts it, inside the one compiled function."""
    shape, wshape, op = _BROADCASTS[k]

    def fn(x, w):
        return nd.while_loop(lambda c: c[1] < 3, lambda c: (op(c[0], w).astype(c[0].dtype), c[1] + 1),
                             (x, np.int64(0)))

    rng = np.random.default_rng(k)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    with np.errstate(all="ignore"):
        want = nd.jit(fn, backend="interpret")(x, w)
        _same(want, fn(x, w))          # elementwise only: NumPy's own order is the same
        f = nd.jit(fn)
        f.compile(x, w)
        assert COMPILED in _notes(f, x, w)
        _same(f(x, w), want)


def test_a_reversed_view_after_means_compiles_without_aborting_the_process(tmp_path) -> None:
    """A random loop body once aborted the whole process while Numba compiled it: LLVM 22's loop
    vectorizer (llvmlite's wheels keep LLVM's assertions on) asserted "VPlan cost model and legacy
    cost model disagreed" on the loop reading ``v[::-1]`` after four means. Reversed views are
    copied now; the body runs in a child process so that an abort fails this test, not the run."""
    code = """
import numpy as np, noodle as nd
from tests.jit.test_compiled_loops import _OPS
def fn(x, s):
    def body(c):
        v, k = c
        for o in (8, 8, 8, 8, 10, 9):
            v = _OPS[o](v, s).astype(v.dtype)
        return v, k + 1
    return nd.while_loop(lambda c: c[1] < 4, body, (x, np.int64(0)))
x = np.random.default_rng(20).standard_normal(20).astype("float32")
s = np.asarray(0.7, "float32")[()]
f = nd.jit(fn)
f.compile(x, s)
want = nd.jit(fn, backend="interpret")(x, s)
got = f(x, s)
assert got[0].tobytes() == want[0].tobytes()
print("compiled" if any("compiled as one Numba function" in n for n in f.explain(x, s).notes) else "python loop")
"""
    import os
    import subprocess

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))   # compiled now, not loaded from a cache
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("compiled")


_ROW_REDUCTIONS = [
    # row-wise normalizations and statistics: reductions over the last axis, broadcast back
    lambda v: v - v.mean(axis=-1, keepdims=True) * 0.5,
    lambda v: v / (1.0 + abs(v).sum(axis=1, keepdims=True)),
    lambda v: v * 0.5 + v.max(axis=-1, keepdims=True) * 0.25 - v.min(axis=-1)[:, None] * 0.25,
    lambda v: v + nd.concatenate([v.sum(axis=-1, keepdims=True), v[:, 1:]], axis=1) * 0.01,
    lambda v: v * 0.9 + v[:, ::2].sum(axis=1, keepdims=True) * 0.001,   # of a strided view
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("k", range(len(_ROW_REDUCTIONS)))
def test_reductions_over_the_last_axis_in_a_compiled_loop_give_the_interpreters_bits(k: int, dtype: str) -> None:
    """sum/mean/max/min over the last axis inside the one compiled function: each row in the
    defined order (the interpreter's bits), NaN, infinities and signed zeros included."""
    def fn(x):
        return nd.while_loop(lambda c: c[1] < 3, lambda c: (_ROW_REDUCTIONS[k](c[0]).astype(c[0].dtype), c[1] + 1),
                             (x, np.int64(0)))

    rng = np.random.default_rng(k)
    for shape in ((5, 7), (3, 4100), (1, 1)):
        x = rng.standard_normal(shape).astype(dtype)
        if shape[0] > 2:
            x[1, 2], x[2, :] = np.nan, -0.0
            x[0, 1] = np.inf
        with np.errstate(all="ignore"):
            want = nd.jit(fn, backend="interpret")(x)
            np.testing.assert_allclose(want[0], fn(x)[0], rtol=1e-4 if dtype == "float32" else 1e-10)
            f = nd.jit(fn)
            f.compile(x)
            assert COMPILED in _notes(f, x)
            got = f(x)
            _same(got[1], want[1])
            # NaN by position: which NaN an op on two NaNs returns depends on its operand order,
            # which a compiler may swap (the project's differential rule); every other value by its bits
            g, w = got[0], want[0]
            assert g.dtype == w.dtype and g.shape == w.shape
            assert np.array_equal(np.isnan(g), np.isnan(w))
            assert g[~np.isnan(g)].tobytes() == w[~np.isnan(w)].tobytes()


def test_integer_rows_and_an_empty_last_axis_in_a_compiled_loop() -> None:
    """Integer row sums wrap as NumPy's do; an empty row sums to 0; the max of an empty row runs
    the Python loop, which raises as NumPy does."""
    def summed(x):
        return nd.while_loop(lambda c: c[1] < 2, lambda c: (c[0] + c[0].sum(axis=1, keepdims=True), c[1] + 1),
                             (x, np.int64(0)))

    x = (np.arange(12, dtype=np.int64).reshape(3, 4) + 1) * np.int64(1 << 60)
    with np.errstate(all="ignore"):
        want = summed(x)
        f = nd.jit(summed)
        f.compile(x)
        assert COMPILED in _notes(f, x)
        _same(f(x), want)
    e = np.zeros((3, 0))
    _same(nd.jit(summed)(e), summed(e))

    def biggest(x):
        return nd.while_loop(lambda c: c[1] < 2, lambda c: (c[0] + c[0].max(axis=1, keepdims=True), c[1] + 1),
                             (x, np.int64(0)))

    with pytest.raises(ValueError):
        biggest(e)
    with pytest.raises(ValueError):
        nd.jit(biggest)(e)


_OPS_2D = [
    lambda v, w: v * w + 0.5,                                   # a row vector broadcast
    lambda v, w: v - v.mean(axis=-1, keepdims=True),
    lambda v, w: v / (1.0 + abs(v).sum(axis=1, keepdims=True)),
    lambda v, w: np.maximum(v, v.max(axis=-1)[:, None] * 0.5),
    lambda v, w: np.tanh(v) + w[None, :] * 0.25,
    lambda v, w: v * 0.5 + v[:, ::-1] * 0.25,                    # a reversed view (copied)
    lambda v, w: nd.concatenate([v[:, 1:], v[:, :1]], axis=1) - v.min(axis=1, keepdims=True),
]


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(0, len(_OPS_2D) - 1), min_size=1, max_size=5), st.integers(0, 4),
       st.sampled_from(["float64", "float32"]), st.integers(1, 6), st.integers(1, 30))
def test_random_two_dimensional_loop_bodies_give_the_interpreters_bits(ops, trips, dtype, rows, cols) -> None:
    """Random bodies of broadcasts, last-axis reductions, reshapes and views on a matrix carry."""
    fn = _random_loop(_OPS_2D, ops, trips)

    rng = np.random.default_rng(rows * 100 + cols)
    x = rng.standard_normal((rows, cols)).astype(dtype)
    w = rng.standard_normal(cols).astype(dtype)
    with np.errstate(all="ignore"):
        want = nd.jit(fn, backend="interpret")(x, w)
        f = nd.jit(fn)
        f.compile(x, w)
        assert COMPILED in _notes(f, x, w)
        got = f(x, w)
    _same(got[1], want[1])
    g, wv = got[0], want[0]      # NaN by position (see above); everything else by its bits
    assert g.dtype == wv.dtype and g.shape == wv.shape and np.array_equal(np.isnan(g), np.isnan(wv))
    assert g[~np.isnan(g)].tobytes() == wv[~np.isnan(wv)].tobytes()


def test_an_element_and_reductions_of_views_compile_and_stay_compiled() -> None:
    """``c[0][0]`` (a slice and a reshape to 0-d) and reductions or reshapes of a view: Numba types
    a stepped slice as non-contiguous and refuses to reshape it, which once failed at the first
    call and turned the whole function interpreted. Views are copied first now, and what Numba
    cannot type fails when the loop is compiled (a Python loop), never at a call."""
    bodies = [
        lambda v: v * 0.5 + v[0],
        lambda v: v * 0.5 + v[1:].sum(),
        lambda v: v - nd.concatenate([v[1:].reshape((1, -1)).sum(axis=-1), v[1:]]) * 0.25,
    ]
    for body in bodies:
        def fn(x, body=body):
            return nd.while_loop(lambda c: c[1] < 3, lambda c: (body(c[0]), c[1] + 1), (x, np.int64(0)))

        x = np.arange(1.0, 6.0)
        f = nd.jit(fn)
        f.compile(x)
        assert COMPILED in _notes(f, x)
        _same(f(x), nd.jit(fn, backend="interpret")(x))
        assert f.state(x).status == "compiled"
