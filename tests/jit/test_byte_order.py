"""Arrays in the other byte order get NumPy's answers from jitted code, however Numba's type cache was primed.

Why these tests: the trace names a dtype by kind and size (``>f8`` is ``float64``), and compiled
kernels read bytes as native. Numba's dispatcher was trusted to refuse a big-endian array, but its
type cache keys arrays by type number, not byte order: once any unusual float64 array (misaligned,
here) has been typed in the process, a big-endian one is taken as float64 and read swapped. A
jitted ``a * b + 1.0`` then returned all ones. Every test primes that cache first.
"""

from __future__ import annotations

import numpy as np
import pytest
from tests.jit.call_helpers import same_bits

import noodle as nd
from noodle.trace import native_byte_order


def _misaligned(n: int) -> np.ndarray:
    buf = np.zeros(n * 8 + 1, np.uint8)
    a = np.frombuffer(buf[1:].data, np.float64)
    a.flags.writeable = True
    a[:] = np.arange(n, dtype=np.float64)
    return a


def _prime(f, n: int, *rest) -> None:
    """Call ``f`` (compiled) with a misaligned float64 array: Numba types it by its slow path and caches it."""
    m = _misaligned(n)
    f.compile(m, *rest)
    for _ in range(3):
        f(m, *rest)


PROGRAMS = {
    "elementwise": lambda a, b: a * b + 1.0,
    "exp chain": lambda a, b: a * b - 0.5 * np.exp(-b) + a,
    "sum": lambda a, b: ((a - b) ** 2).sum(),
    "where": lambda a, b: np.where(a > b, a, b * 2.0),
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
@pytest.mark.parametrize("n", [16, 5000])
@pytest.mark.parametrize("which", ["first", "second", "both"])
def test_swapped_arguments_give_numpys_answer(name, n, which):
    fn = PROGRAMS[name]
    f = nd.jit(fn)
    x = np.linspace(-2.0, 3.0, n)
    _prime(f, n, x)
    a = x[::-1].astype(">f8") if which in ("first", "both") else x[::-1].copy()
    b = x.astype(">f8") if which in ("second", "both") else x.copy()
    want = fn(a, b)
    f.compile(a, b)
    for _ in range(3):   # interpreted or compiled, first call or hot
        got = f(a, b)
        if name == "sum":
            np.testing.assert_allclose(got, want, rtol=1e-12)
        else:
            assert same_bits(got, want)


G = np.linspace(0.0, 1.0, 16)


def _with_global(a, b):
    return a * b + G


def test_a_captured_global_in_the_other_byte_order_is_read_as_numbers(monkeypatch):
    import sys

    f = nd.jit(_with_global)
    x = np.linspace(-1.0, 1.0, 16)
    _prime(f, 16, x)
    f.compile(x, x)
    for _ in range(300):
        f(x, x)
    monkeypatch.setattr(sys.modules[__name__], "G", np.linspace(0.0, 1.0, 16).astype(">f8"))
    for _ in range(300):   # retraced for the swapped global; the fast path passes a native copy
        got = f(x, x)
    assert same_bits(got, _with_global(x, x))


def test_native_byte_order_keeps_values_and_native_arrays():
    x = np.arange(5.0)
    assert native_byte_order(x) is x
    s = x.astype(">f8")
    n = native_byte_order(s)
    assert n.dtype.isnative and n.dtype is np.dtype(np.float64) and np.array_equal(n, x)
    rec = np.zeros(3, dtype=[("a", ">i4"), ("b", ">f8")])
    rec["a"], rec["b"] = [1, 2, 3], [0.5, 1.5, 2.5]
    r = native_byte_order(rec)
    assert r.dtype.isnative and r["a"].tolist() == [1, 2, 3] and r["b"].tolist() == [0.5, 1.5, 2.5]
    assert native_byte_order(3.0) == 3.0


def test_a_kernel_called_directly_refuses_a_swapped_input_by_name():
    from noodle.errors import DTypeError

    f = nd.jit(lambda a, b: a * b + 1.0)
    x = np.arange(16.0)
    _prime(f, 16, x)
    kernel = f.state(_misaligned(16), x).runner.single_kernel
    with pytest.raises(DTypeError, match=">f8"):
        kernel(x.astype(">f8"), x)
    assert same_bits(kernel(x, x)[0], x * x + 1.0)


def test_the_eager_ops_numba_loop_is_never_chosen_for_swapped_arrays():
    from noodle.placement.decide import NUMBA_MIN_ELEMS, numba_eligible

    a = np.arange(NUMBA_MIN_ELEMS, dtype=np.float64)
    assert numba_eligible(a, a)
    s = a.astype(">f8")
    assert not numba_eligible(s, s)
    assert same_bits(nd.add(s, s), np.add(s, s))
