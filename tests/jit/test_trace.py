"""Tracer: what can be traced, what cannot, and the error users see."""

from __future__ import annotations

import numpy as np
import pytest

import noodle as nd
from noodle.errors import TraceError
from noodle.trace import trace


def test_bool_on_traced_value_names_the_line_and_suggests_where():
    def f(a):
        if a.sum() > 0:  # the offending line
            return a
        return -a

    with pytest.raises(TraceError) as info:
        trace(f, (np.ones(3),))
    msg = str(info.value)
    assert "test_trace.py:" in msg and "nd.where" in msg


def test_python_scalars_follow_nep50():
    prog = trace(lambda a: a * 0.5 + 2, (np.ones(3, dtype=np.float32),))
    assert prog.nodes[prog.outputs[0]].dtype == "float32"
    prog = trace(lambda a: a * 0.5, (np.ones(3, dtype=np.int64),))
    assert prog.nodes[prog.outputs[0]].dtype == "float64"


def test_numpy_functions_methods_and_noodle_ops_trace():
    a = np.random.default_rng(0).random((3, 4))

    def f(x):
        y = np.tanh(x).T.reshape(2, 6).transpose()
        z = nd.where(x > 0.5, nd.sqrt(x), nd.minimum(x, 0.2)).mean(axis=1, keepdims=True)
        return y.sum(axis=0), z.astype(np.float32), abs(x).max(), np.min(x, axis=0)

    got = nd.jit(f, backend="interpret")(a)
    want = f(a)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12)
        assert np.asarray(g).dtype == np.asarray(w).dtype


def test_indexing_and_unsupported_numpy_function_raise_trace_error():
    with pytest.raises(TraceError, match="mask indexing"):   # a[0] is traced now (tests/jit/test_slicing.py)
        trace(lambda a: a[a > 0], (np.ones(3),))
    with pytest.raises(TraceError, match="cumsum"):
        trace(lambda a: np.cumsum(a), (np.ones(3),))


def test_signature_cache_retraces_per_shape_and_dtype():
    calls = []

    @nd.jit(backend="interpret")
    def f(a):
        calls.append(1)
        return a + 1

    f(np.ones(3))
    f(np.ones(3))
    assert len(calls) == 1
    f(np.ones(4))
    f(np.ones(3, dtype=np.float32))
    assert len(calls) == 3


def test_static_arguments_become_constants():
    f = nd.jit(lambda a, k: a * k, backend="interpret")
    np.testing.assert_array_equal(f(np.ones(2), 3.0), [3.0, 3.0])
    np.testing.assert_array_equal(f(np.ones(2), 5.0), [5.0, 5.0])
