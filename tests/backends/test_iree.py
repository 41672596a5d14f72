"""The IREE/MLIR backend against NumPy: bit-exact where the issue says so, 2 ulp on exp/log.

Compiles cost ~0.5 s each: every kernel is built once per module (fixtures) from a few specs
that combine many ops, and each spec outputs every intermediate value so one call checks them all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("iree.compiler")
pytest.importorskip("iree.runtime")

from backend_specs import chain, matmul_bias_relu  # noqa: E402

from noodle import metrics  # noqa: E402
from noodle.backends import iree_compile  # noqa: E402
from noodle.backends.base import table_ops  # noqa: E402
from noodle.backends.iree_mlir import IreeBackend  # noqa: E402
from noodle.backends.reference import evaluate, evaluate_matmul  # noqa: E402
from noodle.backends.registry import get_backend  # noqa: E402
from noodle.backends.spec import Instr, KernelSpec, MatmulSpec, Reduce  # noqa: E402
from noodle.errors import CompileError, DTypeError, ShapeError  # noqa: E402

N = 4099   # not a multiple of any vector width: the tail loop runs too


@pytest.fixture(scope="module")
def iree_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("iree-kernels")


@pytest.fixture(scope="module")
def backend(iree_dir: Path) -> IreeBackend:
    return IreeBackend(cache_dir=iree_dir)


def fallbacks() -> float:
    """Calls recomputed exactly because flush-to-zero may have changed a result (all kinds)."""
    metric = metrics.registry.get("noodle_iree_subnormal_fallbacks_total")
    return metric.total() if metric is not None else 0.0


def same_bits(got: np.ndarray, want: np.ndarray) -> bool:
    """Equal values and dtypes, NaN where NaN, the same sign of zero."""
    got, want = np.asarray(got), np.asarray(want)
    if got.dtype != want.dtype or got.shape != want.shape:
        return False
    if got.dtype.kind != "f":
        return bool(np.array_equal(got, want))
    nan = np.isnan(want)
    return bool(np.array_equal(np.isnan(got), nan) and np.array_equal(got[~nan], want[~nan])
                and np.array_equal(np.signbit(got[~nan]), np.signbit(want[~nan])))


def max_ulp(got: np.ndarray, want: np.ndarray) -> float:
    finite = np.isfinite(want)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)])
    g, w = got[finite].astype(np.float64), want[finite]
    return float(np.max(np.abs(g - w) / np.spacing(np.abs(w).astype(want.dtype)).astype(np.float64), initial=0))


def from_threads_at_once(call, n: int) -> list:
    """``[call(0), ..., call(n - 1)]``, each from its own thread, all released together."""
    import threading

    got: list = [None] * n
    start = threading.Barrier(n)

    def run(k: int) -> None:
        start.wait()
        got[k] = call(k)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got


def float_values(dt: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random normal-range floats with NaN, +-inf, +-0.0, huge and tiny normal values mixed in."""
    rng = np.random.default_rng(seed)
    finfo = np.finfo(dt)
    # |x| <= 80: exp(x) stays normal in float32 too (NumPy gives subnormals below -87.3)
    a = np.clip(rng.standard_normal(N) * 10 ** rng.uniform(-3, 3, N), -80, 80).astype(dt)
    b = np.clip(rng.standard_normal(N) * 10 ** rng.uniform(-3, 3, N), -80, 80).astype(dt)
    # the smallest special stays 2**40 above the normal range: no product, quotient or cast of a random
    # value underflows, so these run on IREE's own code (test_subnormal_* cover the range below)
    small = float(np.finfo(np.float32).tiny) * 2.0**40       # float32 too (the float64 spec casts to it)
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, finfo.max, -finfo.max, small, 1.0, -1.0],
                       dt)
    a[:10] = special
    b[10:20] = np.where(np.abs(special) == finfo.max, np.sign(special) * 2.0**60, special)   # a / max underflows
    a[20:30], b[20:30] = special, special[::-1]
    return a, b


