"""Eager ops equal NumPy's results (exactly for arithmetic) and fail with noodle errors."""

from __future__ import annotations

import numpy as np
import pytest

import noodle as nd
from noodle.array import numba_kernels
from noodle.errors import DeviceError, DeviceUnavailableError, DTypeError, NoodleError, ShapeError

RNG = np.random.default_rng(42)
DTYPES = ["float32", "float64", "int64"]


def _arr(shape, dtype):
    if dtype.startswith("int"):
        return RNG.integers(-50, 50, size=shape).astype(dtype)
    return (RNG.standard_normal(shape) * 10).astype(dtype)


BINARY = [("add", np.add), ("subtract", np.subtract), ("multiply", np.multiply),
          ("divide", np.divide), ("maximum", np.maximum), ("minimum", np.minimum)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("name", "ref"), BINARY)
@pytest.mark.parametrize(("sa", "sb"), [((7,), (7,)), ((3, 4), (4,)), ((2, 1, 5), (3, 1)), ((4,), ())])
def test_binary_equals_numpy_exactly(name, ref, dtype, sa, sb) -> None:
    a, b = _arr(sa, dtype), _arr(sb, dtype)
    if name == "divide":
        b = np.where(b == 0, 1, b).astype(dtype)
    got = getattr(nd, name)(a, b)
    want = ref(a, b)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["add", "subtract", "multiply", "divide"])
def test_scalars_follow_numpy_promotion(name) -> None:
    a = _arr((5,), "float32")
    got, want = getattr(nd, name)(a, 2.5), getattr(np, name)(a, 2.5)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    got, want = getattr(nd, name)(3, a), getattr(np, name)(3, a)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "sin", "cos", "tanh", "abs"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unary_equals_numpy(name, dtype) -> None:
    x = np.abs(_arr((3, 5), dtype)) + 0.5
    ref = np.absolute if name == "abs" else getattr(np, name)
    np.testing.assert_array_equal(getattr(nd, name)(x), ref(x))


def test_where_and_power() -> None:
    c = RNG.random((4, 3)) > 0.5
    a, b = _arr((4, 3), "float64"), _arr((3,), "float64")
    np.testing.assert_array_equal(nd.where(c, a, b), np.where(c, a, b))
    np.testing.assert_array_equal(nd.power(np.abs(a), 2.0), np.power(np.abs(a), 2.0))


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("axis", [None, 0, 1, (0, 2), -1])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "int8", "bool"])
def test_reductions(name, axis, keepdims, dtype) -> None:
    """Same values, dtype and type (a NumPy scalar, not a 0-d array, for a full reduction) as NumPy."""
    x = _arr((3, 4, 5), dtype) if dtype != "bool" else _arr((3, 4, 5), "int64") > 0
    got = getattr(nd, name)(x, axis=axis, keepdims=keepdims)
    want = getattr(np, name)(x, axis=axis, keepdims=keepdims)
    assert type(got) is type(want) and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (17, 33, 9), (64, 128, 32)])
def test_matmul_within_blas_tolerance(dtype, m, k, n) -> None:
    a, b = _arr((m, k), dtype), _arr((k, n), dtype)
    got = nd.matmul(a, b)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(got, a.astype(np.float64) @ b.astype(np.float64), rtol=rtol, atol=rtol * k * 100)


def test_shape_errors_are_noodle_errors() -> None:
    with pytest.raises(ShapeError, match=r"\(3,\), \(4,\)"):
        nd.add(np.ones(3), np.ones(4))
    with pytest.raises(ShapeError):
        nd.matmul(np.ones((2, 3)), np.ones((4, 2)))
    with pytest.raises(ShapeError, match="axis"):
        nd.sum(np.ones(3), axis=2)
    with pytest.raises(ShapeError):
        nd.reshape(np.ones(6), (4, 2))


def test_dtype_errors() -> None:
    with pytest.raises(DTypeError, match="<U1"):
        nd.add(np.ones(3), np.array(["a", "b", "c"]))
    with pytest.raises(DTypeError):
        nd.exp(np.array([object(), object()]))
    with pytest.raises(DTypeError):
        nd.astype(np.ones(2), "U3")


def test_device_errors() -> None:
    with pytest.raises(DeviceUnavailableError, match="none is usable"):
        nd.add(np.ones(3), 1.0, device="gpu")
    with pytest.raises(DeviceUnavailableError):
        nd.matmul(np.ones((2, 2)), np.ones((2, 2)), device="cuda:0")
    with pytest.raises(DeviceError, match="tpu"):
        nd.add(np.ones(3), 1.0, device="tpu")
    assert issubclass(DeviceError, NoodleError)


def test_cpu_device_explicit() -> None:
    a = _arr((10,), "float64")
    np.testing.assert_array_equal(nd.add(a, a, device="cpu"), a + a)


def test_shape_helpers() -> None:
    x = _arr((2, 3), "float64")
    np.testing.assert_array_equal(nd.reshape(x, (3, 2)), x.reshape(3, 2))
    np.testing.assert_array_equal(nd.transpose(x), x.T)
    assert nd.astype(x, "float32").dtype == np.float32


NUMBA_CASES = [(n, d) for n in ("add", "subtract", "multiply", "divide", "maximum", "minimum")
               for d in ("float64", "float32", "int64") if not (n == "divide" and d == "int64")]


@pytest.mark.parametrize(("name", "dtype"), NUMBA_CASES)
def test_numba_path_is_bit_identical(monkeypatch, name, dtype) -> None:
    """Force the parallel Numba loop and compare with NumPy, special values included.

    (Integer true division yields float64, so it never takes the same-dtype Numba path.)
    """
    kernel = numba_kernels.binary_kernel(name, dtype)
    assert kernel is not None, "Numba kernels must compile on this machine"
    from noodle.array import ops

    monkeypatch.setattr(ops, "_numba_allowed", lambda: True)
    n = 200_003
    a, b = _arr((n,), dtype), _arr((n,), dtype)
    if dtype.startswith("float"):
        a[:8] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 0.0, 1.0, np.nan]
        b[:8] = [1.0, np.inf, 0.0, 0.0, 0.0, -0.0, np.nan, -np.nan]
    elif name == "divide":
        b = np.where(b == 0, 1, b)
    before = nd.metrics.registry.get("noodle_op_seconds").labels(name, "cpu", "numba").count
    with np.errstate(all="ignore"):
        got = getattr(nd, name)(a, b)
        want = getattr(np, name)(a, b)
    after = nd.metrics.registry.get("noodle_op_seconds").labels(name, "cpu", "numba").count
    assert after == before + 1, "the Numba path was not taken"
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    if dtype.startswith("float"):   # signed zeros and NaN signs too, bit for bit
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
