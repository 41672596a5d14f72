"""NumPy's own inner loops called from compiled code (:mod:`noodle.backends.numpy_loops`).

The oracle is the ufunc itself: a loop called through its address must give the ufunc's bytes
for every value (specials, subnormals, huge and tiny), contiguous or broadcast (stride 0), and a
request NumPy would answer with a cast or a different loop gets no loop at all.
"""

from __future__ import annotations

import numpy as np
import pytest

from noodle.backends.numpy_loops import call2, call3, call_unary, strided_loop
from noodle.ir.ops import LIBM_OPS, OPS


def values(dtype: str, n: int = 20_000) -> np.ndarray:
    info = np.finfo(dtype)
    rng = np.random.default_rng(3)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, info.tiny, -info.tiny, info.tiny / 4, info.max,
                        -info.max, info.eps, 1.0, -1.0, 0.5, 88.7, -103.9, 709.7, -745.1, 1e5, -1e5], dtype)
    spread = (rng.standard_normal(n) * 10.0 ** rng.integers(-6, 4, n)).astype(dtype)
    return np.concatenate([special, spread, rng.uniform(-800, 800, n).astype(dtype)])


UNARY = sorted(op for op in LIBM_OPS if OPS[op].kind.name == "UNARY")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", UNARY)
def test_a_unary_loop_gives_the_ufuncs_bytes(op, dtype):
    ufunc = getattr(np, OPS[op].numpy)
    handle = strided_loop(ufunc.__name__, (dtype, dtype))
    assert handle is not None, f"NumPy gave no loop for {op} {dtype}"
    x = values(dtype)
    out = np.empty_like(x)
    assert call_unary(handle.array(), x, out)
    with np.errstate(all="ignore"):
        want = ufunc(x)
    # the same C function on the same values: the same bytes, NaN payloads included
    assert np.array_equal(out.view(np.uint8), want.view(np.uint8))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_binary_loop_with_a_broadcast_operand(dtype):
    handle = strided_loop("power", (dtype, dtype, dtype))
    assert handle is not None
    base = np.abs(values(dtype))
    expo = np.asarray(1.7, dtype)
    out = np.empty_like(base)
    size = base.itemsize
    # the exponent is one element read with stride 0, as a kernel passes a constant
    assert call3(handle.array(), base.ctypes.data, size, expo.ctypes.data, 0, out.ctypes.data, size, base.size,
                 np.empty(8, np.int64))
    with np.errstate(all="ignore"):
        want = np.power(base, expo)
    np.testing.assert_array_equal(out, want)


def test_a_strided_source_and_a_partial_run():
    handle = strided_loop("exp", ("float64", "float64"))
    x = np.linspace(-5, 5, 101)
    out = np.full(50, -1.0)
    # every other element of x, 49 of them: the last element of out stays untouched
    assert call2(handle.array(), x.ctypes.data, 16, out.ctypes.data, 8, 49, np.empty(8, np.int64))
    np.testing.assert_array_equal(out[:49], np.exp(x[::2][:49]))
    assert out[49] == -1.0


@pytest.mark.parametrize("ufunc, dtypes", [
    ("exp", ("float32", "float64")),      # NumPy would cast: no loop of its own for that pair
    ("exp", ("int64", "float64")),
    ("exp", ("float64",)),                # wrong arity
    ("not_a_ufunc", ("float64", "float64")),
    ("power", ("float64", "float64")),
])
def test_what_needs_a_cast_or_is_no_ufunc_gets_no_loop(ufunc, dtypes):
    assert strided_loop(ufunc, dtypes) is None


def test_call_unary_refuses_arrays_it_cannot_walk():
    handle = strided_loop("exp", ("float64", "float64"))
    with pytest.raises(ValueError, match="contiguous"):
        call_unary(handle.array(), np.ones(4), np.empty(3))


# ------------------------------------------------- the compiled one-block drivers of fused kernels
def _staged_kernel(fn, args):
    """``fn`` traced and fused into one region; its Numba kernel (the backend hands out the same
    object to every caller) and the interpreter's answer."""
    from noodle.backends.registry import get_backend
    from noodle.exec.interpreter import run_program
    from noodle.jit.lower import kernel_spec
    from noodle.passes import optimize, units
    from noodle.trace import trace

    prog = optimize(trace(fn, args))
    (unit,) = [u for u in units(prog) if u.group is not None]
    spec, _ins, _outs = kernel_spec(prog, unit)
    with np.errstate(all="ignore"):
        want = run_program(prog, args)
    return get_backend("numba").compile_kernel(spec), want


CHAINS = {
    "exp": lambda a, b: a * b - 0.5 * np.exp(-b),
    "sin_cos": lambda a, b: np.sin(a) * np.cos(b) + a,
    "tanh": lambda a, b: np.tanh(a * 3.0) - b,
    "log": lambda a, b: np.log(np.abs(a) + b * b) * 2.0,
    "power_const": lambda a, b: np.abs(a) ** 2.5 + b,
    "power_one_element": lambda a, b: np.abs(a) ** b - a,   # b: one element (read with stride 0)
}


@pytest.mark.parametrize("n", [16, 1000, 100_003])   # one block, or four with a ragged last (BLOCK 32 Ki)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(CHAINS))
def test_fused_kernels_call_numpys_loops_and_give_the_interpreters_bits(name, dtype, n):
    rng = np.random.default_rng(n + len(name))
    a = (rng.standard_normal(n) * 4).astype(dtype)
    b = (rng.random(1 if name == "power_one_element" else n) + 0.5).astype(dtype)
    a[:4] = [np.nan, np.inf, -np.inf, -0.0]
    kernel, want = _staged_kernel(CHAINS[name], (a, b))
    assert kernel.plan.mode == "stages" and kernel._runb is not None, "the compiled driver was not chosen"
    with np.errstate(all="ignore"):
        kernel(np.full_like(a, 0.75), np.full_like(b, 0.5))   # pooled outputs then hold other values
        got = kernel(a, b)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and np.array_equal(np.isnan(g), np.isnan(w))
        assert np.array_equal(g[~np.isnan(g)].view(np.uint8), w[~np.isnan(w)].view(np.uint8))


def test_the_compiled_driver_refuses_what_does_not_fit_with_a_clear_error():
    from noodle.errors import NoodleError

    a = np.linspace(-1, 1, 16)
    kernel, _ = _staged_kernel(CHAINS["exp"], (a, a + 2))
    for bad in [(a[:15], a[:15]), (a.astype(np.float32), a), (a[::2].repeat(2)[::1][:16].reshape(4, 4), a)]:
        with pytest.raises((NoodleError, TypeError, ValueError)) as err:
            kernel(*bad)
        assert "shape" in str(err.value) or "dtype" in str(err.value) or "match" in str(err.value), err.value


def test_a_step_that_casts_keeps_the_python_driver_and_its_answer():
    x = np.arange(16, dtype=np.int64)
    kernel, want = _staged_kernel(lambda x, y: np.exp(x) * y, (x, np.full(16, 0.5)))
    assert kernel._loop_args == ()
    np.testing.assert_array_equal(kernel(x, np.full(16, 0.5))[0], want[0])