def float_spec(dt: str) -> KernelSpec:
    """Every float op the backend translates, each value an output (values 0,1: a, b; 2: 0.5)."""
    other = "float32" if dt == "float64" else "float64"
    ops = [
        Instr("add", (0, 1), dt), Instr("subtract", (0, 1), dt), Instr("multiply", (0, 1), dt),
        Instr("divide", (0, 1), dt), Instr("maximum", (0, 1), dt), Instr("minimum", (0, 1), dt),
        Instr("negative", (0,), dt), Instr("abs", (0,), dt), Instr("sqrt", (0,), dt),
        Instr("less", (0, 1), "bool"), Instr("less_equal", (0, 1), "bool"), Instr("greater", (0, 1), "bool"),
        Instr("greater_equal", (0, 1), "bool"), Instr("equal", (0, 1), "bool"), Instr("not_equal", (0, 1), "bool"),
        Instr("where", (12,), dt),          # placeholder, replaced below
        Instr("astype", (0,), other, (("dtype", other),)),
        Instr("astype", (0,), "bool", (("dtype", "bool"),)),
        Instr("exp", (0,), dt), Instr("log", (0,), dt),
    ]
    base = 3
    ops[15] = Instr("where", (base + 9, 0, 1), dt)            # where(a < b, a, b)
    # the chain a*b + c*d - 0.5*exp(-e) with c=b, d=a, e=b: FMA contraction would show here
    n = base + len(ops)
    ops += [Instr("multiply", (1, 0), dt), Instr("add", (base + 2, n), dt), Instr("negative", (1,), dt),
            Instr("exp", (n + 2,), dt), Instr("multiply", (2, n + 3), dt), Instr("subtract", (n + 1, n + 4), dt)]
    outputs = tuple(range(base, base + len(ops)))
    return KernelSpec(((dt, (N,)), (dt, (N,))), ((dt, 0.5),), tuple(ops), outputs, (N,))


TRANSCENDENTAL = {"exp", "log"}


@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_float_ops_bit_exact_and_exp_log_within_2_ulp(backend: IreeBackend, dt: str) -> None:
    spec = float_spec(dt)
    a, b = float_values(dt, 1)
    before = fallbacks()
    got = backend.compile_kernel(spec)(a, b)
    assert fallbacks() == before, "normal-range values were recomputed: the subnormal guard misfires"
    with np.errstate(all="ignore"):
        want = evaluate(spec, a, b)
    chain_tail = {len(spec.body) - k for k in (1, 3, 2)}   # values that went through exp
    for k, (ins, g, w) in enumerate(zip(spec.body, got, want, strict=True)):
        if ins.op in TRANSCENDENTAL or k in chain_tail:
            continue
        assert same_bits(g, w), f"{ins.op} ({dt}) differs from NumPy at {np.flatnonzero(g != w)[:5]}"
    for ins, g, w in zip(spec.body, got, want, strict=True):
        if ins.op in TRANSCENDENTAL:
            assert max_ulp(g, w) <= 2, f"{ins.op} ({dt})"


def underflow_spec(dt: str) -> KernelSpec:
    """Each float op that can underflow on its own pair of inputs, so one call can make exactly
    one of them underflow; the last input feeds the ops that only read (a subnormal there is
    read as zero under denormals-are-zero: compares, max, sqrt...)."""
    f64 = "float64"
    ins = [(dt, (N,))] * 9 + [(f64, (N,)), (dt, (N,))]
    z = 11                                    # the constant 0.0
    ops = (
        Instr("multiply", (0, 1), dt), Instr("divide", (2, 3), dt), Instr("add", (4, 5), dt),
        Instr("subtract", (6, 7), dt), Instr("exp", (8,), dt),
        Instr("astype", (9,), "float32", (("dtype", "float32"),)),
        Instr("greater", (10, z), "bool"), Instr("equal", (10, z), "bool"), Instr("maximum", (10, z), dt),
        Instr("negative", (10,), dt), Instr("abs", (10,), dt), Instr("sqrt", (10,), dt),
        Instr("where", (18, 10, z), dt), Instr("astype", (10,), f64, (("dtype", f64),)),
    )
    return KernelSpec(tuple(ins), ((dt, 0.0),), ops, tuple(range(12, 12 + len(ops))), (N,))


def normal_underflow_inputs(dt: str) -> list[np.ndarray]:
    """Values where no op underflows, with the exact zeros the guard must not mistake for
    flushed ones (x*0, x/inf, x + -x, x - x, exp(-1000))."""
    rng = np.random.default_rng(9)
    xs = [(rng.standard_normal(N) + 2.0).astype(dt) for _ in range(9)] + [rng.standard_normal(N),
                                                                          rng.standard_normal(N).astype(dt)]
    xs[0][:5] = 0.0
    xs[3][:5] = np.inf
    xs[5][:5] = -xs[4][:5]
    xs[7][:5] = xs[6][:5]
    xs[8][:5] = -1000.0
    xs[9][:5] = 0.0
    xs[10][:5] = [0.0, -0.0, np.finfo(dt).tiny, np.inf, np.nan]
    return xs


