"""Slicing, indexing, gathers, concatenate/stack in traced code: NumPy is the oracle, on the
interpreter and the default compiled backend (compiled on first call)."""

from __future__ import annotations

import numpy as np
import pytest

import noodle as nd
from noodle.errors import OpIndexError, TraceError
from noodle.nbc import dumps, loads

X = np.arange(24.0).reshape(4, 6) - 7.5

CASES = {
    "stencil": lambda x: x[1:] - x[:-1],
    "cols": lambda x: x[:, :3],
    "step2": lambda x: x[::2],
    "reverse": lambda x: x[::-1],
    "neg_step_cols": lambda x: x[:, ::-4],
    "neg_bounds": lambda x: x[-3:-1, -5:],
    "empty": lambda x: x[3:1],
    "empty_neg": lambda x: x[1:3:-1],
    "clipped": lambda x: x[2:99, -99:2],
    "int_row": lambda x: x[2],
    "int_neg": lambda x: x[-1],
    "int_pair": lambda x: x[1, -2],
    "newaxis": lambda x: x[None, :, None, 1:2],
    "ellipsis": lambda x: x[..., 3],
    "gather_rows": lambda x: x[[3, 0, -1, 0]],
    "gather_cols": lambda x: x[:, np.array([5, -6, 2])],
    "int_and_gather": lambda x: x[1, [0, 5]],
    "gather_2d_index": lambda x: x[np.array([[0, 1], [3, 2]])],
    "const_mask": lambda x: x[np.array([True, False, True, False])],
    "take_flat": lambda x: nd.take(x, np.array([0, 23, -1])),
    "take_axis": lambda x: nd.take(x, [1, 1], axis=1),
    "np_take": lambda x: np.take(x, np.array([2]), axis=0),
    "concat": lambda x: nd.concatenate([x, x[:1]]),
    "concat_axis1_promote": lambda x: nd.concatenate([x, x.astype(np.float32), x.astype(np.int8)], axis=1),
    "np_concat_none": lambda x: np.concatenate([x, x[0]], axis=None),
    "stack": lambda x: nd.stack([x, 2 * x], axis=1),
    "stack_last": lambda x: np.stack([x[0], x[1]], axis=-1),
    "where_mask": lambda x: nd.where(x > 0, x, 0.0),
    "fused_use": lambda x: ((x[:, 1:] - x[:, :-1]) ** 2).sum(axis=1),
}


@pytest.mark.parametrize("backend", ["interpret", None])
@pytest.mark.parametrize("name", sorted(CASES))
def test_indexing_matches_numpy(name: str, backend: str | None) -> None:
    fn = CASES[name]
    want = fn(X)
    f = nd.jit(fn) if backend is None else nd.jit(fn, backend=backend)
    if backend is None:
        f.compile(X)
    got = f(X)
    assert np.asarray(got).dtype == np.asarray(want).dtype and np.shape(got) == np.shape(want)
    np.testing.assert_array_equal(got, want)


def test_eager_functions_return_numpy_results() -> None:
    a, b = np.ones((2, 3), np.float32), np.zeros((1, 3), np.int64)
    for got, want in ((nd.concatenate([a, b]), np.concatenate([a, b])), (nd.stack([a, a], 2), np.stack([a, a], 2)),
                      (nd.take(a, [0, -1], axis=1), np.take(a, [0, -1], axis=1))):
        assert type(got) is type(want) and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fn", [lambda x: x[4], lambda x: x[0, -7], lambda x: x[1, 2, 3]])
def test_integer_index_out_of_range_is_an_index_error(fn) -> None:
    with pytest.raises(IndexError):
        fn(X)
    with pytest.raises(OpIndexError):
        nd.jit(fn)(X)


@pytest.mark.parametrize("backend", ["interpret", None])
def test_gather_out_of_range_is_an_index_error(backend: str | None) -> None:
    f = nd.jit(lambda x, i: x[i]) if backend is None else nd.jit(lambda x, i: x[i], backend=backend)
    np.testing.assert_array_equal(f(X, np.array([-4, 3])), X[[-4, 3]])
    for bad in (np.array([4]), np.array([0, -5])):
        with pytest.raises(IndexError):
            X[bad]
        with pytest.raises(OpIndexError, match="out of bounds"):
            f(X, bad)


def test_traced_mask_indexing_points_to_where() -> None:
    with pytest.raises(TraceError, match=r"nd.where"):
        nd.jit(lambda x: x[x > 0])(X)


def test_slices_round_trip_through_nbc() -> None:
    f = nd.jit(lambda x: nd.concatenate([x[::-1, 1:], x[[0], :-1]]))
    data = f.bytecode(X)
    prog = loads(data)
    assert dumps(prog) == data and any(n.op == "slice" for n in prog.nodes)


