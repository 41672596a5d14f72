"""Row sums computed from their expression in the lanes (numba_lane_expr, numba_row_lanes).

The oracle is the interpreter (the defined-order sum of the stored values), byte for byte, and
plain NumPy within rounding; the cases cover each kind of leaf (an input row, a column vector, a
row value, a constant), each op, the tail of a row that is not a multiple of eight, rows longer
than one chunk, groups of four rows and the rows left over, NaN, infinities and signed zeros.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit

from noodle.backends.numba_lane_expr import LaneProgram, lane_expr_rows
from noodle.backends.numba_reduce import _lanes_rows
from noodle.backends.numba_rowwise import RowPlan
from noodle.backends.registry import get_backend
from noodle.exec.interpreter import run_program
from noodle.jit.lower import build_runner, row_spec
from noodle.passes import optimize, units
from noodle.trace import trace

from .test_rowwise import check, layernorm, same_bits


def rms_norm(x, g):
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + 1e-6) * g


def weighted_sq(x, g):   # a column vector inside the summed expression
    s = ((x * g - 0.5) * (x * g - 0.5)).sum(axis=-1, keepdims=True)
    return x / (s + 1.0)


def neg_div(x, g):   # negative and divide, and a row value (the max) as a leaf; g unused
    m = x.max(axis=-1, keepdims=True)
    s = (-(x - m) / 3.0 + x * x).sum(axis=-1, keepdims=True)   # terms >= 0: no cancellation
    return x - s


def centred_mean_abs(x, g):   # abs is not a lane op: the stored path, the same bits
    m = x.mean(axis=-1, keepdims=True)
    return x / (1.0 + np.abs(x - m).mean(axis=-1, keepdims=True))


CASES = {"rms_norm": rms_norm, "weighted_sq": weighted_sq, "neg_div": neg_div,
         "centred_mean_abs": centred_mean_abs}


def _plan(fn, args):
    prog = optimize(trace(fn, args))
    (unit,) = [u for u in units(prog) if u.group is not None]
    return RowPlan(row_spec(prog, unit)[0])


def _values(rows, length, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, length)) * 10.0 ** rng.integers(-3, 4, (rows, 1))).astype(dtype)
    g = rng.standard_normal(length).astype(dtype)
    return x, g


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("length", [1, 7, 4096, 8203])   # folded away, a tail only, one chunk, chunks and a tail
def test_lane_sums_give_the_interpreters_bits(length, dtype):
    rows = 5 if length > 4096 else 9   # groups of four and one row left over
    for fn in CASES.values():
        x, g = _values(rows, length, dtype, length)
        x[rows // 2, length // 2] = np.nan
        x[rows - 1, 0] = np.inf
        x[0, length - 1] = -0.0
        check(fn, (x, g), fused=length > 1)   # a row of one: the sums are folded away
    x, g = _values(rows, length, dtype, length + 1)
    check(layernorm, (x, g, g[::-1].copy()), fused=length > 1)


@pytest.mark.parametrize("name", ["layernorm", "rms_norm", "weighted_sq", "neg_div"])
def test_a_sum_nothing_else_reads_is_computed_in_the_lanes_and_never_stored(name):
    """The plan: the sum has a lane program, its operand is computed by nothing else, and the
    operand has no row of its own (the only rows are the outputs)."""
    x, g = _values(4, 64, "float32", 3)
    args = (x, g, g) if name == "layernorm" else (x, g)
    plan = _plan(layernorm if name == "layernorm" else CASES[name], args)
    assert len(plan.lane_sums) == 1
    (ls,) = plan.lane_sums.values()
    operand = plan.spec.body[ls.v - plan.base].args[0]
    assert operand in plan.lane_only and operand not in plan.home
    assert all(kind == "o" for kind, _ in plan.home.values())


def test_a_sum_whose_operand_is_read_elsewhere_or_not_arithmetic_keeps_its_row():
    x, g = _values(4, 64, "float32", 4)
    assert not _plan(centred_mean_abs, (x, g)).lane_sums   # abs: not a lane op

    def shared(x, g):   # x * g summed and also returned
        p = x * g
        return p, p / p.sum(axis=-1, keepdims=True)

    plan = _plan(shared, (x, g))
    assert not plan.lane_sums
    check(shared, (x, g))


def test_an_expression_longer_than_the_limit_keeps_the_stored_path():
    """MAX_STEPS bounds the generated intrinsic (four rows of vector code per step): a 31-step chain
    is summed from its stored row, with the same bits."""
    def deep(x, g):
        y = x
        for _ in range(15):
            y = y * x - x
        return x / y.sum(axis=-1, keepdims=True)

    x, g = _values(5, 40, "float64", 6)
    x = x / 10.0 ** np.floor(np.log10(np.abs(x).max(axis=-1, keepdims=True)))   # no overflow in 15 squarings
    assert not _plan(deep, (x, g)).lane_sums
    with np.errstate(all="ignore"):
        prog = optimize(trace(deep, (x, g)))
        (want,) = run_program(prog, (x, g))
        (got,) = build_runner(prog, get_backend("numba"))((x, g))
    same_bits(got, want)


def test_mixed_dtypes_keep_the_stored_path():
    """A float32 row summed through a float64 column vector: the program computes in one dtype,
    so this sum keeps its row; the answer is the interpreter's either way."""
    x, g = _values(5, 40, "float32", 5)
    g64 = g.astype(np.float64)
    assert not _plan(weighted_sq, (x, g64)).lane_sums
    check(weighted_sq, (x, g64))


