"""NumPy's own inner loops called from compiled code (:mod:`noodle.backends.numpy_loops`).

The oracle is the ufunc itself: a loop called through its address must give the ufunc's bytes
for every value (specials, subnormals, huge and tiny), contiguous or broadcast (stride 0), and a
request NumPy would answer with a cast or a different loop gets no loop at all.
"""

from __future__ import annotations

import numpy as np
import pytest

from noodle.backends.numba_expf import verified as expf_verified
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
    assert call_unary(handle, x, out)
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


def test_call_unary_refuses_arrays_it_cannot_walk_or_would_misread():
    handle = strided_loop("exp", ("float64", "float64"))
    with pytest.raises(ValueError, match="contiguous"):
        call_unary(handle, np.ones(4), np.empty(3))
    with pytest.raises(TypeError, match="float64 -> float64"):
        call_unary(handle, np.ones(4, np.float32), np.empty(4, np.float32))
    binary = strided_loop("power", ("float64", "float64", "float64"))
    with pytest.raises(TypeError):
        call_unary(binary, np.ones(4), np.empty(4))


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
    if name == "exp" and dtype == "float32" and expf_verified():
        assert kernel.plan.mode != "stages"   # NumPy's float32 exp runs inline (numba_expf)
    else:
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


@pytest.mark.parametrize("fn", [lambda x: np.exp(x) * 2.0, lambda x: np.exp(x) * x + 1.0, lambda x: x * 3.0 - 1.0])
def test_a_read_only_input_stays_compiled_with_numpys_answer(fn):
    """A read-only array (np.frombuffer, a read-only memmap) is another type to the compiled
    signatures: it is read through a copy, and the signature keeps running compiled."""
    import noodle as nd

    x = np.linspace(-2, 2, 1000)
    x.setflags(write=False)
    f = nd.jit(fn, backend="numba")
    f.compile(x)
    for arg in (x, x.copy(), np.frombuffer(x.tobytes())):
        np.testing.assert_array_equal(f(arg), fn(arg))
    stats = f.stats()
    assert stats["compiled_calls"] == 3 and stats["interpreted_calls"] == 0, stats


def test_too_few_operands_for_a_kernel_with_a_0d_operand_is_named():
    from noodle.backends.registry import get_backend
    from noodle.errors import ShapeError
    from noodle.jit.lower import kernel_spec
    from noodle.passes import optimize, units
    from noodle.trace import trace

    x = np.linspace(0, 1, 64)
    prog = optimize(trace(lambda x, p, a: x * p + a, (x, x, np.asarray(0.37))))
    (unit,) = [u for u in units(prog) if u.group is not None]
    kernel = get_backend("numba").compile_kernel(kernel_spec(prog, unit)[0])
    with pytest.raises(ShapeError, match="expects 3 inputs, got 1"):
        kernel(x)


def test_generated_kernels_carry_the_digest_of_the_helpers_they_call(monkeypatch):
    """Numba's disk cache keys a generated kernel by its own file; the helpers it calls (row sums,
    the loop callers) live in other files, so their digest is written into the source: a changed
    helper changes the source, and the kernel is compiled again instead of reusing old code."""
    from noodle.backends import cache_dir, numba_codegen, numba_rowwise
    from noodle.backends.numba_plan import plan
    from noodle.jit.lower import row_spec

    kernel, _ = _staged_kernel(CHAINS["exp"], (np.ones(16), np.ones(16)))
    x = np.ones((4, 16))
    from noodle.passes import optimize, units
    from noodle.trace import trace

    prog = optimize(trace(lambda x: x / x.sum(axis=-1, keepdims=True), (x,)))
    (unit,) = [u for u in units(prog) if u.group is not None]
    rspec = row_spec(prog, unit)[0]
    before = (numba_codegen.generate(kernel.spec, plan(kernel.spec)), numba_rowwise.source(rspec))
    assert all(cache_dir.backends_digest() in src for src in before)
    monkeypatch.setattr(numba_codegen, "backends_digest", lambda: "changed-helper")
    monkeypatch.setattr(numba_rowwise, "backends_digest", lambda: "changed-helper")
    after = (numba_codegen.generate(kernel.spec, plan(kernel.spec)), numba_rowwise.source(rspec))
    assert all(a != b for a, b in zip(before, after, strict=True))
