"""The jitted call's fast path (noodle.jit.fastpath) is only faster, never different.

Why these tests: once a signature is compiled, calls go through one generated function that
checks the arguments and the guards and runs the kernel; everything else must still reach the
general path, with its retracing and its errors. Each test makes the fast path be the one
installed (``f._fast`` is not the no-op) and counts general-path calls where it matters.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from tests.jit.call_helpers import general_calls, same_bits

import noodle as nd
from noodle.errors import TraceError
from noodle.jit.fastpath import no_fast_path


def _warm(f, *args):
    assert f.compile(*args) == "numba"
    f(*args)                       # the general path runs it once and installs the fast path
    assert f._fast is not no_fast_path
    return f(*args)


def test_the_fast_path_gives_the_general_paths_bits(monkeypatch):
    f = nd.jit(lambda a, b, c: a * b + c * c - 0.5 * nd.exp(-a))
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(16) for _ in range(3))
    fast = _warm(f, a, b, c)
    calls = general_calls(f, monkeypatch)
    for _ in range(5):
        assert same_bits(f(a, b, c), fast)
    assert calls == []
    slow = f(a, b, c=c)            # keyword arguments: always the general path
    assert calls == [1]
    assert same_bits(fast, slow)
    assert same_bits(fast, a * b + c * c - 0.5 * np.exp(-a))
    assert f.stats()["compiled_calls"] == 8


def test_a_changed_global_retraces_through_the_fast_path():
    global SCALE, SHIFT
    SCALE, SHIFT = 2.0, np.arange(8.0)
    f = nd.jit(lambda a: a * SCALE + SHIFT)
    x = np.ones(8)
    np.testing.assert_array_equal(_warm(f, x), x * 2.0 + SHIFT)
    SCALE = 3.0                     # a rebound scalar: the guard fails, the general path retraces
    np.testing.assert_array_equal(f(x), x * 3.0 + SHIFT)
    SHIFT[0] = 100.0                # an array changed in place: an implicit input, read every call
    np.testing.assert_array_equal(f(x), x * 3.0 + SHIFT)
    SHIFT = np.full(8, -1.0)        # rebound
    np.testing.assert_array_equal(f(x), x * 3.0 - 1.0)
    f.compile(x)
    f(x)
    SCALE = 2.0                     # back to the first value: the first variant is still right
    np.testing.assert_array_equal(f(x), x * 2.0 - 1.0)


def test_a_changed_closure_cell_and_attribute_retrace_through_the_fast_path():
    class Layer:
        def __init__(self):
            self.w = np.full(4, 2.0)
            self.bias = 1.0

    layer = Layer()
    k = 3.0

    @nd.jit
    def f(x):
        return x * layer.w * k + layer.bias

    x = np.arange(4.0)
    np.testing.assert_array_equal(_warm(f, x), x * 2.0 * 3.0 + 1.0)
    k = 5.0                                                    # noqa: F841 - read by f through its cell
    np.testing.assert_array_equal(f(x), x * 2.0 * 5.0 + 1.0)
    layer.bias = -1.0
    np.testing.assert_array_equal(f(x), x * 2.0 * 5.0 - 1.0)
    layer.w[:] = 7.0
    np.testing.assert_array_equal(f(x), x * 7.0 * 5.0 - 1.0)
    layer.w = np.zeros(4)
    np.testing.assert_array_equal(f(x), np.full(4, -1.0))


def test_wrong_arity_and_bad_keywords_raise_the_general_paths_errors():
    f = nd.jit(lambda a, b: a + b)
    x = np.ones(4)
    _warm(f, x, x)
    with pytest.raises(TraceError, match="do not fit its signature"):
        f(x)
    with pytest.raises(TraceError, match="do not fit its signature"):
        f(x, x, x)
    with pytest.raises(TraceError, match="do not fit its signature"):
        f(x, c=x)
    np.testing.assert_array_equal(f(x, b=x), x + x)


def test_defaults_are_filled_as_they_are_now_and_serve_the_fast_path(monkeypatch):
    """A call that leaves parameters to their defaults takes the fast path (binding through
    inspect cost 13 µs a call); the defaults are read at each call: a default array changed in
    place, or a reassigned ``__defaults__``, is what the next call uses, as in plain Python."""
    shift = np.arange(3.0)

    def g(a, b=1.5, c=shift):
        return a * b + c

    f = nd.jit(g)
    x = np.arange(3.0)
    _warm(f, x)
    calls = general_calls(f, monkeypatch)
    for _ in range(3):
        np.testing.assert_array_equal(f(x), x * 1.5 + shift)
    np.testing.assert_array_equal(f(x, 2.0), x * 2.0 + shift)
    assert calls == []
    shift[0] = 100.0
    np.testing.assert_array_equal(f(x), g(x))
    g.__defaults__ = (3.0, np.ones(3))
    np.testing.assert_array_equal(f(x), x * 3.0 + 1.0)
    np.testing.assert_array_equal(f(x, b=2.0), x * 2.0 + 1.0)   # keywords: inspect binds, as now
    g.__defaults__ = (3.0,)          # c lost its default: the call no longer fits, named as such
    with pytest.raises(TraceError, match="do not fit its signature"):
        f(x)
    np.testing.assert_array_equal(f(x, 0.5, shift), x * 0.5 + shift)


@pytest.mark.parametrize("other", [
    np.arange(16, dtype=np.float32),              # another dtype
    np.arange(17.0),                               # another length
    np.arange(16.0).reshape(4, 4),                 # another rank, same size
    np.array(3.0),                                 # 0-d
    np.arange(32.0)[::2],                          # a strided view
    np.ma.masked_array(np.arange(16.0)),           # a subclass
    [float(i) for i in range(16)],                 # a list
], ids=["float32", "length", "rank", "0-d", "strided", "subclass", "list"])
def test_other_arguments_fall_to_the_general_path_and_match_numpy(other, monkeypatch):
    f = nd.jit(lambda a: a * 2.0 + 1.0)
    _warm(f, np.arange(16.0))
    calls = general_calls(f, monkeypatch)
    if isinstance(other, list | np.ma.MaskedArray):   # refused, naming the problem
        with pytest.raises(TraceError):
            f(other)
        return
    got = f(other)
    # a strided view has the signature's key (the kernel takes any layout): the fast path runs it
    strided = other.ndim == 1 and other.shape == (16,) and not other.flags.c_contiguous
    assert calls == ([] if strided else [1])
    want = np.asarray(other) * 2.0 + 1.0
    assert same_bits(np.asarray(got), np.asarray(want))
    assert same_bits(f(np.arange(16.0)), np.arange(16.0) * 2.0 + 1.0)


def test_scalar_parameters_take_the_fast_path_by_type():
    f = nd.jit(lambda a, s: a * s)
    x = np.arange(5.0)
    _warm(f, x, 2.0)
    for s in (0.5, -3.0, float("nan")):
        assert same_bits(f(x, s), x * s)
    assert same_bits(f(x, 3), x * 3)              # an int: another signature
    assert same_bits(f(x, np.float32(1.5)), x * np.float32(1.5))
    assert same_bits(f(x, True), x * True)
    assert len(f.stats()["signatures"]) == 4


def test_static_arguments_are_checked_by_value_on_the_fast_path():
    f = nd.jit(lambda a, mode: a * 2.0 if mode == "double" else a + 2.0, static_argnums=1)
    x = np.arange(4.0)
    _warm(f, x, "double")
    np.testing.assert_array_equal(f(x, "double"), x * 2.0)
    np.testing.assert_array_equal(f(x, "add"), x + 2.0)
    np.testing.assert_array_equal(f(x, "".join(["dou", "ble"])), x * 2.0)   # equal, not identical


def test_methods_key_on_the_instance():
    class Model:
        def __init__(self, k):
            self.k = k

        @nd.jit
        def apply(self, x):
            return x * self.k

    m2, m3 = Model(2.0), Model(3.0)
    x = np.arange(4.0)
    for _ in range(12):
        np.testing.assert_array_equal(m2.apply(x), x * 2.0)
        np.testing.assert_array_equal(m3.apply(x), x * 3.0)
    m2.k = 4.0
    np.testing.assert_array_equal(m2.apply(x), x * 4.0)


def test_outputs_keep_python_identity_on_the_fast_path():
    f = nd.jit(lambda a, s: (a * 2.0, s, (a * 2.0).sum()))
    g = nd.jit(lambda a: (a + 1.0, a))
    x = np.arange(6.0)
    _warm(f, x, 1.5)
    y, s, total = f(x, 1.5)
    assert s == 1.5 and type(s) is float
    assert isinstance(total, np.float64) and total == (x * 2.0).sum()
    _warm(g, x)
    y, same = g(x)
    assert same is x


def test_a_jitted_function_inside_another_is_inlined_after_it_is_compiled():
    inner = nd.jit(lambda a: a * 3.0)
    x = np.arange(5.0)
    _warm(inner, x)
    outer = nd.jit(lambda a: inner(a) + 1.0)
    _warm(outer, x)
    np.testing.assert_array_equal(outer(x), x * 3.0 + 1.0)
    assert len(outer.stats()["signatures"]) == 1


def test_a_runner_that_raises_on_the_fast_path_falls_back_once(caplog):
    f = nd.jit(lambda a: a * 2.0 - 1.0, hot_threshold=10**6)
    x = np.arange(5.0)
    _warm(f, x)
    state = f.state(x)

    def broken(args):
        raise RuntimeError("simulated backend bug")

    state.runner = broken
    with caplog.at_level(logging.WARNING, logger="noodle.jit"):
        for _ in range(3):
            np.testing.assert_array_equal(f(x), x * 2.0 - 1.0)
    assert state.status == "failed"
    assert sum("runs interpreted from now on" in r.getMessage() for r in caplog.records) == 1
    assert f.stats()["interpreted_calls"] == 3


def test_an_evicted_signature_is_no_longer_run_by_the_fast_path(monkeypatch):
    monkeypatch.setenv("NOODLE_JIT_CACHE_SIZE", "1")
    from noodle import config

    config.reload()
    try:
        f = nd.jit(lambda a: a + 1.0)
    finally:
        monkeypatch.delenv("NOODLE_JIT_CACHE_SIZE")
        config.reload()
    x = np.arange(3.0)
    _warm(f, x)
    f(np.arange(4.0))                     # traced: evicts the first signature
    assert f._fast is no_fast_path
    np.testing.assert_array_equal(f(x), x + 1.0)


@pytest.mark.parametrize("steps_max", [256, 0])   # the generated straight-line runner, and the walk
def test_a_runner_of_many_steps_passes_inputs_constants_and_values_through(monkeypatch, steps_max):
    from noodle.jit import lower

    monkeypatch.setattr(lower, "STRAIGHT_LINE_MAX", steps_max)

    def f(a, b):
        s = a @ b            # a product, then lone scalar ops, then elementwise regions
        t = s / (b @ b) + 1.0
        c = a * t - b
        return a, c, np.sqrt(c * c + t), t, b

    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(50), rng.standard_normal(50)
    got = nd.jit(f, backend="numba")(a, b)
    want = f(a, b)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)   # the same ops in the same order: the same bits