def check_underflow_call(kernel, spec: KernelSpec, xs: list[np.ndarray], expect_fallback: bool) -> None:
    before = fallbacks()
    got = kernel(*xs)
    with np.errstate(all="ignore"):
        want = evaluate(spec, *xs)
    exp_out = 4                               # exp is 2 ulp off NumPy's on IREE's own path
    for k, (ins, g, w) in enumerate(zip(spec.body, got, want, strict=True)):
        if k == exp_out and not expect_fallback:
            assert max_ulp(g, w) <= 2
        else:
            assert same_bits(g, w), f"{ins.op} differs from NumPy at {np.flatnonzero(g != w)[:5]}"
    assert fallbacks() == before + (1 if expect_fallback else 0)


@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_subnormal_results_and_inputs_are_exact_through_the_fallback(backend: IreeBackend, dt: str) -> None:
    """IREE's CPU runtime flushes subnormals to zero: each way one can arise is caught in the
    dispatch and the call recomputed, bit for bit NumPy's, and counted; normal calls are not."""
    spec = underflow_spec(dt)
    kernel = backend.compile_kernel(spec)
    check_underflow_call(kernel, spec, normal_underflow_inputs(dt), expect_fallback=False)
    tiny = np.finfo(dt).tiny
    lowest_exp = -100.0 if dt == "float32" else -740.0      # exp(x) subnormal in NumPy
    cases = {
        0: {0: np.sqrt(tiny) / 4, 1: -np.sqrt(tiny) / 8},       # a product below the normal range
        2: {2: tiny * 2, 3: 16.0},                              # a quotient
        4: {4: tiny * 1.5, 5: -tiny},                           # a sum that cancels into it
        6: {6: tiny * 1.25, 7: tiny},                           # a difference
        8: {8: lowest_exp},                                     # exp
        10: {10: tiny / 8},                                     # a subnormal input read by compares
    }
    if dt == "float32":
        cases[9] = {9: 1e-40}                                   # float64 -> float32 subnormal
    for _, changes in cases.items():
        xs = normal_underflow_inputs(dt)
        for i, v in changes.items():
            xs[i][7:9] = np.asarray(v).astype(xs[i].dtype)
        check_underflow_call(kernel, spec, xs, expect_fallback=True)
    xs = normal_underflow_inputs(dt)
    xs[10][7] = -tiny / 1024                                    # a negative subnormal: -0.0 must not appear
    check_underflow_call(kernel, spec, xs, expect_fallback=True)


def test_subnormals_in_reductions_and_matmuls_are_exact(backend: IreeBackend) -> None:
    rng = np.random.default_rng(10)
    shape = (37, 61)
    for dt in ("float32", "float64"):
        tiny = np.finfo(dt).tiny
        x = rng.standard_normal(shape).astype(dt)
        y = np.full(shape, np.sqrt(tiny) / 3, dt)
        # float sum (defined order over the values kernel) of products that underflow
        spec = KernelSpec(((dt, shape), (dt, shape)), (), (Instr("multiply", (0, 1), dt),), (), shape,
                          Reduce("sum", 2, None, False, dt, ()))
        before = fallbacks()
        (got,) = backend.compile_kernel(spec)(y, y)
        assert same_bits(got, evaluate(spec, y, y)[0]) and got != 0
        assert fallbacks() == before + 1
        # max in the module over a subnormal input (read as zero, it would lose to -tiny)
        spec = KernelSpec(((dt, shape),), (), (Instr("abs", (0,), dt),), (1,), shape,
                          Reduce("max", 0, None, False, dt, ()))
        z = -np.abs(x)
        z[3, 4] = tiny / 4
        got = backend.compile_kernel(spec)(z)
        assert all(same_bits(g, w) for g, w in zip(got, evaluate(spec, z), strict=True))
        assert got[1] == tiny / 4 and fallbacks() == before + 2
        # matmul: normal operands stay on IREE, tiny products and subnormal operands fall back
        mspec = MatmulSpec((dt, (9, 7)), (dt, (7, 5)), dt, (9, 5))
        kernel = backend.compile_matmul(mspec)
        a, b = rng.standard_normal((9, 7)).astype(dt), rng.standard_normal((7, 5)).astype(dt)
        kernel(a, b)
        assert fallbacks() == before + 2
        for a2, b2 in ((a * np.sqrt(tiny), b * np.sqrt(tiny)), (np.where(a > 1, tiny / 2, a), b)):
            a2, b2 = a2.astype(dt), b2.astype(dt)
            (got,) = kernel(a2, b2)
            assert same_bits(got, evaluate_matmul(mspec, a2, b2)[0])
        assert fallbacks() == before + 4


