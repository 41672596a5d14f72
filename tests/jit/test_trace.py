"""Tracer: what can be traced, what cannot, and the error users see."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

import noodle as nd
from noodle.errors import TraceError, TraceTypeError
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


@pytest.mark.parametrize("fn, kind", [
    (lambda a: a == None, "NoneType"),   # noqa: E711 - the comparison under test
    (lambda a: None != a, "NoneType"),   # noqa: E711
    (lambda a: a + None, "NoneType"),
    (lambda a: a * "a", "str"),
    (lambda a: "a" * a, "str"),
    (lambda a: a < "a", "str"),
    (lambda a: a * [1.0, 2.0, 3.0], "list"),
    (lambda a: [1.0, 2.0, 3.0] * a, "list"),
    (lambda a: a + (1.0,), "tuple"),
    (lambda a: a + Fraction(1, 2), "Fraction"),      # its __radd__ knows nothing of traced arrays
    (lambda a: Fraction(1, 2) * a, "Fraction"),
    (lambda a: a / Decimal("0.5"), "Decimal"),
    (lambda a: a < Decimal("0.5"), "Decimal"),
])
def test_an_operand_the_jit_cannot_take_is_refused_by_name(fn, kind):
    """``a == None`` must not become Python's identity fallback (``False``, where NumPy gives an
    array of ``False``), nor ``[1, 2] * a`` a request for ``a`` as an int: both refuse the
    operand, naming its type, as a TypeError a caller can catch."""
    with pytest.raises(TraceTypeError, match=kind) as info:
        nd.jit(fn)(np.arange(3.0))
    assert isinstance(info.value, TypeError) and "test_trace.py:" in str(info.value)


def test_a_complex_operand_is_refused_with_its_dtype_named():
    for fn in (lambda a: a * 1j, lambda a: 1j * a):
        with pytest.raises(TraceError, match="complex128"):
            nd.jit(fn)(np.arange(3.0))


def test_an_object_with_its_own_reflected_operator_gets_its_turn():
    class Tagged:
        def __radd__(self, other):
            return ("tagged", other)

    out = trace(lambda a: (a + Tagged())[1] * 2.0, (np.ones(3),))   # Tagged.__radd__ received the Tracer
    assert out.nodes[out.outputs[0]].op == "multiply"


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


def test_a_list_result_comes_back_as_a_list() -> None:
    """A function returning ``[a, b]`` got a tuple back; a list carry of a loop likewise."""
    x = np.arange(4.0)

    def two(a, b):
        return [a + b, a - b]

    def loop(x):
        return nd.while_loop(lambda c: c[0] < 3, lambda c: [c[0] + 1, c[1] * 2.0], [np.int64(0), x])

    for fn, args in ((two, (x, x)), (loop, (x,))):
        f = nd.jit(fn)
        for _ in range(3):
            got, want = f(*args), fn(*args)
            assert type(got) is list and all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
