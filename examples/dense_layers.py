"""A small numerical pipeline: a 3-layer MLP forward pass over batches, then a CG solve (eager and nd.jit).

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


def conjugate_gradient(a, b, iterations: int = 50, tol: float = 1e-10):
    """Solve a x = b for a symmetric positive definite ``a``; returns (x, iterations run).

    Written with nd.while_loop (carry: step, x, residual, direction, squared residual norm), so the
    same function runs eagerly (a Python loop over NumPy) and under nd.jit, where the whole loop is
    one compiled function (noodle.backends.numba_while): no Python runs between iterations.
    """
    r = b.copy()
    init = (np.int64(0), np.zeros(b.shape, b.dtype), r, r.copy(), r @ r)

    def unconverged(c):
        k, _, _, _, rs = c
        return (k < iterations) & (rs >= tol)

    def step(c):
        k, x, r, p, rs = c
        ap = a @ p
        alpha = rs / (p @ ap)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = r @ r
        return k + 1, x, r, r + (rs_new / rs) * p, rs_new

    k, x, _, _, _ = nd.while_loop(unconverged, step, init)
    return x, k


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
    a = m @ m.T + n * np.eye(n)
    b = rng.standard_normal(n)
    x, k = conjugate_gradient(a, b)
    solve = nd.jit(conjugate_gradient)
    solve.compile(a, b)
    xj, kj = solve(a, b)
    # same iteration count; the jitted solve may round sums in another order: agreement to 1e-9
    assert kj == k and np.allclose(xj, x, rtol=1e-9, atol=1e-12), (k, kj, np.abs(xj - x).max())
    residual = np.linalg.norm(a @ x - b)
    print(f"CG: n={n}, residual {residual:.2e}, {int(k)} iterations (eager and nd.jit agree)")
    # A large elementwise update: same-shape float arrays, where the parallel Numba loop can win
    # (once noodle has measured on this machine that it does; until then NumPy runs it).
    big = rng.standard_normal(2_000_000)
    step = np.full_like(big, 0.5)
    for _ in range(60):
        big = nd.multiply(nd.add(big, step), step)
    print(f"elementwise: mean {float(nd.mean(big)):.4f}")


if __name__ == "__main__":
    main()
