"""Every eager op, Matrix, explain() and the device listing, in one short tour.

    python examples/eager_ops.py
"""

from __future__ import annotations

import numpy as np

import noodle as nd


def main() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 3))
    b = rng.standard_normal(3)                   # broadcasts against a's rows

    # Elementwise arithmetic: results equal NumPy's exactly.
    assert np.array_equal(nd.add(a, b), a + b)
    assert np.array_equal(nd.subtract(a, b), a - b)
    assert np.array_equal(nd.multiply(a, 2.0), a * 2.0)
    assert np.array_equal(nd.divide(a, 4.0), a / 4.0)
    assert np.array_equal(nd.power(np.abs(a), 2), np.abs(a) ** 2)
    assert np.array_equal(nd.maximum(a, 0.0), np.maximum(a, 0.0))
    assert np.array_equal(nd.minimum(a, 0.0), np.minimum(a, 0.0))
    assert np.array_equal(nd.where(a > 0, a, -a), np.abs(a))

    # Elementwise math.
    x = np.abs(a) + 1.0
    for name in ("exp", "log", "sqrt", "sin", "cos", "tanh", "abs"):
        ref = np.absolute if name == "abs" else getattr(np, name)
        assert np.array_equal(getattr(nd, name)(x), ref(x))

    # Reductions over axes.
    print("sum over rows:", nd.sum(a, axis=0))
    print("mean:", nd.mean(a), "max:", nd.max(a), "min over cols:", nd.min(a, axis=1, keepdims=True).ravel())

    # Shapes and dtypes.
    print("reshape:", nd.reshape(a, (3, 4)).shape, "transpose:", nd.transpose(a).shape,
          "astype:", nd.astype(a, "float32").dtype)

    # matmul and the Matrix type (data stays on its device until .numpy()).
    m = nd.Matrix(rng.standard_normal((3, 3)))
    r = (m @ m).add(m).multiply(m).subtract(m)
    print(r, "->", r.numpy().shape, "on", r.device)
    print("matmul:", nd.matmul(a, np.eye(3)).shape, "==", np.allclose(nd.matmul(a, np.eye(3)), a))

    # Why an op runs where it runs.
    print(nd.explain("matmul", np.ones((1000, 1000)), np.ones((1000, 1000))))

    # What hardware noodle sees.
    for d in nd.devices():
        print("device:", d.id, d.name)

    # Errors are noodle errors that say what to do.
    try:
        nd.add(np.ones(3), np.ones(4))
    except nd.errors.ShapeError as exc:
        print("ShapeError:", exc)


if __name__ == "__main__":
    main()
