"""Models for the inference tests, built here in milliseconds (onnx.helper, scikit-learn + skl2onnx)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from noodle.inference.toy import mlp_model


@pytest.fixture(autouse=True)
def _own_settings(isolated_settings):
    """Every test reads settings from its own cache folder (optimizer measurements never leak)."""
    yield


@pytest.fixture(scope="session")
def mlp():
    """(model bytes, weights) of a 16 -> 64 -> 32 -> 5 MLP with a symbolic batch axis."""
    return mlp_model([16, 64, 32, 5], seed=1)


def onnx_model(nodes, inputs, outputs, inits=()):
    from onnx import helper

    graph = helper.make_graph(nodes, "t", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture(scope="session")
def two_io_model():
    """Inputs a [N,3] float32 and k [N,1] int64; outputs s = a*2 ([N,3]) and t = k+1 ([N,1])."""
    from onnx import TensorProto, helper, numpy_helper

    return onnx_model(
        [helper.make_node("Mul", ["a", "two"], ["s"]), helper.make_node("Add", ["k", "one"], ["t"])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("k", TensorProto.INT64, ["N", 1])],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("t", TensorProto.INT64, ["N", 1])],
        [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
         numpy_helper.from_array(np.array(1, np.int64), "one")])


@pytest.fixture(scope="session")
def row_sum_model():
    """x [N, M] float32 (M symbolic) -> y [N] = sum over axis 1: requests of different M never share a batch."""
    from onnx import TensorProto, helper, numpy_helper

    return onnx_model(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "M"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])],
        [numpy_helper.from_array(np.array([1], np.int64), "axes")])


@pytest.fixture(scope="session")
def batch_mixing_model():
    """x [N, 4] -> y [1, 4] = sum over the batch axis: its output has no row per input row."""
    from onnx import TensorProto, helper, numpy_helper

    return onnx_model(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.array([0], np.int64), "axes")])


@pytest.fixture(scope="session")
def sk_classifier():
    """(model bytes, X held-back, sklearn model): a small MLP classifier trained in about a second."""
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    from sklearn.neural_network import MLPClassifier

    X, y = make_classification(n_samples=1200, n_features=20, n_informative=12, n_classes=4,
                               n_clusters_per_class=1, class_sep=2.0, random_state=0)
    X = X.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # ConvergenceWarning: 80 epochs are plenty for this test
        clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=80, random_state=0).fit(X[:800], y[:800])
    onx = to_onnx(clf, X[:1], options={id(clf): {"zipmap": False}}, target_opset=17)
    return onx.SerializeToString(), X[800:], clf
