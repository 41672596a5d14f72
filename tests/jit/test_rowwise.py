"""Row-wise fusion (softmax, layernorm, normalizations): one region, one kernel, the interpreter's bits.

The interpreter is the spec: the compiled result must equal it byte for byte (-0.0 and
infinities included; NaN by position, as the differential suites compare it), and the interpreter must agree with plain NumPy (within rounding:
its sums follow the defined order of ``noodle.ir.reduction``, not NumPy's pairwise one).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import noodle as nd
from noodle.backends.numba_expf import verified as expf_verified
from noodle.backends.numba_rowwise import RowPlan
from noodle.backends.registry import get_backend
from noodle.exec.interpreter import run_program
from noodle.jit.lower import build_runner, row_spec
from noodle.passes import optimize, units
from noodle.passes.rowwise import is_rowwise
from noodle.trace import trace


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def layernorm(x, g, b):
    m = x.mean(axis=-1, keepdims=True)
    d = x - m
    v = (d * d).mean(axis=-1, keepdims=True)
    return d / np.sqrt(v + 1e-5) * g + b


def l2_normalize(x):
    return x / np.sqrt((x * x).sum(axis=-1, keepdims=True))


def log_softmax(x):
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def min_scaled(x):   # min, and a row value used by two later passes
    lo = x.min(axis=-1, keepdims=True)
    span = x.max(axis=-1, keepdims=True) - lo
    return (x - lo) / (span + 1.0), span


def sum_reshaped(x):   # keepdims=False brought back to the rows by a reshape
    s = np.abs(x).sum(axis=-1)
    return x / s.reshape(s.shape + (1,))


FNS = {"softmax": softmax, "layernorm": layernorm, "l2": l2_normalize, "log_softmax": log_softmax,
       "min_scaled": min_scaled, "sum_reshaped": sum_reshaped}


def args_for(name, x, seed=1):
    if name != "layernorm":
        return (x,)
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(x.shape[-1]).astype(x.dtype)
    b = rng.standard_normal(x.shape[-1]).astype(x.dtype)
    return (x, g, b)


def same_bits(a, b):
    """Equal bytes, NaN compared by position (which NaN an op on two NaNs returns depends on its
    operand order, which the compiler may swap: the project's differential rule)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    assert np.array_equal(nan_a, nan_b), "NaN positions differ"
    assert np.array_equal(a[~nan_a].view(np.uint8), b[~nan_b].view(np.uint8)), \
        f"max |diff| {np.max(np.abs(a[~nan_a] - b[~nan_b]), initial=0)}"


def check(fn, args, fused=True):
    """Compiled (Numba) == interpreter, byte for byte; interpreter close to plain NumPy."""
    with np.errstate(all="ignore"):
        prog = optimize(trace(fn, args))
        want = run_program(prog, args)
        got = build_runner(prog, get_backend("numba"))(args)
        plain = fn(*args)
    plain = plain if isinstance(plain, tuple) else (plain,)
    for g, w, p in zip(got, want, plain, strict=True):
        same_bits(g, w)
        tol = 1e-5 if w.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(w, p, rtol=tol, atol=tol)
    regions = [u for u in units(prog) if u.group is not None]
    if fused:
        assert len(regions) == 1 and is_rowwise(prog, regions[0].members), [u.members for u in regions]
    return prog


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("length", [7, 4097])   # one row shorter than a block, one longer
@pytest.mark.parametrize("name", sorted(FNS))
def test_rowwise_equals_interpreter(name, length, dtype):
    rows = 3 if length > 1024 else 5
    x = np.random.default_rng(length).standard_normal((rows, length)).astype(dtype)
    check(FNS[name], args_for(name, x))


@pytest.mark.parametrize("name", ["softmax", "layernorm", "log_softmax"])
def test_rows_of_length_one_stay_correct(name):
    x = np.random.default_rng(0).standard_normal((6, 1))
    check(FNS[name], args_for(name, x), fused=False)   # nothing to gain: the other kernels run it


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(FNS))
def test_nan_inf_and_signed_zeros_in_rows(name, dtype):
    x = np.random.default_rng(3).standard_normal((8, 33)).astype(dtype)
    x[0, 5] = np.nan
    x[1, :] = np.inf
    x[2, 3] = -np.inf
    x[3, :] = 0.0
    x[4, :] = -0.0
    x[5, ::2] = -0.0
    x[6, 7] = np.inf
    x[6, 8] = -np.inf
    with np.errstate(all="ignore"):
        prog = optimize(trace(FNS[name], args_for(name, x)))
        want = run_program(prog, args_for(name, x))
        got = build_runner(prog, get_backend("numba"))(args_for(name, x))
    for g, w in zip(got, want, strict=True):
        same_bits(g, w)


