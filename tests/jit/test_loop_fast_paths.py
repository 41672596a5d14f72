"""The lean paths a compiled loop body takes (0-d ops on NumPy scalars, the generated kernel and
dot entries): the same bits as the eager function, and every input they do not take goes to the
checked path, which computes it or names what is wrong. The oracle is the plain function run
eagerly on NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from tests.jit.call_helpers import example_module

import noodle as nd
from noodle.backends.reference import evaluate
from noodle.backends.spec import Instr, KernelSpec, MatmulSpec
from noodle.errors import DTypeError, ShapeError


def _bits(x) -> bytes:
    return np.asarray(x).tobytes() + str(np.asarray(x).dtype).encode()


_example = example_module


@pytest.mark.parametrize("n", [60, 300])
def test_jitted_conjugate_gradient_gives_the_eager_bits(n: int) -> None:
    """Every step of the solve is one IEEE operation per element in the same order as NumPy's
    (the fused updates multiply then add, the dots and the product are NumPy's own): so the
    jitted solve returns the eager solve's bits and iteration count, not merely close values."""
    mod = _example("dense_layers")
    rng = np.random.default_rng(n)
    m = rng.standard_normal((n, n))
    a, b = m @ m.T + n * np.eye(n), rng.standard_normal(n)
    x, k = mod.conjugate_gradient(a, b)
    solve = nd.jit(mod.conjugate_gradient)
    solve.compile(a, b)
    for _ in range(3):   # every call, not only the first
        xj, kj = solve(a, b)
        assert int(kj) == int(k)
        assert _bits(xj) == _bits(x)


def _scalar_loop(x0, y0, k0):
    """0-d carries through every op the scalar path takes (power has tests of its own:
    tests/jit/test_scalar_power.py)."""

    def cond(c):
        k, x, y, _, _ = c
        return (k < 7) & (x == x)

    def body(c):
        k, x, y, flag, big = c
        q = x / y                  # y reaches 0: inf, then nan stops the loop
        y2 = y - y * 0.5 - (y < 1e-3) * y
        return k + 1, q * 1.5, y2, (x >= y) != flag, big + k * (1 << 62)   # int64 wraps as the ufunc's

    return nd.while_loop(cond, body, (k0, x0, y0, np.bool_(False), np.int64(5)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_scalar_ops_in_a_loop_match_the_eager_loop(dtype: str) -> None:
    x0, y0 = np.asarray(3.0, dtype)[()], np.asarray(0.7, dtype)[()]
    with np.errstate(all="ignore"):
        want = _scalar_loop(x0, y0, np.int64(0))
    f = nd.jit(_scalar_loop)
    f.compile(x0, y0, np.int64(0))
    with np.errstate(all="ignore"):
        for _ in range(2):
            got = f(x0, y0, np.int64(0))
            assert len(got) == len(want)
            for g, w in zip(got, want, strict=True):
                assert _bits(g) == _bits(w), (g, w)


def test_integer_overflow_and_mixed_types_in_a_loop_match_eager() -> None:
    def fn(k0, s0):
        def body(c):
            k, s, t = c
            return k + 1, s * np.int64(1 << 40) + k, t + s / k    # wraps; int / int is float64

        return nd.while_loop(lambda c: c[0] < 5, body, (k0, s0, np.float64(0.0)))

    args = (np.int64(1), np.int64(3))
    with np.errstate(all="ignore"):
        want = fn(*args)
        f = nd.jit(fn)
        f.compile(*args)
        got = f(*args)
    for g, w in zip(got, want, strict=True):
        assert _bits(g) == _bits(w), (g, w)


def _axpy(n: int) -> KernelSpec:
    """``x + s * p`` with ``s`` 0-d: the shape of a CG update."""
    d = "float64"
    body = (Instr("multiply", (0, 2), d), Instr("add", (1, 3), d))
    return KernelSpec(((d, ()), (d, (n,)), (d, (n,))), (), body, (4,), (n,))


def test_kernel_entry_takes_scalars_and_sends_everything_else_to_the_checked_path() -> None:
    from noodle.backends.numba_cpu import NumbaBackend

    n = 800
    spec = _axpy(n)
    kernel = NumbaBackend().compile_kernel(spec)
    entry = kernel.entry()
    assert entry is not kernel   # a small serial kernel with a 0-d input has the lean entry
    rng = np.random.default_rng(3)
    x, p = rng.standard_normal(n), rng.standard_normal(n)
    s = np.float64(0.37)
    want = evaluate(spec, np.asarray(s), x, p)[0]
    for scalar in (s, np.asarray(s), np.asarray([0.37])):
        (got,) = entry(scalar, x, p)
        assert _bits(got) == _bits(want)
    # strided and read-only arrays: another type to the compiled signature, computed all the same
    wide = np.repeat(p, 2)
    ro = x.copy()
    ro.flags.writeable = False
    (got,) = entry(s, ro, wide[::2])
    assert _bits(got) == _bits(want)
    (a1,) = entry(s, x, p)
    (a2,) = entry(s, x, p)
    assert not np.shares_memory(a1, a2)   # fresh outputs: a caller may keep the first
    with pytest.raises(DTypeError):
        entry(np.float32(0.37), x, p)
    with pytest.raises(DTypeError):
        entry(s, x.astype(np.float32), p)
    with pytest.raises(ShapeError):
        entry(s, x[:-1], p[:-1])


def test_dot_entry_is_numpys_matmul_and_checks_its_operands() -> None:
    from noodle.backends.numba_cpu import NumbaBackend

    n = 500
    kernel = NumbaBackend().compile_matmul(MatmulSpec(("float64", (n,)), ("float64", (n,)), "float64", ()))
    dot = kernel.entry()
    assert dot is not kernel
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    (got,) = dot(a, b)
    assert _bits(got) == _bits(a @ b)
    wa = np.repeat(a, 2)[::2]
    (got,) = dot(wa, b)
    assert _bits(got) == _bits(wa @ b)
    with pytest.raises(DTypeError):
        dot(a.astype(np.float32), b)
    with pytest.raises(ShapeError):
        dot(a[:-1], b)


def test_a_kernel_that_wraps_another_keeps_its_own_entry() -> None:
    """An axis sum runs as an elementwise kernel then the defined-order reduction; the wrapper
    forwards attribute lookups to the inner kernel, whose lean entry returned the elementwise
    values (shape (4, 5)) in place of the sum (shape (5,)) until every kernel had its own."""

    def f(x):
        return np.abs(x).sum(axis=0)

    x = np.random.default_rng(5).uniform(-2, 2, (4, 5)).astype(np.float32)
    j = nd.jit(f, backend="numba")
    j.compile(x)
    got = j(x)
    assert got.shape == (5,)
    np.testing.assert_allclose(got, f(x), rtol=1e-6)


def test_a_float32_scalar_operand_keeps_a_signaling_nans_bits() -> None:
    """Numba reads a float32 scalar argument through a C double, which quiets a signaling NaN;
    so a float32 0-d input goes to the kernel as a one-element array (found in review)."""

    def f(s, x):
        return np.where(x > 0, x, s)

    x = np.tile(np.array([1.0, -1.0], np.float32), 50)
    for bits in (0x7F800001, 0xFF800123, 0x7FC00123):
        s = np.array([bits], np.uint32).view(np.float32)[0]
        j = nd.jit(f)
        j.compile(s, x)
        assert j(s, x).view(np.uint32)[1] == f(s, x).view(np.uint32)[1] == bits
