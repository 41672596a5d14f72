"""Python scalars are runtime parameters: a new value per call neither retraces nor changes the
answer, and NumPy's rules for Python scalars (NEP 50) hold for them exactly."""

from __future__ import annotations

import numpy as np
import pytest

import noodle as nd
from noodle.jit.manager import default_manager


def assert_same(got, want):
    assert type(got) is type(want) or np.asarray(got).dtype == np.asarray(want).dtype, (got, want)
    assert np.asarray(got).dtype == np.asarray(want).dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("backend", ["interpret", None])
def test_a_new_float_per_call_does_not_retrace(backend):
    def f(x, s):
        return x * s + (1.0 - s)

    jf = nd.jit(f, backend=backend, hot_threshold=3)
    x = np.linspace(-1, 1, 50)
    for i in range(40):
        assert_same(jf(x, 0.1 * i), f(x, 0.1 * i))
        if i == 5:
            default_manager().wait_idle()
    assert len(jf.stats()["signatures"]) == 1


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "int8", "uint8", "bool"])
@pytest.mark.parametrize("scalar", [3, -2, 0.1, 2.5, True, 1e30])
def test_nep50_weak_scalars_match_numpy(dtype, scalar):
    def f(x, s):
        return x + s, x * s, x > s, np.maximum(x, s)

    x = np.arange(-3, 4).astype(dtype)
    try:
        want = f(x, scalar)
    except (OverflowError, TypeError, ValueError) as exc:   # NumPy refuses: so must we
        with pytest.raises(type(exc)):
            nd.jit(f, backend="interpret")(x, scalar)
        return
    got = nd.jit(f, backend="interpret")(x, scalar)
    for g, w in zip(got, want, strict=True):
        assert_same(g, w)


def test_numpy_scalars_are_strong_parameters():
    def f(x, s):
        return x * s

    x = np.ones(4, dtype=np.float32)
    jf = nd.jit(f, backend="interpret")
    for s in (np.float64(0.5), np.float64(0.25), np.float32(2.0), np.int16(3)):
        assert_same(jf(x, s), f(x, s))


def test_scalar_used_as_a_shape_or_in_if_becomes_static():
    def f(x, n, flag):
        y = x.reshape(n, -1)
        if flag:
            return y * 2.0
        return y

    jf = nd.jit(f, backend="interpret")
    x = np.arange(12.0)
    for n, flag in [(2, True), (3, False), (4, True), (2, False), (2, True)]:
        assert_same(jf(x, n, flag), f(x, n, flag))


def test_python_int_arithmetic_between_scalars_is_exact():
    def f(x, a, b):
        return x + a * b   # a * b in Python ints may exceed int64

    x = np.zeros(3)
    jf = nd.jit(f, backend="interpret")
    for a, b in [(3, 4), (2**40, 2**30), (-5, 7)]:
        assert_same(jf(x, a, b), f(x, a, b))


def test_division_between_scalars_keeps_python_semantics():
    def f(x, s):
        return x * (1.0 / s)

    jf = nd.jit(f, backend="interpret")
    x = np.ones(3)
    assert_same(jf(x, 4.0), f(x, 4.0))
    with pytest.raises(ZeroDivisionError):
        jf(x, 0.0)


def test_static_argnums_and_argnames_trace_per_value():
    def f(x, k, mode):
        return x * k if mode == "mul" else x + k

    jf = nd.jit(f, backend="interpret", static_argnums=1, static_argnames="mode")
    x = np.arange(3.0)
    for k, mode in [(2.0, "mul"), (3.0, "add"), (2.0, "add")]:
        assert_same(jf(x, k, mode), f(x, k, mode))
    assert len(jf.stats()["signatures"]) == 3


def test_bad_static_argnums_is_a_config_error():
    from noodle.errors import ConfigError

    with pytest.raises(ConfigError, match="static_argnums"):
        nd.jit(lambda x: x, static_argnums=3)
    with pytest.raises(ConfigError, match="static_argnames"):
        nd.jit(lambda x: x, static_argnames="y")


def test_signature_cache_is_bounded():
    jf = nd.jit(lambda x: x + 1.0, backend="interpret")
    for n in range(1, jf.cache_size + 20):
        jf(np.zeros(n))
    assert len(jf._states) <= jf.cache_size
    np.testing.assert_array_equal(jf(np.zeros(2)), np.ones(2))
