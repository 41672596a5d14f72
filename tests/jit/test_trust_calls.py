"""How a jitted function is called: keywords, defaults, None, scalar results, hidden state and
side effects, and GPU requests on a machine without one."""

from __future__ import annotations

import numpy as np
import pytest

import noodle as nd
from noodle.devices import gpu_count
from noodle.errors import DeviceUnavailableError, TraceError

X = np.linspace(-2.0, 2.0, 12).reshape(3, 4)


def test_keyword_arguments_and_defaults():
    def f(x, y=None, scale=2.0):
        if y is None:
            return x * scale
        return x * scale + y

    jf = nd.jit(f, backend="interpret")
    for args, kwargs in [((X,), {}), ((X,), {"scale": 3.0}), ((X, X), {}), ((X,), {"y": X, "scale": 0.5}),
                         ((), {"x": X, "y": X})]:
        np.testing.assert_array_equal(jf(*args, **kwargs), f(*args, **kwargs))
    with pytest.raises(TraceError, match="do not fit its signature"):
        jf(X, nope=1)


def test_scalar_results_are_numpy_scalars_like_numpy():
    def f(x):
        return x.sum(), x.max(axis=None), (x * 2.0).mean(), x.sum(axis=0)

    got = nd.jit(f, backend="interpret")(X)
    want = f(X)
    for g, w in zip(got, want, strict=True):
        assert type(g) is type(w), (type(g), type(w))
        # sums follow noodle's defined order (noodle.ir.reduction), not NumPy's: equal to rounding
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-13 * float(np.abs(X).sum()))


@pytest.mark.parametrize("call", [
    "np.random.rand(*x.shape)", "np.random.default_rng(0).random(x.shape)", "time.time()",
    "print('hi')", "open('/dev/null')", "random.random()",
])
def test_hidden_state_and_side_effects_raise_trace_error(call):
    import random  # noqa: F401 - used by the generated function
    import time  # noqa: F401

    src = f"def f(x):\n    v = {call}\n    return x\n"
    env = {"np": np, "time": __import__("time"), "random": __import__("random")}
    exec(src, env)  # noqa: S102 - test code
    with pytest.raises(TraceError) as info:
        nd.jit(env["f"], backend="interpret")(X)
    msg = str(info.value)
    assert "hidden state or side effects" in msg and "(at <string>:2)" in msg, msg


def test_random_generator_method_is_refused_and_advice_is_given():
    rng = np.random.default_rng(0)

    def f(x):
        return x + rng.standard_normal(x.shape)

    with pytest.raises(TraceError, match="pass the array in"):
        nd.jit(f, backend="interpret")(X)


def test_nonlocal_write_is_refused():
    count = 0

    def f(x):
        nonlocal count
        count += 1
        return x

    with pytest.raises(TraceError, match="nonlocal"):
        nd.jit(f, backend="interpret")(X)


@pytest.mark.skipif(gpu_count() > 0, reason="checks the machine without a GPU")
@pytest.mark.parametrize("opts", [{"device": "cuda"}, {"device": "gpu"}, {"backend": "cuda"}])
def test_gpu_request_without_a_gpu_raises_device_unavailable(opts):
    jf = nd.jit(lambda x: x * 2.0, **opts)
    with pytest.raises(DeviceUnavailableError) as info:
        jf(X)
    assert "none is usable" in str(info.value)


def test_a_function_that_swallows_trace_errors_is_refused():
    def f(x):
        try:
            v = float(x.sum())
        except Exception:   # the plain function never takes this branch
            v = 0.0
        return x + v

    with pytest.raises(TraceError, match="caught an error noodle raised"):
        nd.jit(f, backend="interpret")(X)


def test_a_function_that_catches_exceptions_still_concretizes_its_scalars():
    def f(x, n):
        try:
            k = int(n)
        except Exception:   # must not be taken: int(3) works in plain Python
            k = 0
        return x * k

    jf = nd.jit(f, backend="interpret")
    for n in (3, 4):
        np.testing.assert_array_equal(jf(X, n), f(X, n))


M_GLOBAL = np.matrix([[1.0, 2.0], [3.0, 4.0]])


@pytest.mark.parametrize("make", [
    lambda: np.matrix([[1.0, 2.0], [3.0, 4.0]]),
    lambda: np.ma.masked_array([[1.0, 2.0], [3.0, 4.0]], mask=[[0, 1], [0, 0]]),
])
def test_ndarray_subclasses_with_other_operators_are_refused(make):
    """np.matrix's * is a matrix product and a masked array's sum skips masked values: traced as
    plain arrays they would give another answer than the plain function."""
    x = make()
    with pytest.raises(TraceError, match="ndarray subclass"):
        nd.jit(lambda a, b: (a * b).sum(), backend="interpret")(x, x)

    def f(a):
        return a * M_GLOBAL

    with pytest.raises(TraceError, match="captured M_GLOBAL"):
        nd.jit(f, backend="interpret")(np.ones((2, 2)))


def test_any_other_ndarray_subclass_is_refused():
    class Shifted(np.ndarray):
        def __rsub__(self, other):
            return np.asarray(other) - 2 * np.asarray(self)

    x = np.arange(4.0).view(Shifted)
    with pytest.raises(TraceError, match="ndarray subclass"):
        nd.jit(lambda a: 1.0 - a, backend="interpret")(x)


def test_memmap_computes_like_ndarray_and_is_accepted(tmp_path):
    mm = np.memmap(tmp_path / "m.dat", dtype=np.float64, mode="w+", shape=(5,))
    mm[:] = np.arange(5.0)
    np.testing.assert_array_equal(nd.jit(lambda a: a * 2.0 + 1.0, backend="interpret")(mm), mm * 2.0 + 1.0)


Bounds = __import__("collections").namedtuple("Bounds", "lo hi")


@pytest.mark.parametrize("backend", ["interpret", "numba"])
def test_a_namedtuple_result_comes_back_as_that_namedtuple(backend):
    """It came back as a plain tuple, so ``r.lo`` failed where the plain function's worked."""
    def f(x):
        return Bounds(x - 1.0, x.sum() * 2.0)

    jf = nd.jit(f, backend=backend, hot_threshold=1)
    x = np.linspace(0.0, 1.0, 16)
    want = f(x)
    assert type(jf(x)) is Bounds                     # interpreted, while the compile runs
    from noodle.jit.manager import default_manager
    assert default_manager().wait_idle()
    for _ in range(1100):      # the compiled fast path, and past the native-entry threshold
        got = jf(x)
    if backend == "numba":
        assert jf.stats()["compiled_calls"] >= 1100
    assert type(got) is Bounds and got._fields == want._fields
    np.testing.assert_array_equal(got.lo, want.lo)
    assert type(got.hi) is type(want.hi) and got.hi == want.hi
    assert isinstance(nd.jit(lambda x: [x, x * 2.0])(x), list)        # a list stays a list
    assert type(nd.jit(lambda x: (x, x * 2.0))(x)) is tuple
