"""In-place updates, operators and NumPy methods inside a jitted function.

The plain Python function is the oracle, run on copies of the same inputs: the jitted result
equals it (bits and dtype), interpreted and compiled; the caller's arrays are never changed when
the plain function would have changed them silently otherwise: such a function is refused with
``TraceError``. Every construct a traced array does not support raises ``TraceError`` naming it
(never a raw AttributeError/TypeError from inside noodle). Results never alias the caller's
inputs where plain NumPy returns a new array.
"""

from __future__ import annotations

import numpy as np
import pytest

import noodle as nd
from noodle.errors import OpOverflowError, TraceError
from noodle.jit.manager import default_manager

MODES = ("interpret", "compiled")
X = np.linspace(-2.0, 2.0, 12).reshape(3, 4)
Y = np.arange(12.0).reshape(3, 4) + 1.0
XI = np.arange(-6, 6).reshape(3, 4)


def jitted(fn, mode):
    if mode == "interpret":
        return nd.jit(fn, backend="interpret")
    return nd.jit(fn, hot_threshold=0)


def check(fn, mode, *args):
    """The jitted result equals fn on copies of args, before and after the compile; the
    caller's arrays keep their values (fn here never writes into its arguments)."""
    jf = jitted(fn, mode)
    want = fn(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])
    keep = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    for _ in range(2):
        got = jf(*args)
        default_manager().wait_idle()
        got2 = jf(*args)
        for g in (got, got2):
            gs, ws = (g, want) if isinstance(want, tuple) else ((g,), (want,))
            for gi, wi in zip(gs, ws, strict=True):
                assert type(gi) is type(wi), (type(gi), type(wi))
                assert np.asarray(gi).dtype == np.asarray(wi).dtype
                np.testing.assert_array_equal(gi, wi)
    for a, k in zip(args, keep, strict=True):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, k)
    if mode == "compiled":
        assert jf.stats()["compiled_calls"] > 0, jf.stats()
    return jf


# ---- in-place updates of values made inside the function: NumPy's semantics


def _temp_iadd(x, y):
    t = x * 2.0
    t += y
    t *= 0.5
    t -= 1.0
    t /= 3.0
    t **= 2
    return t


def _alias_sees_update(x, y):
    t = x + y
    u = t          # another name for the same array
    t += 1.0
    return u * 2.0


def _inplace_then_view(x, y):
    t = x - y
    t += 1.0
    return t.T + 0.5


def _cast_same_kind(x, y):
    t = x.astype(np.float32)
    t += y           # float64 result cast back to float32, as NumPy does
    return t


def _int_inplace(xi):
    t = xi * 3
    t += 2
    t *= xi
    return t


def _scalar_param_rebinds(x, s):
    s += 1.5          # a Python float is immutable: the name is rebound
    s *= 2.0
    return x * s


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fn,args", [
    (_temp_iadd, (X, Y)), (_alias_sees_update, (X, Y)), (_inplace_then_view, (X, Y)),
    (_cast_same_kind, (X, Y)), (_int_inplace, (XI,)), (_scalar_param_rebinds, (X, 0.25)),
])
def test_in_place_updates_of_temporaries_follow_numpy(mode, fn, args):
    check(fn, mode, *args)


# ---- in-place updates the JIT cannot do right are refused, never silently dropped

G = np.ones((3, 4))


def _update_argument(x, y):
    x += y
    return x * 2.0


def _update_global(x):
    t = G
    t += x
    return t


def _stale_view(x, y):
    t = x * y
    v = t.reshape(4, 3)
    t += 1.0          # NumPy: v sees this update
    return v


def _update_view_of_temp_then_read_base(x):
    t = x * 2.0
    v = t.T
    v *= 3.0          # NumPy: t sees this update
    return t


def _update_view_of_argument(x):
    v = x.reshape(-1)
    v += 1.0
    return v


def _update_broadcast(x):
    b = np.broadcast_to(x * 1.0, (2, 3, 4))
    b += 1.0
    return b