def test_slice_runs_outside_fused_regions() -> None:
    prog = nd.jit(lambda x: (x[1:] - x[:-1]) * 2.0).state(X).program
    assert all(n.attr("group") is None for n in prog.nodes if n.op in ("slice", "gather", "concatenate"))


@pytest.mark.parametrize("backend", ["interpret", "numba"])
def test_every_slice_of_short_arrays_matches_numpy(backend: str) -> None:
    """Every start/stop/step over lengths 0, 1 and 5, as bounds the trace normalizes with
    ``slice.indices()``: a negative step from a start before the array (``x[-8::-1]``) selects
    nothing, where reading the normalized start -1 back as a Python index took the last element
    and returned the whole array reversed."""
    f = nd.jit(lambda x, a, b, c: x[a:b:c] + 0.5, backend=backend)
    bounds = [None, -8, -6, -5, -2, -1, 0, 1, 4, 5, 7]
    for n in (0, 1, 5):
        x = np.arange(float(n))
        for a in bounds:
            for b in bounds:
                for c in (-3, -1, 1, 2):
                    got, want = f(x, a, b, c), x[a:b:c] + 0.5
                    assert got.shape == want.shape and np.array_equal(got, want), (n, a, b, c)


def test_an_empty_reversed_slice_stays_empty_downstream() -> None:
    x = np.arange(5.0)
    m = np.arange(20.0).reshape(4, 5)
    assert float(nd.jit(lambda x: x[-8::-1].sum())(x)) == 0.0
    np.testing.assert_array_equal(nd.jit(lambda x: nd.concatenate([x[-8::-1], x]))(x), x)
    assert nd.jit(lambda m: m[-8::-1] * 2.0)(m).shape == (0, 5)


@pytest.mark.parametrize("fn", [
    lambda x: x[2],
    lambda x: x[-1] * 1.0,
    lambda x: x.reshape(5, 1)[2, 0],
    lambda x: x[:1].reshape(())[()],
    lambda x: x[2].copy(),
    lambda x: x[:1].reshape(()),          # a 0-d view: an array in NumPy
    lambda x: x[:1].reshape(()).copy(),   # and its copy
    lambda x: np.where(True, x.sum(), 2.0),   # np.where of scalars: a 0-d array
    lambda x: x.sum(),
])
def test_a_zero_d_result_is_a_scalar_or_an_array_as_numpy_returns_it(fn) -> None:
    """``x[2]`` came back as ``array(2.)`` (the check for NumPy scalars looked at the optimized
    node: a reshape, as for ``x.reshape(())``) and ``np.where(c, a, b)`` of scalars as a scalar;
    now the trace decides, as NumPy would."""
    x = np.arange(5.0)
    want = fn(x)
    f = nd.jit(fn)
    for _ in range(3):
        got = f(x)
        assert type(got) is type(want) and np.array_equal(got, want)


def test_a_python_int_argument_indexes_as_numpy() -> None:
    """A Python int argument used as an index was typed as the array's float64 (NEP 50) and
    refused ("gather indices must be integers"); it is now static, as a shape-deciding value is."""
    x = np.arange(5.0)
    f = nd.jit(lambda x, i: x[i] * 2.0)
    g = nd.jit(lambda x, i: nd.take(x, i))
    for i in (2, -1, 0, 4):
        assert f(x, i) == x[i] * 2.0 and type(f(x, i)) is type(x[i] * 2.0)
        assert g(x, i) == np.take(x, i)
    with pytest.raises(OpIndexError):
        f(x, 7)


def test_an_index_array_on_a_zero_d_array_is_an_index_error() -> None:
    """``x[np.array([0])]`` on a 0-d array compared the index with ``()`` elementwise and raised
    a bare ValueError ("truth value of an empty array"); NumPy raises IndexError."""
    x = np.array(3.0)
    with pytest.raises(IndexError):
        x[np.array([0])]
    with pytest.raises(OpIndexError, match="0-dimensional"):
        nd.jit(lambda x: x[np.array([0])])(x)


@pytest.mark.parametrize("fn", [
    lambda x: x.sum().reshape(()),     # a scalar's reshape to () is a scalar
    lambda x: x[2][...],               # a scalar's [...] is a 0-d array
    lambda x: x[2][...].copy(),
    lambda x: (x[0] > 0) ** 2 * 100,   # np.bool_ ** 2 is scalar math: int64
    lambda x: np.copy(x[0]),           # np.copy of a scalar is a 0-d array
    lambda x: np.copy(x.sum()),
    lambda x: +x[:1].reshape(()),      # +a is np.positive: a 0-d result is a scalar
])
def test_scalars_of_numpy_stay_scalars_or_become_arrays_as_numpy_says(fn) -> None:
    x = np.arange(5.0) + 1.0
    want, got = fn(x), nd.jit(fn)(x)
    assert type(got) is type(want) and np.asarray(got).dtype == np.asarray(want).dtype
    assert np.array_equal(got, want) and not np.shares_memory(got, x)
