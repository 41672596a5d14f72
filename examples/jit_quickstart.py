"""@noodle.jit in five minutes: trace, inspect, compile, run fused kernels.

Run: python examples/jit_quickstart.py
"""

from __future__ import annotations

import time

import numpy as np

import noodle as nd


@nd.jit
def chain(a, b, c, d, e):
    """Five inputs, seven NumPy ops, one fused kernel."""
    return a * b + c * d - 0.5 * nd.exp(-e)


@nd.jit
def dense_relu(x, w, b):
    """Matmul with a fused bias + ReLU epilogue."""
    return nd.maximum(x @ w + b, 0.0)


@nd.jit
def safe_ratio(a, b):
    """Control flow on values must be written with nd.where (an `if` would raise TraceError)."""
    return nd.where(nd.abs(b) > 1e-12, a / b, 0.0).sum(axis=0)


def main() -> None:
    rng = np.random.default_rng(0)
    xs = [rng.random(1_000_000) for _ in range(5)]

    print(chain.nir(*xs))                         # the optimized NIR: one group [g0]
    print("backend:", chain.compile(*xs))         # compile now instead of waiting to be hot
    t0 = time.perf_counter()
    out = chain(*xs)
    print(f"fused call: {1e3 * (time.perf_counter() - t0):.2f} ms")
    want = xs[0] * xs[1] + xs[2] * xs[3] - 0.5 * np.exp(-xs[4])
    print("matches NumPy:", np.allclose(out, want))
    plan = chain.memory_plan(*xs)
    print(f"peak working memory {plan['peak_bytes'] / 2**20:.1f} MiB "
          f"(unfused {plan['unfused_peak_bytes'] / 2**20:.1f} MiB)")

    x, w, b = rng.random((256, 128)), rng.random((128, 64)), rng.random(64)
    for _ in range(12):                            # hot after 10 calls: compiled in the background
        y = dense_relu(x, w, b)
    print("dense_relu matches:", np.allclose(y, np.maximum(x @ w + b, 0.0)), dense_relu.stats()["calls"])

    a, bb = rng.random((4, 3)), rng.random((4, 3)) - 0.5
    print("safe_ratio:", safe_ratio(a, bb))

    try:
        nd.jit(lambda v: v if v.sum() > 0 else -v)(a)
    except nd.errors.TraceError as exc:
        print("TraceError:", exc)

    print(chain.stats()["calls"], "calls;", len(chain.bytecode(*xs)), "bytes of NBC")


if __name__ == "__main__":
    main()
