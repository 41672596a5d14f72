"""Serve an ONNX model with noodle's inference engine: one batch, concurrent requests, the optimizer.

Why this example: it is the shortest path through the engine's three ideas. ``infer`` runs one
batch; ``submit`` lets many threads send small requests that the engine batches for them (each
gets exactly its own rows back); ``optimizer=`` measures FP32 against INT8 on this machine and
serves the fastest variant that agrees with FP32, saying why in ``explain()``.

Run: ``python examples/inference_engine.py``
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from noodle.inference import MLInferenceEngine, PerformanceOptimizer
from noodle.inference.toy import mlp_model, mlp_numpy


def main() -> None:
    model, weights = mlp_model([32, 256, 256, 10])          # ONNX bytes and the NumPy oracle's weights
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 32)).astype(np.float32)

    with MLInferenceEngine(model, device="auto") as eng:
        y = eng.infer(x)                                     # one batch of 64 rows
        print("infer:", y.shape, "max error vs NumPy:", float(np.abs(y - mlp_numpy(weights, x)).max()))

        requests = [x[i:i + 1 + i % 3] for i in range(0, 60, 3)]     # 20 requests of 1-3 rows
        with ThreadPoolExecutor(8) as pool:
            futures = list(pool.map(eng.submit, requests))
        same = all(np.allclose(f.result(), eng.infer(r), atol=1e-5) for f, r in zip(futures, requests))
        print("submit: 20 requests from 8 threads, each got its own rows back:", same)

    optimizer = PerformanceOptimizer(samples=x, budget_s=0.02, batch_sizes=(1, 16),
                                     cache_dir=tempfile.mkdtemp(prefix="noodle-example-"))
    with MLInferenceEngine(model, device="cpu", optimizer=optimizer, cache=True) as eng:
        print(eng.explain())
        first, again = eng.infer(x[:4]), eng.infer(x[:4])   # the second is served from the results cache
        print("served", eng.variant, "- cached answer identical:", np.array_equal(first, again))


if __name__ == "__main__":
    main()