def _setitem(x):
    t = x * 2.0
    t[...] = 1.0
    return t


def _out_argument(x, y):
    t = x * 1.0
    np.add(t, y, out=t)
    return t


def _int_plus_float(xi):
    t = xi * 2
    t += 0.5          # NumPy: UFuncTypeError (same_kind casting)
    return t


@pytest.mark.parametrize("fn,args,match", [
    (_update_argument, (X, Y), "cannot write into the caller's array"),
    (_update_global, (X,), "cannot write into the caller's array"),
    (_stale_view, (X, Y), "updated in place"),
    (_update_view_of_temp_then_read_base, (X,), "updated in place"),
    (_update_view_of_argument, (X,), "cannot write into the caller's array"),
    (_update_broadcast, (X,), "read-only"),
    (_setitem, (X,), r"a\[\.\.\.\] = "),
    (_out_argument, (X, Y), "out"),
    (_int_plus_float, (XI,), "same_kind"),
])
def test_in_place_updates_the_jit_cannot_model_raise(fn, args, match):
    keep = [a.copy() for a in args]
    with pytest.raises(TraceError, match=match):
        nd.jit(fn, backend="interpret")(*args)
    for a, k in zip(args, keep, strict=True):
        np.testing.assert_array_equal(a, k)   # nothing written


def test_a_refused_update_names_the_users_line():
    with pytest.raises(TraceError) as info:
        nd.jit(_update_argument)(X.copy(), Y)
    assert "test_trust_inplace.py:" in str(info.value)


# ---- operators and methods NumPy users write


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fn,args", [
    (lambda a: ((a > 0).any(), (a > 0).all(), a.any(), a.all()), (X,)),
    (lambda a: ((a > 0).any(axis=1), (a > -5).all(axis=0, keepdims=True)), (X,)),
    (lambda a: (np.any(a > 1.0, axis=0), np.all(a > -1.0)), (X,)),
    (lambda a, b: ((a > 0) & (b > 3), (a > 0) | (b > 3), (a > 0) ^ (b > 3), ~(a > 0)), (X, Y)),
    (lambda a, b: (np.logical_and(a, b > 3), np.logical_or(a > 0, b), np.logical_not(a)), (X, Y)),
    (lambda a: (a.T * 2.0, a.reshape(4, 3), a.reshape(-1), a.ravel(), a.flatten()), (X,)),
    (lambda a: (a.astype(np.float32) * 2, a.clip(-1.0, 1.5), np.clip(a, -0.5, None)), (X,)),
    (lambda a, b: (a.dot(b.T), a.max(), a.min(axis=0), a.astype(np.int64).sum(axis=1)), (X, Y)),
    (lambda a: (a.copy(), +a, a * 1, a + 0.0, a.astype(a.dtype)), (X,)),
])
def test_methods_and_operators_match_numpy(mode, fn, args):
    check(fn, mode, *args)


def test_any_all_over_an_empty_axis_match_numpy():
    e = np.zeros((0, 3))
    check(lambda a: (a.any(), a.all(), a.any(axis=0), (a > 0).all(axis=0)), "interpret", e)


