"""A small ONNX MLP built with ``onnx.helper``, and its NumPy oracle.

Why it lives in the package: the example, the tests and ``noodle bench
inference`` all need a model where batching matters (a few dense layers of
width 256-512) that is built in milliseconds, never downloaded, and whose
exact answer plain NumPy can give.

Example::

    import numpy as np
    from noodle.inference import MLInferenceEngine
    from noodle.inference.toy import mlp_model, mlp_numpy
    model, weights = mlp_model([32, 256, 10])
    x = np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32)
    with MLInferenceEngine(model, device="cpu") as eng:
        assert np.allclose(eng.infer(x), mlp_numpy(weights, x), atol=1e-4)
"""

from __future__ import annotations

import numpy as np


def mlp_model(sizes: list[int], *, seed: int = 0, input_name: str = "x", output_name: str = "logits",
              weights: list[tuple[np.ndarray, np.ndarray]] | None = None,
              ) -> tuple[bytes, list[tuple[np.ndarray, np.ndarray]]]:
    """An MLP ``sizes[0] -> ... -> sizes[-1]`` (ReLU between layers, He-scaled random weights unless
    ``weights`` gives each layer's float32 ``(W, b)``) as ONNX bytes with a symbolic batch axis, and its
    ``(W, b)`` per layer for :func:`mlp_numpy`."""
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"sizes must list at least two positive layer widths, got {sizes}")
    rng = np.random.default_rng(seed)
    given = weights
    if given is not None and len(given) != len(sizes) - 1:
        raise ValueError(f"weights must give {len(sizes) - 1} (W, b) pairs for sizes {sizes}, got {len(given)}")
    weights = []
    nodes, inits = [], []
    current = input_name
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if given is not None:
            w, b = (np.asarray(a, np.float32) for a in given[i])
        else:
            w = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
            b = (rng.standard_normal(fan_out) * 0.1).astype(np.float32)
        weights.append((w, b))
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"b{i}")]
        last = i == len(sizes) - 2
        gemm_out = output_name if last else f"h{i}"
        nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"b{i}"], [gemm_out]))
        if not last:
            nodes.append(helper.make_node("Relu", [gemm_out], [f"r{i}"]))
            current = f"r{i}"
    graph = helper.make_graph(
        nodes, "noodle_mlp",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", sizes[0]])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", sizes[-1]])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="noodle")
    model.ir_version = 8
    return model.SerializeToString(), weights


def mlp_numpy(weights: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """The oracle: what :func:`mlp_model`'s model computes, in float64 NumPy, returned as float32."""
    h = x.astype(np.float64)
    for i, (w, b) in enumerate(weights):
        h = h @ w.astype(np.float64) + b
        if i < len(weights) - 1:
            h = np.maximum(h, 0.0)
    return h.astype(np.float32)