def test_matmul_epilogue_underflow_falls_back(backend: IreeBackend) -> None:
    """The product is normal; the epilogue's multiply takes it below the normal range."""
    dt = "float32"
    ep = KernelSpec(((dt, (6, 4)), (dt, (4,))), (), (Instr("multiply", (0, 1), dt),), (2,), (6, 4))
    spec = MatmulSpec((dt, (6, 3)), (dt, (3, 4)), dt, (6, 4), ep)
    kernel = backend.compile_matmul(spec)
    a, b = np.ones((6, 3), dt), np.full((3, 4), 0.5, dt)
    before = fallbacks()
    for scale, count in ((np.full(4, 2.0, dt), 0), (np.full(4, np.finfo(dt).tiny / 4, dt), 1)):
        (got,) = kernel(a, b, scale)
        assert same_bits(got, evaluate_matmul(spec, a, b, scale)[0])
        assert fallbacks() == before + count


def test_the_callers_thread_keeps_gradual_underflow(backend: IreeBackend) -> None:
    """IREE sets flush-to-zero in its own dispatch; NumPy on the calling thread is unaffected."""
    backend.compile_kernel(chain(64, "float32"))(*[np.ones(64, np.float32)] * 5)
    assert np.float32(1e-38) * np.float32(0.01) != 0


def test_a_subnormal_constant_is_refused(backend: IreeBackend) -> None:
    spec = KernelSpec((("float64", (8,)),), (("float64", 5e-324),), (Instr("add", (0, 1), "float64"),), (2,), (8,))
    with pytest.raises(CompileError, match="subnormal"):
        backend.compile_kernel(spec)


def int_spec() -> KernelSpec:
    """int32 (0), uint8 (1), bool (2), int8 (3): wrapping arithmetic, promotion, casts, where."""
    i32, u8, b, i8 = "int32", "uint8", "bool", "int8"
    ops = (
        Instr("add", (0, 0), i32), Instr("multiply", (0, 0), i32), Instr("subtract", (1, 1), u8),
        Instr("negative", (0,), i32), Instr("abs", (0,), i32), Instr("maximum", (1, 3), "int16"),
        Instr("minimum", (0, 1), i32), Instr("less", (1, 3), b), Instr("greater_equal", (0, 1), b),
        Instr("equal", (2, 2), b), Instr("add", (2, 2), b), Instr("multiply", (2, 2), b),
        Instr("maximum", (2, 2), b), Instr("divide", (0, 1), "float64"),
        Instr("astype", (0,), "float32", (("dtype", "float32"),)), Instr("astype", (0,), u8, (("dtype", u8),)),
        Instr("astype", (1,), "int64", (("dtype", "int64"),)), Instr("astype", (3,), "uint32", (("dtype", "uint32"),)),
        Instr("astype", (2,), i32, (("dtype", i32),)), Instr("where", (2, 0, 3), i32),
        Instr("negative", (1,), u8), Instr("add", (1, 4), u8),
    )
    return KernelSpec(((i32, (N,)), (u8, (N,)), (b, (N,)), (i8, (N,))), ((u8, 200),), ops,
                      tuple(range(5, 5 + len(ops))), (N,))


def test_int_and_bool_ops_exact(backend: IreeBackend) -> None:
    spec = int_spec()
    rng = np.random.default_rng(2)
    x = rng.integers(-2**31, 2**31, N, dtype=np.int64).astype(np.int32)
    x[:3] = [-2**31, 2**31 - 1, 0]
    u = rng.integers(0, 256, N).astype(np.uint8)
    u[:2] = [0, 255]
    bo = rng.random(N) < 0.5
    s = rng.integers(-128, 128, N).astype(np.int8)
    got = backend.compile_kernel(spec)(x, u, bo, s)
    with np.errstate(all="ignore"):
        want = evaluate(spec, x, u, bo, s)
    for ins, g, w in zip(spec.body, got, want, strict=True):
        assert same_bits(g, w), f"{ins.op} -> {ins.dtype} differs from NumPy"