def test_parallel_blocks_equal_serial():
    # 300 x 1000 elements: above the parallel threshold, many blocks, a ragged last one
    x = np.random.default_rng(5).standard_normal((300, 1000)).astype(np.float32)
    check(softmax, (x,))
    check(layernorm, args_for("layernorm", x))


@pytest.mark.parametrize("axis", [-1, 1])
def test_axis_of_2d_and_3d_arrays(axis):
    def f(x):
        return x / x.sum(axis=axis, keepdims=True)

    x2 = np.random.default_rng(1).random((6, 40)) + 0.5
    check(f, (x2,))
    x3 = np.random.default_rng(2).random((3, 5, 40)) + 0.5
    check(f, (x3,), fused=axis == -1)   # a middle axis is not a row: the other kernels run it


def test_row_values_and_broadcast_operands_of_every_kind():
    def f(x, col, rowv, one):
        s = (x * col).sum(axis=-1, keepdims=True) + rowv
        return x * s - one, s * rowv

    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 50))
    check(f, (x, rng.standard_normal(50), rng.standard_normal((2, 3, 1)), rng.standard_normal((1, 1, 1))))
    check(f, (x, rng.standard_normal((1, 50)), rng.standard_normal((3, 1)), np.full(1, 2.0)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rowspec_is_planned_in_stages_and_keyed_by_content(dtype):
    x = np.ones((4, 16), dtype)
    prog = optimize(trace(softmax, (x,)))
    (unit,) = [u for u in units(prog) if u.group is not None]
    spec, ins, outs = row_spec(prog, unit)
    again, _, _ = row_spec(optimize(trace(softmax, (x,))), unit)
    assert spec.key() == again.key() and spec.rows == (4,) and spec.length == 16
    plan = RowPlan(spec)
    if dtype == "float32" and expf_verified():
        # float32 exp is NumPy's algorithm inline (noodle.backends.numba_expf): one stage
        assert [kind for kind, _ in plan.steps()] == ["numba"] and plan.inline
    else:
        assert [kind for kind, _ in plan.steps()] == ["numba", "ufunc", "numba"]   # exp by NumPy's ufunc


def test_a_backend_without_compile_rowwise_runs_the_parts():
    numba = get_backend("numba")

    class KernelsOnly:   # what IREE and CUDA offer: fused elementwise/map-reduce kernels only
        name = "kernels-only"

        def compile_kernel(self, spec):
            return numba.compile_kernel(spec)

    x = np.random.default_rng(6).standard_normal((7, 300)).astype(np.float32)
    for name in ("softmax", "layernorm", "sum_reshaped", "min_scaled"):
        args = args_for(name, x)
        with np.errstate(all="ignore"):
            prog = optimize(trace(FNS[name], args))
            want = run_program(prog, args)
            got = build_runner(prog, KernelsOnly())(args)
        for g, w in zip(got, want, strict=True):
            same_bits(g, w)


def test_through_nd_jit():
    f = nd.jit(softmax, backend="numba", hot_threshold=0)
    x = np.random.default_rng(7).standard_normal((64, 128)).astype(np.float32)
    for _ in range(3):
        got = f(x)
    prog = optimize(trace(softmax, (x,)))
    same_bits(got, run_program(prog, (x,))[0])


# ------------------------------------------------------------------ random row-wise programs
_UNARY = [lambda v: -v, np.abs, lambda v: v * 0.5, lambda v: v + 1.0, np.tanh]
_REDUCE = ["sum", "mean", "max", "min"]


@st.composite
def programs(draw):
    steps = draw(st.lists(st.tuples(st.integers(0, len(_UNARY) - 1), st.sampled_from(_REDUCE),
                                    st.sampled_from(["sub", "div", "mul"]), st.booleans()),
                          min_size=1, max_size=4))
    shape = draw(st.sampled_from([(3, 9), (2, 2, 17), (4, 130), (1, 8)]))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    seed = draw(st.integers(0, 2 ** 16))
    return steps, shape, dtype, seed


def build(steps):
    def fn(x):
        v = x
        for u, red, comb, keep in steps:
            v = _UNARY[u](v)
            r = getattr(v, red)(axis=-1, keepdims=keep)
            if not keep:
                r = r.reshape(r.shape + (1,))
            if comb == "sub":
                v = v - r
            elif comb == "mul":
                v = v * r
            else:
                v = v / (np.abs(r) + 1.0)
        return v
    return fn


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=programs())
def test_random_rowwise_programs(case):
    steps, shape, dtype, seed = case
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    x.reshape(-1)[seed % x.size] = [np.nan, np.inf, -0.0, 0.0][seed % 4]
    fn = build(steps)
    with np.errstate(all="ignore"):
        prog = optimize(trace(fn, (x,)))
        want = run_program(prog, (x,))
        got = build_runner(prog, get_backend("numba"))((x,))
    for g, w in zip(got, want, strict=True):
        same_bits(g, w)
    regions = [u for u in units(prog) if u.group is not None]
    assert any(is_rowwise(prog, u.members) for u in regions)


def exp_out(x):   # exp of the input itself, written into an output
    e = np.exp(x)
    return e, e / e.sum(axis=-1, keepdims=True)


def row_power(x, r):   # a per-row exponent: not one strided run over a block of rows
    return np.power(np.abs(x) + 1, r) / (x * x).sum(axis=-1, keepdims=True)


def _region(prog):
    (unit,) = [u for u in units(prog) if u.group is not None]
    return unit


def _kernel(fn, args):
    prog = optimize(trace(fn, args))
    spec, ins, _outs = row_spec(prog, _region(prog))
    return get_backend("numba").compile_rowwise(spec), prog, ins


@pytest.mark.parametrize("path", ["serial", "blocks", "prange", "python"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "layernorm", "exp_out", "row_power"])
def test_every_way_of_driving_the_blocks_gives_the_interpreters_bits(monkeypatch, name, path):
    """The compiled block driver (NumPy's own loops between the stages) in the caller, block by
    block on the worker threads, as ``prange`` tasks; and the Python block loop it replaces."""
    from noodle.backends import numba_rowwise

    # 10 blocks, a ragged last; values of their own per case, so that no pooled output buffer
    # already holds this case's answer
    seed = zlib.crc32(f"{name} {path}".encode())
    x = np.random.default_rng(seed).standard_normal((301, 1000)).astype(np.float32)
    x[3, 7], x[5, :] = np.nan, -np.inf
    fn = {"row_power": row_power, "exp_out": exp_out}.get(name) or FNS[name]
    args = (x, np.linspace(0.5, 2, 301, dtype=np.float32)[:, None]) if name == "row_power" else args_for(name, x)
    kernel, prog, ins = _kernel(fn, args)
    # the driver runs wherever every ufunc operand is one strided run; a per-row exponent is not
    assert (kernel._run is None) == (name == "row_power")
    if path == "serial":
        monkeypatch.setattr(numba_rowwise, "cpu_threads", lambda: 1)
    elif path == "blocks":   # what runs while another thread holds the parallel lock
        monkeypatch.setattr(numba_rowwise, "PRANGE_MIN_BLOCKS", 10**9)
    elif path == "prange":
        monkeypatch.setattr(numba_rowwise, "PRANGE_MIN_BLOCKS", 2)
    elif path == "python":
        monkeypatch.setattr(kernel, "_run", None)   # the backend hands out this same kernel
    monkeypatch.setattr(numba_rowwise, "PARALLEL_MIN", 0 if path != "serial" else 10**12)
    with np.errstate(all="ignore"):
        want = run_program(prog, args)
        runner = build_runner(prog, get_backend("numba"))
        # other values first: the output pool hands their buffers back, so a row the path leaves
        # unwritten shows, instead of a previous parameter's equal answer
        runner(tuple(np.full_like(a, 0.25) for a in args))
        got = runner(args)
    assert get_backend("numba").compile_rowwise(row_spec(prog, _region(prog))[0]) is kernel
    for g, w in zip(got, want, strict=True):
        same_bits(g, w)


def test_a_cheap_value_a_later_pass_reads_is_computed_again_not_kept():
    """layernorm's ``x - mean`` is read by the last pass: computed again there (same op, same
    operands: the same bits, which the tests above check); ``d * d`` is only summed, in the lanes
    (tests/jit/test_row_lane_sums.py), so the output is the one row the kernel writes."""
    x = np.ones((4, 64), np.float32)
    prog = optimize(trace(layernorm, args_for("layernorm", x)))
    spec, _, _ = row_spec(prog, _region(prog))
    plan = RowPlan(spec)
    assert plan.recompute and not (plan.recompute & set(plan.home))
    assert not plan.t_dtypes and sorted(kind for kind, _ in plan.home.values()) == ["o"]


def test_a_value_kept_in_an_output_is_not_overwritten_before_it_is_reduced():
    """softmax's ``e`` lives in the output buffer (RowPlan._in_output) only when every sum of it
    runs before the output is written: in ``late_sum`` the output is written in the pass that
    computes ``e`` and the sums come after, so ``e`` must keep its own scratch row."""
    def late_sum(x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e * 2.0, e.sum(axis=-1, keepdims=True), (e * e).sum(axis=-1, keepdims=True)

    def shared(x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    for dtype in ("float32", "float64"):
        x = np.random.default_rng(5).standard_normal((40, 300)).astype(dtype)
        check(late_sum, (x,))
        prog = check(shared, (x,))
        (unit,) = [u for u in units(prog) if u.group is not None]
        spec, _, _ = row_spec(prog, unit)
        plan = RowPlan(spec)
        (e,) = [plan.base + i for i, ins in enumerate(spec.body) if ins.op == "exp"]
        assert plan.home[e][0] == "o"   # e is kept in the output: no scratch row of its own


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", [1, 4, 5, 11])   # rows left over only; one group; a group and one; two and three
def test_rows_summed_in_groups_and_the_rows_left_over_give_the_interpreters_bits(rows, dtype):
    """A stage with a row sum runs groups of ``ROWS`` rows (their sums at once, row values kept
    across passes per row) and then the rows left over one by one: every row of every group
    position, a NaN and an infinity in different group positions, gives the interpreter's bits."""
    rng = np.random.default_rng(rows)
    x = (rng.standard_normal((rows, 333)) * 10.0 ** rng.integers(-3, 4, (rows, 1))).astype(dtype)
    x[rows // 2, 17] = np.nan
    x[rows - 1, 3] = np.inf
    for name in ("layernorm", "softmax", "min_scaled"):   # two sums; max then sum; min/max kept across passes
        check(FNS[name], args_for(name, x))


def test_a_value_only_a_numpy_ufunc_reads_is_written_where_the_ufunc_writes():
    """float64 softmax: ``x - max`` is read only by NumPy's ``exp`` loop, whose result ``e`` is
    kept in the output, so ``x - max`` is written there too and ``exp`` runs in place: no scratch
    row at all, and the interpreter's bits (NumPy's loops allow an exact overlap)."""
    x = np.random.default_rng(11).standard_normal((70, 300))
    x[5, 9], x[6, :] = np.nan, -np.inf
    prog = check(softmax, (x,))
    plan = RowPlan(row_spec(prog, _region(prog))[0])
    (sub,) = [plan.base + i for i, ins in enumerate(plan.spec.body) if ins.op == "subtract"]
    assert plan.ufunc[sub + 1] and plan.home[sub] == plan.home[sub + 1] == ("o", 0)
    assert not plan.t_dtypes
