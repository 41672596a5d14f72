"""Same bits on every call: the compiled kernel and the interpreter agree bit for bit.

The interpreter is the spec. A jitted function runs interpreted until it is hot, then
compiled; if the two differed in the last bit, its output would change at some call count.
Here hypothesis-generated programs (elementwise ops including exp/log/sin/cos/tanh, casts,
``where``, reductions over all or some axes) run both ways at sizes from 1 to 1e6 elements and
are compared bit for bit: every float compared as its integer bits (so a flipped sign of zero
counts), except that NaN is compared as "NaN in the same places" (NaN payloads are not part of
NumPy's contract either). Reductions follow one defined order (:mod:`noodle.ir.reduction`),
checked here against a plain-Python statement of that order, call after call, and under
``NUMBA_NUM_THREADS=1`` and ``2`` in fresh processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import noodle as nd
from noodle.ir.reduction import CHUNK, LANES, reduce_values
from noodle.jit.manager import default_manager

from .programs import cases

SIZES_1D = [(1,), (7,), (33,), (1000,), (4097,), (70_001,)]
SIZES_2D = [(3, 700), (3, 1), (1, 700), (130, 129)]


def as_bits(a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind != "f":
        return a
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def assert_same_bits(got, want, where: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (where, got.dtype, want.dtype, got.shape)
    if got.dtype.kind == "f":
        nan_g, nan_w = np.isnan(got), np.isnan(want)
        assert np.array_equal(nan_g, nan_w), f"{where}: NaN in different places"
        g, w = as_bits(got)[~nan_g], as_bits(want)[~nan_w]
    else:
        g, w = got, want
    bad = np.flatnonzero(g != w)
    assert bad.size == 0, (f"{where}: {bad.size} of {g.size} elements differ, first at {bad[0]}: "
                           f"{got.ravel()[~nan_g.ravel()][bad[0]]!r} vs {want.ravel()[~nan_w.ravel()][bad[0]]!r}"
                           if got.dtype.kind == "f" else f"{where}: {bad.size} elements differ")


def outputs(r) -> tuple:
    return r if isinstance(r, tuple) else (r,)


def interpreted_and_compiled(fn, xs):
    with np.errstate(all="ignore"):
        want = outputs(nd.jit(fn, backend="interpret")(*xs))
        f = nd.jit(fn, hot_threshold=10**9)
        backend = f.compile(*xs)
        assert backend == "numba", f"compile failed: {f.state(*xs).error}"
        got = outputs(f(*xs))
    assert f.stats()["compiled_calls"] == 1
    return got, want


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(max_steps=5, allow_matmul=False, dtypes=("float32", "float64"),
                  shapes=tuple(SIZES_1D)), seed=st.integers(0, 2**16))
def test_compiled_equals_interpreted_bit_for_bit_1d(case, seed):
    xs = case.inputs(seed)
    got, want = interpreted_and_compiled(case.fn(), xs)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_same_bits(g, w, f"output {k} of {case}")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(max_steps=5, allow_matmul=False, dtypes=("float32", "float64", "int64"),
                  shapes=tuple(SIZES_2D)), seed=st.integers(0, 2**16))
def test_compiled_equals_interpreted_bit_for_bit_2d(case, seed):
    xs = case.inputs(seed)
    got, want = interpreted_and_compiled(case.fn(), xs)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_same_bits(g, w, f"output {k} of {case}")


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


LARGE = {
    "chain": lambda a, b: a * b + np.tanh(a) - 0.5 * np.exp(-b),
    "sum_sq": lambda a, b: ((a - b) * (a - b)).sum(),
    "mean_exp": lambda a, b: np.exp(a * 0.1).mean(),
    "max_min": lambda a, b: (np.maximum(a, b).max(), (a * b).min()),
    "log_sum": lambda a, b: np.log(np.abs(a) + 1.0).sum() + b.sum(),
}


@pytest.mark.parametrize("name", sorted(LARGE))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_large_programs_compiled_equal_interpreted(name, dtype):
    rng = np.random.default_rng(11)
    xs = [rng.standard_normal(1_000_000).astype(dtype) for _ in range(2)]
    got, want = interpreted_and_compiled(LARGE[name], xs)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_same_bits(g, w, f"{name} {dtype} output {k}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_large_row_softmax_compiled_equals_interpreted(dtype):
    x = np.random.default_rng(12).standard_normal((512, 1024)).astype(dtype)
    got, want = interpreted_and_compiled(_softmax, [x])
    assert_same_bits(got[0], want[0], f"softmax {dtype}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forty_calls_across_the_tier_switch_give_one_result(dtype):
    x = np.random.default_rng(3).standard_normal(200_000).astype(dtype)

    def f(a):
        return (a * 1.5 + np.exp(-a * a)).sum(), (a * a).mean()

    jf = nd.jit(f, hot_threshold=5)
    seen = set()
    for i in range(40):
        s, m = jf(x)
        seen.add((as_bits(s).tobytes(), as_bits(m).tobytes()))
        if i == 10:
            default_manager().wait_idle()
    stats = jf.stats()
    assert stats["interpreted_calls"] > 0 and stats["compiled_calls"] > 0, stats
    assert len(seen) == 1, f"{len(seen)} different results in 40 calls"


def _python_sum(seq) -> float:
    """The defined order, stated in plain Python (the docstring of noodle.ir.reduction)."""
    total = None
    for c0 in range(0, len(seq), CHUNK):
        lanes = [-0.0] * LANES
        for t, v in enumerate(seq[c0:c0 + CHUNK]):
            lanes[t % LANES] = lanes[t % LANES] + float(v)
        chunk = lanes[0]
        for u in range(1, LANES):
            chunk = chunk + lanes[u]
        total = chunk if total is None else total + chunk
    return 0.0 if total is None else total


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 3 * CHUNK + 17), seed=st.integers(0, 2**16), dtype=st.sampled_from(["float32", "float64"]))
def test_the_interpreter_sums_in_the_defined_order(n, seed, dtype):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 6, n)).astype(dtype)
    got = reduce_values("sum", x, None, False, dtype)
    want = np.asarray(_python_sum(list(x))).astype(dtype)
    assert as_bits(got).tobytes() == as_bits(want).tobytes()
    # over an axis: each output element sums its own sequence in the same order
    if n >= 6:
        m = x[: (n // 3) * 3].reshape(3, -1).astype(np.float64)
        rows = reduce_values("sum", m, 1, False, "float64")
        assert [float(r) for r in rows] == [_python_sum(list(r)) for r in m]


def test_signed_zeros_and_nans_are_defined():
    z = np.array([0.0, -0.0, -0.0])
    assert np.signbit(reduce_values("sum", -np.abs(z), None, False, "float64"))   # -0 + -0 + -0
    assert not np.signbit(reduce_values("max", z, None, False, "float64"))
    assert not np.signbit(reduce_values("max", z[::-1], None, False, "float64"))
    assert np.signbit(reduce_values("min", z, None, False, "float64"))
    assert np.signbit(reduce_values("min", z[::-1].copy(), None, False, "float64"))
    for f in (lambda a: a.max(), lambda a: a.min(), lambda a: (a * 1.0).max()):
        for arr in (z, z[::-1].copy(), np.array([-0.0, 0.0, np.nan, -np.nan])):
            got, want = interpreted_and_compiled(f, [arr])
            assert_same_bits(got[0], want[0], f"{arr}")


_THREADS_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import noodle as nd
    rng = np.random.default_rng(5)
    out = {}
    for dtype in ("float32", "float64"):
        a = rng.standard_normal(1_000_003).astype(dtype)
        b = rng.standard_normal(1_000_003).astype(dtype)
        for name, fn in (("sum", lambda a, b: (a * b + 1.0).sum()), ("exp", lambda a, b: np.exp(-a * a).sum()),
                         ("mean", lambda a, b: (a - b).mean())):
            f = nd.jit(fn, hot_threshold=10**9)
            assert f.compile(a, b) == "numba"
            r = np.asarray(f(a, b))
            out[f"{name}-{dtype}"] = r.tobytes().hex()
    print(json.dumps(out))
""")


def test_reductions_do_not_depend_on_the_thread_count(tmp_path):
    results = []
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads, NOODLE_CACHE_DIR=str(tmp_path / threads))
        proc = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert results[0] == results[1]
    # and both equal the interpreter in this process
    rng = np.random.default_rng(5)
    fns = (("sum", lambda a, b: (a * b + 1.0).sum()), ("exp", lambda a, b: np.exp(-a * a).sum()),
           ("mean", lambda a, b: (a - b).mean()))
    for dtype in ("float32", "float64"):
        a = rng.standard_normal(1_000_003).astype(dtype)
        b = rng.standard_normal(1_000_003).astype(dtype)
        for name, fn in fns:
            want = np.asarray(nd.jit(fn, backend="interpret")(a, b))
            assert results[0][f"{name}-{dtype}"] == want.tobytes().hex(), (name, dtype)