def test_float_to_int_casts_truncate_like_numpy(backend: IreeBackend) -> None:
    ops = tuple(Instr("astype", (0,), d, (("dtype", d),)) for d in ("int64", "int32", "int8", "uint8", "uint64"))
    spec = KernelSpec((("float64", (N,)),), (), ops, (1, 2, 3, 4, 5), (N,))
    x = np.random.default_rng(3).uniform(-100, 100, N)
    x[:4] = [-0.9, 0.9, -0.0, 99.99]
    x[4:] = np.abs(x[4:])                  # uint targets: in range (NumPy's out-of-range casts are C UB)
    got = backend.compile_kernel(spec)(x)
    want = evaluate(spec, x)
    for k in (0, 1, 2):
        assert same_bits(got[k], want[k])
    for k in (3, 4):
        assert same_bits(got[k][4:], want[k][4:])


@pytest.mark.parametrize("case", ["int_sum_axis0_keepdims", "float_max_all", "float_min_axis1",
                                  "float_sum_all", "float32_mean_axis0", "bool_sum_all"])
def test_reductions_match_the_interpreter(backend: IreeBackend, case: str) -> None:
    rng = np.random.default_rng(4)
    shape = (37, 61)
    if case == "int_sum_axis0_keepdims":
        spec = KernelSpec((("int32", shape), ("int32", (61,))), (), (Instr("multiply", (0, 1), "int32"),), (2,),
                          shape, Reduce("sum", 2, (0,), True, "int64", (1, 61)))
        args = [rng.integers(-2**31, 2**31, shape, dtype=np.int64).astype(np.int32),
                rng.integers(-5, 5, 61).astype(np.int32)]
    elif case == "bool_sum_all":
        spec = KernelSpec((("float64", shape),), (("float64", 0.0),), (Instr("less", (0, 1), "bool"),), (),
                          shape, Reduce("sum", 2, None, False, "int64", ()))
        args = [rng.standard_normal(shape)]
    else:
        dt = "float32" if case.startswith("float32") else "float64"
        op = case.split("_")[1]
        axes = None if case.endswith("all") else ((0,) if case.endswith("axis0") else (1,))
        kept = () if axes is None else tuple(d for i, d in enumerate(shape) if i not in axes)
        x = rng.standard_normal(shape).astype(dt)
        x[3, :] = -0.0
        x[5, 7] = np.nan
        x[6, :] = 0.0
        x[6, 2] = -0.0
        spec = KernelSpec(((dt, shape),), (), (Instr("abs", (0,), dt), Instr("negative", (1,), dt)), (2,), shape,
                          Reduce(op, 2, axes, False, "float64" if op == "mean" and dt == "float64" else dt, kept))
        args = [x]
    got = backend.compile_kernel(spec)(*args)
    want = evaluate(spec, *args)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert same_bits(g, w), case


def test_matmul_with_epilogue(backend: IreeBackend) -> None:
    rng = np.random.default_rng(5)
    spec = matmul_bias_relu(33, 17, 29)
    a, b, bias = rng.standard_normal((33, 17)), rng.standard_normal((17, 29)), rng.standard_normal(29)
    before = fallbacks()
    kernel = backend.compile_matmul(spec)
    (got,) = kernel(a, b, bias)
    assert fallbacks() == before
    kept = got.copy()
    kernel(a[::-1].copy(), b[:, ::-1].copy(), bias)          # a second call of the same kernel
    assert same_bits(got, kept), "the next call wrote into a returned array"
    (want,) = evaluate_matmul(spec, a, b, bias)
    # a dot product's rounding depends on its summation order (as with any two BLAS builds)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * float(np.abs(a).max() * np.abs(b).max() * 17))
    assert (got >= 0).all()


def test_integer_matmul_and_vector_operand_exact(backend: IreeBackend) -> None:
    rng = np.random.default_rng(6)
    spec = MatmulSpec(("int32", (9,)), ("int64", (9, 5)), "int64", (5,))
    a = rng.integers(-2**31, 2**31, 9, dtype=np.int64).astype(np.int32)
    b = rng.integers(-2**40, 2**40, (9, 5))
    (got,) = backend.compile_matmul(spec)(a, b)
    with np.errstate(all="ignore"):
        (want,) = evaluate_matmul(spec, a, b)
    assert same_bits(got, want)     # int64 products wrap as NumPy's do


