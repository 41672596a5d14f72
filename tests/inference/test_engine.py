"""MLInferenceEngine.infer against a NumPy oracle, and every bad input giving a clear noodle error."""

from __future__ import annotations

import numpy as np
import pytest

from noodle.devices import gpu_count
from noodle.errors import (
    DeviceError,
    DeviceUnavailableError,
    InferenceInputError,
    InferenceShutdownError,
    ModelLoadError,
)
from noodle.inference import MLInferenceEngine
from noodle.inference.toy import mlp_numpy

rng = np.random.default_rng(0)


def test_infer_matches_numpy(mlp):
    model, weights = mlp
    x = rng.standard_normal((7, 16)).astype(np.float32)
    with MLInferenceEngine(model, device="cpu") as eng:
        np.testing.assert_allclose(eng.infer(x), mlp_numpy(weights, x), rtol=1e-4, atol=1e-4)
        assert eng.infer(x[:1]).shape == (1, 5)


def test_model_from_path_and_multi_io(tmp_path, two_io_model):
    path = tmp_path / "m.onnx"
    path.write_bytes(two_io_model)
    a = rng.standard_normal((4, 3)).astype(np.float32)
    k = np.arange(4, dtype=np.int64).reshape(4, 1)
    with MLInferenceEngine(path, device="cpu") as eng:
        out = eng.infer({"a": a, "k": k})
        assert set(out) == {"s", "t"}
        np.testing.assert_array_equal(out["s"], a * 2)
        np.testing.assert_array_equal(out["t"], k + 1)
        fut = eng.submit({"a": a[:2], "k": k[:2]})
        np.testing.assert_array_equal(fut.result(timeout=10)["t"], k[:2] + 1)


@pytest.mark.parametrize("bad, words", [
    ({"a": np.zeros((2, 3), np.float32), "kk": np.zeros((2, 1), np.int64)}, ["unknown input name", "'kk'", "k: int64"]),
    ({"a": np.zeros((2, 3), np.float32)}, ["missing input", "'k'"]),
    ({"a": np.zeros((2, 3), np.float64), "k": np.zeros((2, 1), np.int64)}, ["dtype float64", "float32", "astype"]),
    ({"a": np.zeros((2, 3, 1), np.float32), "k": np.zeros((2, 1), np.int64)}, ["rank 3", "rank 2"]),
    ({"a": np.zeros((2, 4), np.float32), "k": np.zeros((2, 1), np.int64)}, ["axis 1", "expects 3"]),
    ({"a": np.zeros((2, 3), np.float32), "k": np.zeros((3, 1), np.int64)}, ["batch size"]),
    ({"a": [[1.0, 2.0, 3.0]], "k": np.zeros((1, 1), np.int64)}, ["NumPy array", "list"]),
    (np.zeros((2, 3), np.float32), ["2 inputs", "dict"]),
    ("text", ["str"]),
])
def test_bad_inputs_are_named(two_io_model, bad, words):
    with MLInferenceEngine(two_io_model, device="cpu") as eng:
        for call in (eng.infer, eng.submit):
            with pytest.raises(InferenceInputError) as info:
                call(bad)
            for w in words:
                assert w in str(info.value), (w, str(info.value))


def test_not_an_onnx_model(tmp_path):
    with pytest.raises(ModelLoadError, match="cannot load this model"):
        MLInferenceEngine(b"this is not a protobuf \x00\xff", device="cpu")
    with pytest.raises(ModelLoadError, match="cannot read the ONNX model file"):
        MLInferenceEngine(tmp_path / "absent.onnx", device="cpu")
    with pytest.raises(ModelLoadError, match="path .* or the bytes"):
        MLInferenceEngine(12345, device="cpu")
    with pytest.raises(ModelLoadError, match="empty"):
        MLInferenceEngine(b"", device="cpu")


@pytest.mark.skipif(gpu_count() > 0, reason="checks the no-GPU rule; a GPU machine runs the gpu tests instead")
@pytest.mark.parametrize("device", ["gpu", "cuda", "cuda:0"], ids=["word", "cuda", "cuda0"])
def test_explicit_gpu_without_one(mlp, device):
    with pytest.raises(DeviceUnavailableError, match="device='auto'"):
        MLInferenceEngine(mlp[0], device=device)


def test_auto_and_bad_device(mlp):
    with MLInferenceEngine(mlp[0], device="auto") as eng:
        assert eng.placement.kind in ("cpu", "cuda")
    with pytest.raises(DeviceError, match="not understood"):
        MLInferenceEngine(mlp[0], device="tpu")


def test_bad_engine_arguments(mlp):
    with pytest.raises(InferenceInputError, match="max_batch_size"):
        MLInferenceEngine(mlp[0], device="cpu", max_batch_size=0)
    with pytest.raises(InferenceInputError, match="max_queue_delay_ms"):
        MLInferenceEngine(mlp[0], device="cpu", max_queue_delay_ms=-1)
    with pytest.raises(ModelLoadError, match="optimizer must be"):
        MLInferenceEngine(mlp[0], device="cpu", optimizer="fast")


def test_closed_engine_refuses(mlp):
    eng = MLInferenceEngine(mlp[0], device="cpu")
    eng.close()
    eng.close()
    x = np.zeros((1, 16), np.float32)
    with pytest.raises(InferenceShutdownError):
        eng.infer(x)
    with pytest.raises(InferenceShutdownError):
        eng.submit(x)


def test_explain_without_optimizer(mlp):
    with MLInferenceEngine(mlp[0], device="cpu", max_batch_size=16, max_queue_delay_ms=5) as eng:
        text = eng.explain()
        assert "no optimizer" in text and "max_batch_size=16" in text and "5 ms" in text
        assert len(eng.model_digest) == 64