@pytest.mark.parametrize("mode", MODES)
def test_results_never_alias_the_callers_arrays_where_numpy_makes_new_ones(mode):
    def f(a):
        return a.copy(), +a, a * 1, a + 0.0, a - 0.0, a.astype(a.dtype), a.flatten()

    x = X.copy()
    jf = check(f, mode, x)
    for r in jf(x):
        assert not np.shares_memory(r, x)
    r1, r2 = nd.jit(lambda a: (a * 1.0, a * 1.0), backend="interpret")(x)
    assert not np.shares_memory(r1, r2)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fn", [
    lambda a: a.copy()[1:],
    lambda a: a[1:] * 1.0,
    lambda a: a[1:].copy(),
    lambda a: a[::-1].copy(),
    lambda a: +a[1:],
    lambda a: a[1:].astype(np.float64),
    lambda a: a.reshape(2, 6)[1] * 1,
    lambda a: a.T[1:] * 1,
    lambda a: nd.concatenate([a[1:]]),
    lambda a: nd.while_loop(lambda c: c.sum() < -1e9, lambda c: c * 1.0, a[1:] * 1.0),
    lambda a: nd.fori_loop(0, 2, lambda i, c: c * 1.0, a),
    lambda a: nd.fori_loop(0, 3, lambda i, c: (c[0] * 1.0, c[1] + 1.0), (a[1:], a))[0],
])
def test_a_copy_of_a_view_is_a_new_array_once_the_copy_is_optimized_away(mode, fn):
    """The optimizer drops ``* 1`` and ``.copy()``; the result was then a view of the caller's
    array (the check walked through reshapes but not slices, and not through loops, which hand
    back their initial value when the body is the identity). A caller writing into the result
    changed their own array."""
    x = X.copy()
    jf = check(fn, mode, x)
    for _ in range(3):
        r = jf(x)
        assert not np.shares_memory(r, x)
        r[...] = 99.0
        np.testing.assert_array_equal(x, X)


def test_a_slice_returned_as_is_stays_a_view_as_in_numpy():
    x = X.copy()
    for mode in MODES:
        r = jitted(lambda a: a[1:, ::2], mode)(x)
        assert np.shares_memory(r, x) and np.array_equal(r, X[1:, ::2])


def test_returning_the_argument_itself_is_the_argument_as_in_python():
    x = X.copy()
    assert nd.jit(lambda a: a, backend="interpret")(x) is x
    assert np.shares_memory(nd.jit(lambda a: a.T, backend="interpret")(x), x)


@pytest.mark.parametrize("code,what", [
    ("a // b", "`//`"), ("a % b", "`%`"), ("divmod(a, b)", "divmod"), ("7.0 // a", "`//`"),
    ("a << 1", "`<<`"), ("a.prod()", "x.prod"), ("a.std()", "x.std"), ("a.argmax()", "x.argmax"),
    ("a.cumsum()", "x.cumsum"), ("ai & ai", "bool arrays only"), ("~ai", "`~`"),
    ("np.floor_divide(a, b)", "np.floor_divide"), ("a[a > b]", "mask indexing"), ("np.sort(a)", "np.sort"),
])
def test_unsupported_constructs_raise_trace_error_naming_them(code, what):
    env = {"np": np}
    exec(f"def f(a, b, ai):\n    return {code}\n", env)  # noqa: S102 - test code
    with pytest.raises(TraceError) as info:
        nd.jit(env["f"], backend="interpret")(X, Y, XI)
    assert what in str(info.value), str(info.value)


# ---- found in review: each returned a wrong answer or a raw error before


def test_a_constant_array_returned_is_new_on_every_call():
    def f(a):
        return a + 1, np.ones(3)

    for jf in (nd.jit(f, backend="interpret"), nd.jit(f, hot_threshold=0)):
        r = jf(np.zeros(3))
        r[1][:] = 99.0
        default_manager().wait_idle()
        np.testing.assert_array_equal(jf(np.zeros(3))[1], np.ones(3))


def test_one_temporary_returned_twice_is_one_new_array():
    def f(a):
        t = a * 1
        return t, t

    x = X.copy()
    r = nd.jit(f, backend="interpret")(x)
    assert r[0] is r[1] and not np.shares_memory(r[0], x)


def test_in_place_on_a_scalar_result_rebinds_as_numpy_scalars_do():
    def f(a):
        m = a.sum()
        v = m
        m += 1.0
        return v, m

    def g(a):
        m = a.astype(np.int64).sum()
        m /= 2            # NumPy: a new float64 scalar
        return m

    for fn in (f, g):   # Y: a sum far from zero, so rounding differences stay relative
        got, want = nd.jit(fn, backend="interpret")(Y), fn(Y)
        for gi, wi in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,),
                          strict=True):
            assert type(gi) is type(wi)
            np.testing.assert_allclose(gi, wi, rtol=1e-13)