def test_broadcast_inputs_and_scalars(backend: IreeBackend) -> None:
    shape = (5, 7)
    spec = KernelSpec((("float64", shape), ("float64", (1, 7)), ("float64", (5, 1)), ("float64", ())), (),
                      (Instr("multiply", (0, 1), "float64"), Instr("add", (4, 2), "float64"),
                       Instr("subtract", (5, 3), "float64")), (6,), shape)
    rng = np.random.default_rng(7)
    args = [rng.standard_normal(shape), rng.standard_normal((1, 7)), rng.standard_normal((5, 1)), 2.5]
    (got,) = backend.compile_kernel(spec)(*args)
    (want,) = evaluate(spec, *args)
    assert same_bits(got, want)


def test_op_table_covers_every_op() -> None:
    backend = get_backend("iree")
    assert backend.available() == (True, "")
    missing = table_ops() - set(backend.op_table)
    assert not missing, f"the IREE backend has no entry for {sorted(missing)}"


@pytest.mark.parametrize("op", ["power", "sin", "tanh"])
def test_unsupported_ops_refuse_to_compile(backend: IreeBackend, op: str) -> None:
    ok, why = backend.supports(op)
    assert not ok and why
    args = (0, 0) if op == "power" else (0,)
    spec = KernelSpec((("float32", (8,)),), (), (Instr(op, args, "float32"),), (1,), (8,))
    with pytest.raises(CompileError, match=op):
        backend.compile_kernel(spec)


def test_bad_inputs_raise_what_the_numba_backend_raises(backend: IreeBackend) -> None:
    spec = chain(64, "float32")
    kernel = backend.compile_kernel(spec)
    x = np.ones(64, np.float32)
    with pytest.raises(DTypeError, match="float32"):
        kernel(x, x, x, x, x.astype(np.float64))
    with pytest.raises(ShapeError, match=r"\(64,\)"):
        kernel(x, x, x, x, np.ones(65, np.float32))
    with pytest.raises(ShapeError, match="5 inputs"):
        kernel(x, x)
    (out,) = kernel(x, x, x, x, x[::-1].copy())      # and a good call still works
    assert same_bits(out, evaluate(spec, x, x, x, x, x)[0])


def test_cached_module_loads_without_the_compiler(iree_dir: Path) -> None:
    spec = chain(128, "float64")
    first = IreeBackend(cache_dir=iree_dir).compile_kernel(spec)
    compiled = iree_compile.STATS["compiled"]
    second = IreeBackend(cache_dir=iree_dir).compile_kernel(spec)      # a fresh backend: no memory cache
    assert iree_compile.STATS["compiled"] == compiled
    assert second.from_cache and second is not first
    x = np.linspace(-3, 3, 128)
    assert same_bits(second(x, x, x, x, x)[0], first(x, x, x, x, x)[0])
    assert list(iree_dir.glob("*.mlir")), "the MLIR text sits next to its module"


