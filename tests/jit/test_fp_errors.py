"""Under the caller's ``np.errstate(..="raise")`` (or ``"call"``) a jitted function does what the
plain function does: it raises ``FloatingPointError`` (or calls the handler) where NumPy would,
instead of returning ``inf``, ``nan`` or a wrapped integer that compiled kernels compute without
looking at floating-point flags. The plain function is the oracle."""

from __future__ import annotations

import numpy as np
import pytest

import noodle as nd


def _divide(x, y):
    return x / y + 1.0


def _loop_overflow(k0):
    return nd.fori_loop(0, 4, lambda i, k: k * np.int64(1 << 40), k0)


def _compiled(fn, *args):
    j = nd.jit(fn)
    j.compile(*args)
    return j


@pytest.mark.parametrize("n", [8, 300_000])
def test_division_by_zero_raises_as_numpy_does(n: int) -> None:
    x, y = np.ones(n), np.zeros(n)
    j = _compiled(_divide, x, y)
    np.testing.assert_array_equal(j(x, y), np.full(n, np.inf))   # no trap: the values, as NumPy's
    with np.errstate(divide="raise"):
        with pytest.raises(FloatingPointError):
            _divide(x, y)
        with pytest.raises(FloatingPointError):
            j(x, y)
        ok = np.full(n, 2.0)
        np.testing.assert_array_equal(j(x, ok), _divide(x, ok))   # no error: the same answer


def test_integer_overflow_in_a_loop_raises_as_numpy_does() -> None:
    k0 = np.int64(3)
    j = _compiled(_loop_overflow, k0)
    with np.errstate(all="ignore"):
        assert j(k0) == _loop_overflow(k0)
    with np.errstate(over="raise"):
        with pytest.raises(FloatingPointError):
            _loop_overflow(k0)
        with pytest.raises(FloatingPointError):
            j(k0)


def test_a_call_handler_sees_what_it_would_see_eagerly() -> None:
    x, y = np.ones(16), np.zeros(16)
    j = _compiled(_divide, x, y)
    seen: list[str] = []
    with np.errstate(divide="call", call=lambda kind, flag: seen.append(kind)):
        want = _divide(x, y)
        eager = list(seen)
        seen.clear()
        got = j(x, y)
    assert seen == eager and eager
    np.testing.assert_array_equal(got, want)


def test_ignore_and_the_default_keep_the_compiled_path() -> None:
    x, y = np.ones(16), np.full(16, 2.0)
    j = _compiled(_divide, x, y)
    before = j.stats()["compiled_calls"]
    j(x, y)
    with np.errstate(all="ignore"):
        j(x, y)
    assert j.stats()["compiled_calls"] == before + 2
    with np.errstate(all="raise"):
        j(x, y)   # the plain function ran: nothing compiled was called
    assert j.stats()["compiled_calls"] == before + 2
