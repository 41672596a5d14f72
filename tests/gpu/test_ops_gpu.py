"""Eager ops and Matrix on a CUDA GPU (CuPy). Marked gpu: they skip where no GPU exists."""

from __future__ import annotations

import numpy as np
import pytest

import noodle as nd

pytestmark = pytest.mark.gpu

RNG = np.random.default_rng(3)


def _cp():
    import cupy

    return cupy


@pytest.mark.parametrize("name", ["add", "subtract", "multiply", "divide", "maximum", "minimum"])
def test_binary_on_gpu_equals_numpy(name) -> None:
    a, b = RNG.standard_normal((300, 200)), RNG.standard_normal((200,)) + 3.0
    got = getattr(nd, name)(a, b, device="gpu")
    assert type(got).__module__.startswith("cupy")
    np.testing.assert_array_equal(_cp().asnumpy(got), getattr(np, name)(a, b))


def test_matmul_on_gpu_within_tolerance() -> None:
    a, b = RNG.standard_normal((512, 256)), RNG.standard_normal((256, 128))
    got = _cp().asnumpy(nd.matmul(a, b, device="cuda:0"))
    np.testing.assert_allclose(got, a @ b, rtol=1e-10, atol=1e-10)


def test_matrix_stays_on_gpu_between_ops() -> None:
    from noodle import metrics

    a = RNG.standard_normal((256, 256))
    m = nd.Matrix(a).to("gpu")
    assert m.device.startswith("cuda")
    counter = metrics.registry.get("noodle_transfer_bytes_total")
    before = counter.value("d2h") if counter else 0.0
    r = (m @ m + m).multiply(m)
    assert r.device.startswith("cuda")
    after = metrics.registry.get("noodle_transfer_bytes_total").value("d2h")
    assert after == before, "an op copied data back to the host"
    np.testing.assert_allclose(r.numpy(), (a @ a + a) * a, rtol=1e-10)


def test_auto_places_big_matmul_on_gpu_and_keeps_gpu_data_there() -> None:
    a = RNG.standard_normal((2000, 2000)).astype(np.float32)
    d = nd.explain("matmul", a, a)
    assert d.device.startswith("cuda"), str(d)
    ga = _cp().asarray(a)
    d2 = nd.explain("add", ga, ga)
    assert d2.device.startswith("cuda"), str(d2)


def test_reductions_on_gpu() -> None:
    x = RNG.standard_normal((64, 32))
    for name in ("sum", "mean", "max", "min"):
        got = _cp().asnumpy(getattr(nd, name)(x, axis=0, device="gpu"))
        np.testing.assert_allclose(got, getattr(np, name)(x, axis=0), rtol=1e-12)
