"""Captured state is guarded, not frozen: the jitted result equals the plain function *now*.

Every case runs the same Python function plain (the oracle) and jitted, interpreted and
compiled, after changing what it captured: a global array mutated in place or rebound, a
closure cell, a default, a class attribute, a helper function, an object attribute, and two
shapes after a global changed.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

import noodle as nd
from noodle.errors import TraceError
from noodle.jit.manager import default_manager

MODES = ("interpret", "compiled")


def jitted(fn, mode):
    if mode == "interpret":
        return nd.jit(fn, backend="interpret")
    return nd.jit(fn, hot_threshold=0)   # compiles in the background from the first call


def same(jf, fn, *args):
    """jf(*args) equals fn(*args), bits and dtype, and stays so once compiled."""
    want = fn(*args)
    for _ in range(2):
        got = jf(*args)
        default_manager().wait_idle()
        got2 = jf(*args)
        for g in (got, got2):
            assert np.asarray(g).dtype == np.asarray(want).dtype
            np.testing.assert_array_equal(g, want)
    if jf.backend is None:   # the compiled mode really ran compiled code
        assert jf.stats()["compiled_calls"] > 0, jf.stats()


X = np.arange(6.0).reshape(2, 3)
W_GLOBAL = np.ones((2, 3))
SCALE = 2.0


@pytest.mark.parametrize("mode", MODES)
def test_global_array_mutated_in_place_and_rebound(mode):
    global W_GLOBAL
    W_GLOBAL = np.ones((2, 3))

    def f(x):
        return x * W_GLOBAL + W_GLOBAL.T.sum()

    jf = jitted(f, mode)
    same(jf, f, X)
    W_GLOBAL[0, 0] = 7.0            # in place
    same(jf, f, X)
    W_GLOBAL = np.full((2, 3), 3.0)  # rebound
    same(jf, f, X)
    W_GLOBAL = np.full((3,), 5.0)   # rebound to another shape: broadcasts differently
    same(jf, f, X)


@pytest.mark.parametrize("mode", MODES)
def test_global_scalar_rebound(mode):
    global SCALE
    SCALE = 2.0

    def f(x):
        return x * SCALE

    jf = jitted(f, mode)
    same(jf, f, X)
    SCALE = 3.5
    same(jf, f, X)
    SCALE = 4          # another type: int
    same(jf, f, X)


@pytest.mark.parametrize("mode", MODES)
def test_closures_from_one_factory_do_not_share_results(mode):
    def factory(c, arr):
        def f(x):
            return x + c - arr
        return f

    f1, f2 = factory(1.0, np.zeros(3)), factory(10.0, np.arange(3.0))
    j1, j2 = jitted(f1, mode), jitted(f2, mode)
    x = np.arange(3.0)
    same(j1, f1, x)
    same(j2, f2, x)


@pytest.mark.parametrize("mode", MODES)
def test_closure_cell_rebound_after_trace(mode):
    c = 1.0
    arr = np.ones(3)

    def f(x):
        return x * c + arr

    jf = jitted(f, mode)
    x = np.arange(3.0)
    same(jf, f, x)
    c = 9.0   # noqa: F841 - read by f through its cell
    arr = np.full(3, 4.0)  # noqa: F841
    same(jf, f, x)


def _helper(x):
    return x * 2.0


@pytest.mark.parametrize("mode", MODES)
def test_helper_function_redefined(mode):
    global _helper

    def f(x):
        return _helper(x) + 1.0

    jf = jitted(f, mode)
    same(jf, f, X)
    original = _helper
    try:
        def _helper(x):  # noqa: F811 - the redefinition is the point
            return x * 3.0 - 1.0
        same(jf, f, X)
    finally:
        _helper = original


class Cfg:
    scale = 2.0
    bias = np.zeros(3)


@pytest.mark.parametrize("mode", MODES)
def test_class_attribute_changed(mode):
    Cfg.scale, Cfg.bias = 2.0, np.zeros(3)

    def f(x):
        return x * Cfg.scale + Cfg.bias

    jf = jitted(f, mode)
    x = np.arange(3.0)
    same(jf, f, x)
    Cfg.scale = -1.5
    same(jf, f, x)
    Cfg.bias[1] = 5.0
    same(jf, f, x)
    Cfg.bias = np.full(3, 2.0)
    same(jf, f, x)


@pytest.mark.parametrize("mode", MODES)
def test_default_argument_mutated(mode):
    bias = np.zeros(3)

    def f(x, b=bias, k=2.0):
        return x * k + b

    jf = jitted(f, mode)
    x = np.arange(3.0)
    same(jf, f, x)
    bias[0] = 8.0
    same(jf, f, x)
    same(jf, f, x, np.ones(3), 4.0)


@pytest.mark.parametrize("mode", MODES)
def test_two_shapes_after_a_global_changes(mode):
    global SCALE
    SCALE = 2.0

    def f(x):
        return x * SCALE

    jf = jitted(f, mode)
    a, b = np.arange(3.0), np.arange(5.0)
    same(jf, f, a)
    SCALE = 7.0
    same(jf, f, b)     # a new shape traced after the change
    same(jf, f, a)     # the old shape must not serve the old value


@pytest.mark.parametrize("mode", MODES)
def test_method_reads_self_attributes(mode):
    class Layer:
        def __init__(self):
            self.w = np.eye(3)
            self.alpha = 0.5

        def forward(self, x):
            return np.maximum(x @ self.w, 0.0) * self.alpha

    layer = Layer()
    fwd = jitted(Layer.forward, mode)
    x = np.arange(6.0).reshape(2, 3) - 2.0
    same(fwd, Layer.forward, layer, x)
    layer.w[0, 1] = 3.0
    same(fwd, Layer.forward, layer, x)
    layer.alpha = 2.0
    same(fwd, Layer.forward, layer, x)
    layer.w = np.ones((3, 3))
    same(fwd, Layer.forward, layer, x)


def test_jit_as_a_method_decorator_binds_self():
    class Model:
        def __init__(self, k):
            self.k = k

        @nd.jit(backend="interpret")
        def scale(self, x):
            return x * self.k

    m = Model(3.0)
    np.testing.assert_array_equal(m.scale(X), X * 3.0)
    m.k = 5.0
    np.testing.assert_array_equal(m.scale(X), X * 5.0)


@pytest.mark.parametrize("mode", MODES)
def test_module_attribute_and_container_reads(mode):
    mod = types.SimpleNamespace(gain=2.0, table={"w": np.ones(3)})

    def f(x):
        return x * mod.gain + mod.table["w"]

    jf = jitted(f, mode)
    x = np.arange(3.0)
    same(jf, f, x)
    mod.gain = 3.0
    same(jf, f, x)
    mod.table["w"] = np.full(3, 6.0)   # rebound inside a dict
    same(jf, f, x)
    mod.table["w"][2] = -1.0           # mutated in place inside a dict
    same(jf, f, x)


def test_jitted_helper_called_from_a_jitted_function_is_inlined():
    inner = nd.jit(lambda x: x * 2.0, backend="interpret")

    def outer(x):
        return inner(x) + 1.0

    same(nd.jit(outer, backend="interpret"), outer, X)


def test_writing_a_global_is_refused():
    def f(x):
        global SCALE
        SCALE = 1.0
        return x

    with pytest.raises(TraceError, match="assigns the global 'SCALE'"):
        nd.jit(f, backend="interpret")(X)


def test_captured_state_needs_no_retrace_when_unchanged():
    w = np.ones(3)

    def f(x):
        return x * w

    jf = nd.jit(f, backend="interpret")
    for _ in range(5):
        jf(np.arange(3.0))
    assert len(jf.stats()["signatures"]) == 1


class Holder:
    def __init__(self):
        self.w = np.ones(3)
        self.k = 2.0

    def norm(self):
        return self.w / self.w.sum()


HOLDER = Holder()


@pytest.mark.parametrize("mode", MODES)
def test_attribute_array_used_directly_and_through_numpy(mode):
    HOLDER.w = np.ones(3)

    def f(x):
        return x * HOLDER.w.sum() + HOLDER.w + HOLDER.norm() * HOLDER.k

    jf = jitted(f, mode)
    x = np.arange(3.0)
    same(jf, f, x)
    HOLDER.w[0] = 4.0
    same(jf, f, x)
    HOLDER.k = -1.0
    same(jf, f, x)


def test_isinstance_on_a_captured_object_holds_and_attribute_writes_are_refused():
    h = Holder()

    def f(x):
        assert isinstance(h, Holder)
        return x * h.k

    np.testing.assert_array_equal(nd.jit(f, backend="interpret")(X), X * 2.0)

    def g(x):
        h.k = 3.0
        return x

    with pytest.raises(TraceError, match="sets the attribute"):
        nd.jit(g, backend="interpret")(X)


def test_control_flow_on_a_captured_array_is_a_trace_error_not_a_frozen_branch():
    h = Holder()

    def f(x):
        if h.w.max() > 0:
            return x
        return -x

    with pytest.raises(TraceError, match="nd.where"):
        nd.jit(f, backend="interpret")(X)


@pytest.mark.parametrize("mode", MODES)
def test_arrays_in_a_captured_list_and_a_private_constant(mode):
    layers = [np.eye(3), 2.0 * np.eye(3)]

    def f(x):
        for w in layers:
            x = x @ w
        return x * np.array([1.0, 2.0, 3.0])

    jf = jitted(f, mode)
    x = np.arange(6.0).reshape(2, 3)
    same(jf, f, x)
    layers[0][0, 2] = 5.0         # in place, inside the list
    same(jf, f, x)
    layers[1] = np.ones((3, 3))   # rebound inside the list
    same(jf, f, x)