def test_in_place_through_any_view_of_a_broadcast_is_refused():
    def f(a):
        t = a * 2.0
        b = np.broadcast_to(t, (5, 3, 4)).T
        b += 1.0
        return b

    with pytest.raises(TraceError, match="read-only"):
        nd.jit(f, backend="interpret")(X)


@pytest.mark.parametrize("code,match", [
    ("np.ravel(a, 'F')", "order='F'"), ("np.reshape(a, (4, 3), 'F')", "order='F'"),
    ("np.sum(a, None, np.int32)", "dtype"), ("np.mean(a, 1, np.float32)", "dtype"),
    ("np.clip(a, 0, 1, OUT)", "out="), ("a.any(axis=5)", "out of range"),
    ("a.all(axis=(0, 0))", "repeats"), ("a.sum(where=a > 0)", "where"),
])
def test_arguments_the_jit_does_not_honour_are_refused_not_ignored(code, match):
    env = {"np": np, "OUT": np.empty_like(X)}
    exec(f"def f(a):\n    return {code}\n", env)  # noqa: S102 - test code
    with pytest.raises(TraceError, match=match):
        nd.jit(env["f"], backend="interpret")(X)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fn", [
    lambda a: np.any(a > 0, 0, None, True),
    lambda a: (a.clip(min=-0.5), np.clip(a.astype(np.int8), 0, 300), a.reshape(4, 3, order="C")),
    lambda a: (np.transpose(a, (1, 0)) * 2.0, a.astype(np.float32, copy=True), np.copy(a, order="F")),
])
def test_numpy_argument_spellings_are_honoured(mode, fn):
    check(fn, mode, X)


def test_an_integer_that_does_not_fit_raises_overflow_error_as_numpy_does():
    x8 = np.arange(4, dtype=np.int8)
    with pytest.raises(OverflowError):
        np.minimum(x8, 300)
    with pytest.raises(OpOverflowError, match="out of bounds"):
        nd.jit(lambda a: np.minimum(a, 300), backend="interpret")(x8)


def test_attribute_probes_and_dtype_arguments_behave_as_in_python():
    seen = {}

    def f(a, tp):
        seen["device"] = hasattr(a, "device")    # hasattr must not raise
        return a.astype(tp) * 2

    got = nd.jit(f, backend="interpret")(X, np.float32)
    assert got.dtype == np.float32 and seen["device"] is False


def test_a_loop_started_from_a_constant_never_hands_back_the_constant():
    """With zero trips the loop returned the program's own constant array; a caller who wrote into
    that result changed every later call's answer."""
    x = np.arange(3.0)
    for fn in (lambda x, n: nd.fori_loop(0, n, lambda i, c: c + x, np.zeros(3)),
               lambda x, n: nd.while_loop(lambda c: c.sum() < n, lambda c: c + 1.0, np.array([5.0, 1.0, 0.0]))):
        f = nd.jit(fn)
        want = fn(x, np.int64(0))
        for _ in range(4):
            r = f(x, np.int64(0))
            np.testing.assert_array_equal(r, want)
            r[...] = 99.0


@pytest.mark.parametrize("fn", [
    lambda a: a[2].reshape(1), lambda a: a[2][None], lambda a: a[2].ravel(),
    lambda a: np.broadcast_to(a[2], (3,)), lambda a: a[2][...], lambda a: a[2].T,
])
def test_a_view_of_an_element_is_not_a_view_of_the_array(fn):
    """``x[2]`` is a new scalar in NumPy, so a reshape of it is new memory; the output check walked
    through the reshape and the index back to the argument and returned a view of it."""
    x = np.arange(5.0)
    for mode in MODES:
        r = jitted(fn, mode)(x)
        want = fn(x)
        assert type(r) is type(want) and np.array_equal(r, want) and not np.shares_memory(r, x)
