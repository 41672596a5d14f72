"""The CUDA path (onnxruntime-gpu): FP16 weights on the GPU, and the optimizer's FP16 rows. Runs only on a GPU."""

from __future__ import annotations

import numpy as np
import pytest

from noodle.inference import MLInferenceEngine, PerformanceOptimizer
from noodle.inference.toy import mlp_numpy

pytestmark = pytest.mark.gpu


def _need_cuda_provider():
    from noodle.inference.session import cuda_provider_available

    if not cuda_provider_available():
        pytest.skip("this ONNX Runtime has no CUDA provider (install the gpu extra: onnxruntime-gpu)")


def test_gpu_engine_fp16_matches_numpy(mlp):
    _need_cuda_provider()
    model, weights = mlp
    x = np.random.default_rng(0).standard_normal((33, 16)).astype(np.float32)
    with MLInferenceEngine(model, device="cuda:0") as eng:
        assert eng.placement.kind == "cuda" and eng.variant == "fp16"
        y = eng.infer(x)
        assert y.dtype == np.float32
        np.testing.assert_allclose(y, mlp_numpy(weights, x), rtol=2e-2, atol=2e-2)
        futs = [eng.submit(x[i:i + 3]) for i in range(0, 33, 3)]
        np.testing.assert_allclose(np.concatenate([f.result(timeout=30) for f in futs]), y, rtol=1e-3, atol=1e-3)


def test_gpu_optimizer_measures_fp16_and_cpu(tmp_path, mlp):
    _need_cuda_provider()
    opt = PerformanceOptimizer(cache_dir=tmp_path, budget_s=0.02, batch_sizes=(1, 64))
    d = opt.optimize(mlp[0], device="gpu")
    variants = {(r.variant, r.device) for r in d.results}
    assert ("fp16", "cuda:0") in variants and ("fp32", "cpu") in variants
    assert set(d.device_by_batch) == {1, 64}
    print(d.explain())