# ------------------------------------------------------------------ random expressions
_OPS = ["add", "subtract", "multiply", "divide", "negative"]


@st.composite
def expressions(draw):
    """Postfix steps over the leaves x (the row), g (a column vector), m (the row's mean), c (0.75)."""
    n = draw(st.integers(1, 6))
    steps = [(draw(st.sampled_from(_OPS)), draw(st.integers(0, 10 ** 6)), draw(st.integers(0, 10 ** 6)))
             for _ in range(n)]
    length = draw(st.sampled_from([5, 16, 37, 130]))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    red = draw(st.sampled_from(["sum", "mean"]))
    return steps, length, dtype, red, draw(st.integers(0, 2 ** 16))


def _expression(steps, red):
    def fn(x, g):
        m = x.mean(axis=-1, keepdims=True)
        vals = [x, g, m, 0.75]
        for op, i, j in steps:
            a, b = vals[i % len(vals)], vals[j % len(vals)]
            if op == "negative":
                vals.append(-a)
            else:
                vals.append({"add": np.add, "subtract": np.subtract, "multiply": np.multiply,
                             "divide": np.divide}[op](a, b))
        s = getattr(vals[-1] * 1.0 + x * 0.0, red)(axis=-1, keepdims=True)
        return x * s
    return fn


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=expressions())
def test_random_summed_expressions_give_the_interpreters_bits(case):
    steps, length, dtype, red, seed = case
    x, g = _values(6, length, dtype, seed)
    x.reshape(-1)[seed % x.size] = [np.nan, np.inf, -0.0, 0.0][seed % 4]
    # the interpreter only: a random quotient of near-cancelling sums is not close to NumPy's
    # pairwise sums in any fixed tolerance
    with np.errstate(all="ignore"):
        prog = optimize(trace(_expression(steps, red), (x, g)))
        (want,) = run_program(prog, (x, g))
        (got,) = build_runner(prog, get_backend("numba"))((x, g))
    same_bits(got, want)


# ------------------------------------------------------------------ the intrinsic itself
def test_the_intrinsic_equals_the_lanes_of_the_stored_values():
    prog = LaneProgram("float64", 2, 1, (("multiply", ("p", 0), ("p", 1)), ("subtract", ("v", 0), ("s", 0))))
    lanes = lane_expr_rows(prog, 4)

    @njit
    def fused(x, g, s, n):
        return lanes((x, g), (0, n, 2 * n, 3 * n, 0, 0, 0, 0), (s[0], s[1], s[2], s[3]), n // 8)

    @njit
    def stored(y, n):
        return _lanes_rows(y, 0, n, n // 8)

    rng = np.random.default_rng(9)
    n = 96
    x, g, s = rng.standard_normal(4 * n), rng.standard_normal(n), rng.standard_normal(4)
    x[5], x[n + 3] = np.inf, -0.0
    y = np.concatenate([x[r * n:(r + 1) * n] * g - s[r] for r in range(4)])
    got, want = np.array(fused(x, g, s, n)), np.array(stored(y, n))
    assert got.view(np.uint64).tolist() == want.view(np.uint64).tolist()


@pytest.mark.parametrize("bad, match", [
    (dict(dtype="int32", n_ptr=1, n_scalar=0, steps=(("negative", ("p", 0)),)), "float32 or float64"),
    (dict(dtype="float32", n_ptr=1, n_scalar=0, steps=(("exp", ("p", 0)),)), "no op 'exp'"),
    (dict(dtype="float32", n_ptr=1, n_scalar=0, steps=(("add", ("p", 0), ("s", 0)),)), r"\('s', 0\)"),
    (dict(dtype="float32", n_ptr=1, n_scalar=0, steps=(("add", ("p", 0), ("v", 0)),)), r"\('v', 0\)"),
    (dict(dtype="float32", n_ptr=0, n_scalar=1, steps=(("negative", ("s", 0)),)), "at least one array"),
])
def test_a_program_that_cannot_be_computed_is_refused_by_name(bad, match):
    with pytest.raises(ValueError, match=match):
        LaneProgram(**bad)
