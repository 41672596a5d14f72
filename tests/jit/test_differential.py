"""Differential tests: random programs through the interpreter and the CPU JIT, NumPy as the oracle.

Programs come from ``programs.cases``: 1-3 inputs of shapes (4,5), (5,), (4,1), up to six
steps of unary/binary ops (with broadcasting and Python-scalar constants), where, reductions
(sum/mean/max/min over all, the first or the last axis, keepdims or not), matmul (``x @ y.T``),
transpose and astype; dtypes float32, float64, int64. Inputs are uniform in [-2, 2] (floats)
or integers in [-5, 5].

Tolerances, per dtype of each output (``programs.tolerance``; float32's for a float output of a
program that computes anything in float32, interpreted and compiled alike: both sum float32 in the
defined order with float64 accumulators, NumPy pairwise in float32, so a float32 sum cast to
float64 differs by an ulp of float32), with NaN == NaN and inf required to match exactly:

* bool / int64: exact, for every op (integer arithmetic wraps identically everywhere).
* float64: rtol 1e-9, plus an absolute slack of 1e-9 x max|oracle| (reductions are summed
  in a different order by the compiled kernels, and a sum with cancellation is only accurate
  relative to the magnitude of its terms). Elementwise ops agree to ~1 ulp (Numba's libm vs
  NumPy's SIMD exp/log/sin/cos/tanh).
* float32: rtol 2e-4 plus 2e-4 x max|oracle| (float32 transcendentals differ by a few ulp
  between NumPy's SIMD ufuncs and libm; chains of up to six ops compound it; the compiled
  reductions accumulate float32 in float64, which is the more accurate side).

The interpreter is checked on hundreds of programs per run; the compiled path on fewer
(each distinct fused region is a Numba compile, ~0.3-1 s, cached on disk afterwards); every
other registered backend (IREE, CUDA on a GPU) on a few. Fused regions one by one, against the
interpreter's semantics with bit-exact rules: tests/backends/test_differential_backends.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import noodle as nd
from noodle.ir.verify import verify
from noodle.passes import optimize
from noodle.trace import trace

from .programs import LARGE_SHAPES, cases, tolerance


def float64_truth(case, fn, xs):
    """The function on the float32 inputs widened to float64, for programs with a reduction.

    Why: NumPy sums float32 in float32 (pairwise), noodle in float64 (the defined order), so
    under cancellation (``abs(x.sum(axis=0)) ** y``) NumPy's float32 result is the inaccurate one:
    a case found here was 1.5e-3 off the float64 value where the jitted one was 1.9e-7 off. A
    result close to this wider evaluation is as right as NumPy's."""
    if case is None or case.dtype != "float32" or not any(step[0] == "red" for step in case.steps):
        return None
    with np.errstate(all="ignore"):
        return outputs_of(fn(*[x.astype(np.float64) for x in xs]))


def assert_close(got, want, where: str, case=None, truth=None) -> None:
    """``got`` matches NumPy's ``want``, or (where given) the wider evaluation ``truth``."""
    if truth is not None:
        try:
            _assert_close(got, want, where, case)
        except AssertionError:
            _assert_close(got, np.asarray(truth).astype(np.asarray(want).dtype), where + " (float64 truth)", case)
        return
    _assert_close(got, want, where, case)


def _assert_close(got, want, where: str, case=None) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{where}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{where}: dtype {got.dtype} != {want.dtype}"
    tol = tolerance(want.dtype)
    if want.dtype.kind == "f" and case is not None and "float32" in case.float_dtypes():
        # a float64 output computed through float32 (cos(x32).astype(f64)) is only float32-accurate
        tol = tolerance(np.dtype(np.float32))
    if want.dtype.kind == "f":
        finite = want[np.isfinite(want)]
        scale = float(np.max(np.abs(finite))) if finite.size else 0.0
        np.testing.assert_allclose(got, want, rtol=tol["rtol"], atol=tol["atol"] + tol["rtol"] * scale,
                                   equal_nan=True, err_msg=where)
        assert np.array_equal(np.isinf(got), np.isinf(want)), f"{where}: inf positions differ"
    else:
        np.testing.assert_array_equal(got, want, err_msg=where)


