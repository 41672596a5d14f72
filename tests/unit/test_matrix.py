"""Matrix: seed API, operators, device bookkeeping and errors."""

from __future__ import annotations

import numpy as np
import pytest

import noodle as nd
from noodle.errors import DeviceUnavailableError, DTypeError, ShapeError

RNG = np.random.default_rng(1)


def test_methods_and_operators_match_numpy() -> None:
    a, b = RNG.standard_normal((5, 5)), RNG.standard_normal((5, 5))
    ma, mb = nd.Matrix(a), nd.Matrix(b)
    np.testing.assert_array_equal(ma.add(mb).numpy(), a + b)
    np.testing.assert_array_equal(ma.subtract(mb).numpy(), a - b)
    np.testing.assert_array_equal(ma.multiply(mb).numpy(), a * b)
    np.testing.assert_allclose(ma.matmul(mb).numpy(), a @ b, rtol=1e-12)
    np.testing.assert_allclose((ma @ mb + ma * 2.0 - mb).numpy(), a @ b + a * 2.0 - b, rtol=1e-12)
    np.testing.assert_allclose((a @ mb).numpy(), a @ b, rtol=1e-12)
    np.testing.assert_array_equal((1.0 - ma).numpy(), 1.0 - a)
    np.testing.assert_array_equal((-ma).numpy(), -a)
    np.testing.assert_array_equal((ma / 2.0).numpy(), a / 2.0)
    assert isinstance(ma + mb, nd.Matrix)


def test_device_and_to() -> None:
    m = nd.Matrix(np.ones((2, 3)))
    assert m.device == "cpu" and m.shape == (2, 3) and m.dtype == np.float64
    assert m.to("cpu") is m
    assert np.asarray(m).shape == (2, 3)
    with pytest.raises(DeviceUnavailableError):
        m.to("gpu")
    with pytest.raises(DeviceUnavailableError):
        m.add(m, device="cuda:0")


def test_nd_ops_accept_matrix_and_return_matrix() -> None:
    m = nd.Matrix(np.arange(6.0).reshape(2, 3))
    r = nd.exp(m)
    assert isinstance(r, nd.Matrix)
    np.testing.assert_array_equal(r.numpy(), np.exp(np.arange(6.0).reshape(2, 3)))
    assert float(nd.sum(m).numpy()) == 15.0


def test_bad_inputs() -> None:
    with pytest.raises(DTypeError):
        nd.Matrix(np.array(["x", "y"]))
    with pytest.raises(ShapeError):
        nd.Matrix(np.ones((2, 3))) @ nd.Matrix(np.ones((2, 3)))
    with pytest.raises(ShapeError):
        nd.Matrix(np.ones(3)) + nd.Matrix(np.ones(4))
