"""A small numerical pipeline: a 3-layer MLP forward pass over batches, then a CG solve.

Run it under noodle to see where each op ran and why:

    noodle run examples/dense_layers.py            # or: make run
    noodle run examples/dense_layers.py --batches 20

Every op goes through noodle's placement engine (device='auto'). On a machine
with a GPU, the large matmuls move there and the data stays there between
layers; on a CPU-only machine they run on NumPy/BLAS and the big elementwise
ops on Numba's parallel loops where those are faster.
"""

from __future__ import annotations

import argparse

import numpy as np

import noodle as nd


def dense(x, w, b, activation: bool = True):
    """One dense layer: x @ w + b, then ReLU."""
    y = nd.add(nd.matmul(x, w), b)
    return nd.maximum(y, 0.0) if activation else y


def softmax(z):
    z = nd.subtract(z, nd.max(z, axis=1, keepdims=True))
    e = nd.exp(z)
    return nd.divide(e, nd.sum(e, axis=1, keepdims=True))


def mlp_forward(x, params):
    h = x
    for i, (w, b) in enumerate(params):
        h = dense(h, w, b, activation=i < len(params) - 1)
    return softmax(h)


def conjugate_gradient(a: nd.Matrix, b, iterations: int = 50, tol: float = 1e-10):
    """Solve a x = b for a symmetric positive definite ``a`` with Matrix ops only."""
    x = np.zeros_like(b)
    r = b.copy()
    p = r.copy()
    rs = float(nd.sum(nd.multiply(r, r)))
    for _ in range(iterations):
        ap = (a @ nd.Matrix(p)).numpy()
        alpha = rs / float(nd.sum(nd.multiply(p, ap)))
        x = nd.add(x, nd.multiply(alpha, p))
        r = nd.subtract(r, nd.multiply(alpha, ap))
        rs_new = float(nd.sum(nd.multiply(r, r)))
        if rs_new < tol:
            break
        p = nd.add(r, nd.multiply(rs_new / rs, p))
        rs = rs_new
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=2048)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    sizes = [512, 1024, 1024, 10]
    params = [(rng.standard_normal((m, n)) / np.sqrt(m), np.zeros(n)) for m, n in zip(sizes, sizes[1:], strict=False)]
    correct = 0
    for _ in range(args.batches):
        x = rng.standard_normal((args.batch_size, sizes[0]))
        probs = mlp_forward(x, params)
        assert np.allclose(np.asarray(probs).sum(axis=1), 1.0)
        correct += int((np.argmax(np.asarray(probs), axis=1) == 0).sum())
    print(f"MLP: {args.batches} batches of {args.batch_size}, class-0 share {correct / (args.batches * args.batch_size):.3f}")

    n = 800
    m = rng.standard_normal((n, n))
    a = nd.Matrix(m @ m.T + n * np.eye(n))
    b = rng.standard_normal(n)
    x = conjugate_gradient(a, b)
    residual = np.linalg.norm(a.numpy() @ x - b)
    print(f"CG: n={n}, residual {residual:.2e}")
    # A large elementwise update: same-shape float arrays, where the parallel Numba loop can win
    # (once noodle has measured on this machine that it does; until then NumPy runs it).
    big = rng.standard_normal(2_000_000)
    step = np.full_like(big, 0.5)
    for _ in range(60):
        big = nd.multiply(nd.add(big, step), step)
    print(f"elementwise: mean {float(nd.mean(big)):.4f}")


if __name__ == "__main__":
    main()