def outputs_of(result):
    return result if isinstance(result, tuple) else (result,)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(), seed=st.integers(0, 2**16))
def test_interpreter_matches_numpy(case, seed):
    xs = case.inputs(seed)
    fn = case.fn()
    with np.errstate(all="ignore"):
        want = outputs_of(fn(*xs))
    # every pass keeps the program valid
    optimize(trace(fn, xs), verify_each=True)
    f = nd.jit(fn, backend="interpret")
    got = outputs_of(f(*xs))
    truth = float64_truth(case, fn, xs) or [None] * len(want)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_close(g, w, f"interpreted output {k} of {case}", case, truth[k])
    # and through NBC bytes
    data = f.bytecode(*xs)
    back = nd.nbc.loads(data)
    verify(back)
    got = outputs_of(nd.Executor(backend="interpret").execute(data, *xs))
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_close(g, w, f"NBC output {k} of {case}", case, truth[k])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(max_steps=4), seed=st.integers(0, 2**16))
def test_numba_jit_matches_numpy(case, seed):
    xs = case.inputs(seed)
    fn = case.fn()
    with np.errstate(all="ignore"):
        want = outputs_of(fn(*xs))
    f = nd.jit(fn, hot_threshold=10**9)
    backend = f.compile(*xs)
    assert backend == "numba", f"compile failed for {case}: {f.state(*xs).error}"
    with np.errstate(all="ignore"):
        got = outputs_of(f(*xs))
    assert f.stats()["compiled_calls"] == 1
    truth = float64_truth(case, fn, xs) or [None] * len(want)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_close(g, w, f"compiled output {k} of {case}", case, truth[k])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(max_steps=4, shapes=tuple(LARGE_SHAPES)), seed=st.integers(0, 2**16))
def test_numba_jit_matches_numpy_on_large_arrays(case, seed):
    """Same check above the backends' parallel threshold (threaded and blocked code paths)."""
    test_numba_jit_matches_numpy.hypothesis.inner_test(case, seed)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(max_steps=5, indexing=True), seed=st.integers(0, 2**16))
def test_programs_with_slices_gathers_and_loops_match_numpy(case, seed):
    """Slices (stencils, steps, reversal), constant gathers, concatenation, fori/while loops among
    the other steps: interpreted, through NBC, and compiled (the default placement), each against
    NumPy running the same function eagerly."""
    test_interpreter_matches_numpy.hypothesis.inner_test(case, seed)
    xs = case.inputs(seed)
    fn = case.fn()
    with np.errstate(all="ignore"):
        want = outputs_of(fn(*xs))
        f = nd.jit(fn, hot_threshold=10**9)
        f.compile(*xs)
        got = outputs_of(f(*xs))
    truth = float64_truth(case, fn, xs) or [None] * len(want)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_close(g, w, f"compiled output {k} of {case}", case, truth[k])


def _other_backends() -> list:
    """Every registered backend but Numba (checked above), CUDA marked for GPU machines."""
    from noodle.backends.registry import backend_names

    names = [n for n in backend_names() if n != "numba"]
    return [pytest.param(n, marks=pytest.mark.gpu) if n == "cuda" else n for n in names]


@pytest.mark.parametrize("name", _other_backends())
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(max_steps=3), seed=st.integers(0, 2**16))
def test_every_backend_jit_matches_numpy(name, case, seed):
    """The same programs through ``nd.jit(backend=name)`` for the other backends (few examples:
    an IREE module compiles in ~0.5 s). A region a backend refuses runs interpreted: still
    NumPy's answer, which is what is checked."""
    from noodle.backends.registry import get_backend

    ok, why = get_backend(name).available()
    if not ok:
        pytest.skip(f"backend {name!r} is unavailable here: {why}")
    xs = case.inputs(seed)
    fn = case.fn()
    with np.errstate(all="ignore"):
        want = outputs_of(fn(*xs))
        f = nd.jit(fn, backend=name, hot_threshold=10**9)
        f.compile(*xs)
        got = outputs_of(f(*xs))
    truth = float64_truth(case, fn, xs) or [None] * len(want)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        g = g.get() if hasattr(g, "get") and not isinstance(g, np.ndarray) else g
        assert_close(g, w, f"{name} output {k} of {case}", case, truth[k])