def test_a_new_process_loads_the_kernel_from_disk(iree_dir: Path) -> None:
    spec = chain(256, "float32")
    here = IreeBackend(cache_dir=iree_dir).compile_kernel(spec)
    code = (
        "import json, sys, numpy as np\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from backend_specs import chain\n"
        "from noodle.backends import iree_compile\n"
        "from noodle.backends.iree_mlir import IreeBackend\n"
        "k = IreeBackend(cache_dir=sys.argv[1]).compile_kernel(chain(256, 'float32'))\n"
        "x = np.linspace(-2, 2, 256, dtype=np.float32)\n"
        "print(json.dumps({'stats': iree_compile.STATS, 'cache': k.from_cache,\n"
        "                  'out': k(x, x, x, x, x)[0].tolist()}))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    res = subprocess.run([sys.executable, "-c", code, str(iree_dir), str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=120, env=env, check=True)
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["stats"] == {"compiled": 0, "disk": 1} and got["cache"]
    x = np.linspace(-2, 2, 256, dtype=np.float32)
    assert same_bits(np.asarray(got["out"], np.float32), here(x, x, x, x, x)[0])   # the same machine code


def test_cuda_mlir_compiles_here() -> None:
    """The same MLIR through the CUDA target (sm_80 PTX): no GPU needed to compile."""
    text = IreeBackend().mlir(chain(1000, "float32"))
    assert iree_compile.compile_text(text, "cuda")[:8]


@pytest.mark.gpu
def test_cuda_target_runs_the_chain() -> None:
    backend = IreeBackend(target="cuda")
    ok, why = backend.available()
    if not ok:
        pytest.skip(why)
    spec = chain(1 << 16, "float64")
    x = np.random.default_rng(8).standard_normal(1 << 16)
    (got,) = backend.compile_kernel(spec)(x, x, x, x, x)
    (want,) = evaluate(spec, x, x, x, x, x)
    assert max_ulp(got, want) <= 2


def test_seed_aliases_compile_through_iree_and_fall_back_to_the_interpreter(iree_dir: Path) -> None:
    from noodle.jit import JITCompiler, jit_compile_hotpath
    from noodle.trace import trace

    x = np.linspace(-1, 1, 300)
    program = trace(lambda a, b: a * b + 1.0, [x, x])
    kernel = jit_compile_hotpath(program, target="cpu")
    assert kernel.backend == "iree"
    assert same_bits(kernel(x, x), x * x + 1.0)
    # sin has no exact IREE translation: compilation fails, the interpreter answers
    slow = jit_compile_hotpath(trace(lambda a: np.sin(a) * 2.0, [x]), target="cpu")
    assert slow.backend == "interpret" and "sin" in (slow.fallback_reason or "")
    assert same_bits(slow(x), np.sin(x) * 2.0)

    f = JITCompiler(hot_threshold=1).compile(lambda a, b: a * b - b)
    for _ in range(3):
        out = f(x, x)
    assert same_bits(out, x * x - x)
    assert f.compile(x, x) == "iree"


def test_outputs_that_are_inputs_or_constants_are_the_callers_own(backend: IreeBackend) -> None:
    """IREE folds such results into copies; they come back right and are not reused by the next call."""
    dt = "float32"
    spec = KernelSpec(((dt, (50,)),), ((dt, 3.0),),
                      (Instr("negative", (1,), dt), Instr("multiply", (0, 0), dt)), (0, 2, 3), (50,))
    kernel = backend.compile_kernel(spec)
    x = np.linspace(-1, 1, 50, dtype=np.float32)
    got = kernel(x)
    kept = [g.copy() for g in got]
    kernel(x * 2)
    for g, k, w in zip(got, kept, evaluate(spec, x), strict=True):
        assert same_bits(g, w) and same_bits(g, k)


@pytest.mark.parametrize("case", ["x + 0", "x * 1", "x * 0", "x - x", "minimum(x, x)",
                                  "a @ b - a @ b (matmul epilogue)"])
def test_results_iree_folds_to_copies_or_fills_are_right(backend: IreeBackend, case: str) -> None:
    """Results that only IREE's own algebra shows to be copies or fills (``x + 0`` is ``x``,
    ``x - x`` is 0): written into a caller-owned array, such a call failed ("requires
    DISCARD_WRITE"); the kernel now returns them as the reference computes them, on every call,
    and the results stay the caller's own."""
    dt = "int64"
    rng = np.random.default_rng(16)
    if case.startswith("a @ b"):
        ep = KernelSpec(((dt, (3, 2)),), (), (Instr("subtract", (0, 0), dt),), (1,), (3, 2))
        spec = MatmulSpec((dt, (3, 4)), (dt, (4, 2)), dt, (3, 2), ep)
        a, b = rng.integers(-9, 9, (3, 4)), rng.integers(-9, 9, (4, 2))
        kernel = backend.compile_matmul(spec)
        for k in range(3):
            (got,) = kernel(a + k, b)
            assert same_bits(got, evaluate_matmul(spec, a + k, b)[0])
        return
    op, const = {"x + 0": ("add", 0), "x * 1": ("multiply", 1), "x * 0": ("multiply", 0),
                 "x - x": ("subtract", None), "minimum(x, x)": ("minimum", None)}[case]
    for n in (1, 37):
        consts = ((dt, const),) if const is not None else ()
        spec = KernelSpec(((dt, (n,)),), consts, (Instr(op, (0, 1 if const is not None else 0), dt),),
                          (len(consts) + 1,), (n,))
        kernel = backend.compile_kernel(spec)
        first = None
        for k in range(3):
            x = rng.integers(-2**40, 2**40, n)
            (got,) = kernel(x)
            assert same_bits(got, evaluate(spec, x)[0]), (case, n, k)
            if first is None:
                first, kept = got, got.copy()
        assert same_bits(first, kept)       # a later call did not write into an earlier result


def test_a_folded_kernel_called_from_threads_at_once_answers_each(backend: IreeBackend) -> None:
    """The first calls of a kernel whose result IREE folds, from 8 threads together: one switches
    it to the own-results variant while the others call; every call gets its own right answer."""

    dt = "int64"
    spec = KernelSpec(((dt, (300,)),), ((dt, 1),), (Instr("multiply", (0, 1), dt),), (2,), (300,))
    kernel = backend.compile_kernel(spec)
    xs = [np.arange(300, dtype=np.int64) * (k + 1) for k in range(8)]
    got = from_threads_at_once(lambda k: kernel(xs[k])[0], 8)
    for k in range(8):
        assert same_bits(got[k], xs[k]), k



@pytest.mark.parametrize("n", [2, 5, 100])
@pytest.mark.parametrize("case", ["a + (1 - a)", "1 * 1", "max of 1 - a + a"])
def test_a_reduction_over_values_iree_folds_is_exact(backend: IreeBackend, case: str, n: int) -> None:
    """IREE sums a tensor it folded to one value wrongly on the CPU (the sum of 100 ones came back
    13, of 2 ones 1: hypothesis found ``a + (1 - a)`` summed); the reduction must equal the
    reference's on every length."""
    dt = "int64"
    op = "max" if case.startswith("max") else "sum"
    body = {"a + (1 - a)": (Instr("subtract", (1, 0), dt), Instr("add", (0, 2), dt)),
            "1 * 1": (Instr("multiply", (1, 1), dt),),
            "max of 1 - a + a": (Instr("subtract", (1, 0), dt), Instr("add", (2, 0), dt))}[case]
    spec = KernelSpec(((dt, (n,)),), ((dt, 1),), body, (), (n,), Reduce(op, len(body) + 1, None, False, dt, ()))
    kernel = backend.compile_kernel(spec)
    for k in range(2):
        x = np.arange(n, dtype=np.int64) * (k + 3) - 7
        (got,) = kernel(x)
        (want,) = evaluate(spec, x)
        assert int(got) == int(want), (case, n, int(got), int(want))


def test_large_outputs_come_from_the_pool_and_a_held_result_is_never_reused(backend: IreeBackend) -> None:
    """Outputs past the pool's minimum are pooled buffers (fresh pages cost a third of a large
    call): a result the caller holds keeps its values through later calls, a dropped one is handed
    out again, and calls from threads at once each get their own answer."""

    from noodle.memory.pool import default_pool

    dt, n = "float32", 100_003    # 400 KB: pooled; not a multiple of 64 bytes
    spec = KernelSpec(((dt, (n,)), (dt, (n,))), ((dt, 0.5),),
                      (Instr("multiply", (0, 1), dt), Instr("abs", (1,), dt), Instr("sqrt", (4,), dt),
                       Instr("multiply", (2, 5), dt), Instr("subtract", (3, 6), dt)), (7,), (n,))
    kernel = backend.compile_kernel(spec)
    rng = np.random.default_rng(21)
    xs = [(rng.standard_normal(n).astype(dt), rng.standard_normal(n).astype(dt)) for _ in range(8)]
    held = [kernel(*x)[0] for x in xs[:3]]
    for (a, b), got in zip(xs, held):
        assert got.ctypes.data % 64 == 0
        assert same_bits(got, evaluate(spec, a, b)[0])
    assert len({g.ctypes.data for g in held}) == 3
    pool = default_pool()
    for _ in range(3):
        kernel(*xs[3])      # dropped at once: the next call may reuse its buffer
    hits = pool.hits
    for _ in range(3):
        (got,) = kernel(*xs[4])
        assert same_bits(got, evaluate(spec, *xs[4])[0])
        del got
    assert pool.hits > hits
    for (a, b), got in zip(xs, held):   # untouched by every call since
        assert same_bits(got, evaluate(spec, a, b)[0])
    got_t = from_threads_at_once(lambda k: kernel(*xs[k])[0], 8)
    for k in range(8):
        assert same_bits(got_t[k], evaluate(spec, *xs[k])[0]), k
