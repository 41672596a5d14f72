"""Strength reduction of ``power``: bit for bit what NumPy gives, on the IR and through nd.jit.

The oracle is NumPy itself (``np.power`` with the same operands, and the ``**`` operator for
the jitted functions). Floats are compared by their bytes, so NaN payloads, ``-0.0``,
infinities and subnormals must all come out the same.
"""

from __future__ import annotations

import numpy as np
import pytest

import noodle as nd
from noodle.errors import OpValueError
from noodle.exec.interpreter import run_program
from noodle.ir.graph import Builder
from noodle.ir.verify import verify
from noodle.passes import optimize, strength_reduce

INTS = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
FLOATS = ["float32", "float64"]


def values(dtype: str, n: int = 4000, seed: int = 0) -> np.ndarray:
    """Special values, random bit patterns (every class of float) and ordinary numbers."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.0, -1.0, 2.0, 0.5, 1e-310, -1e-310,
                            5e-324, 1e300, -1e300, 1e-45, -1e-45, 3.4e38, -3.4e38, 1e-20, 1e20, 3.0],
                           dtype=np.float64)
        with np.errstate(all="ignore"):
            special = special.astype(dt)
        uint = np.uint32 if dt == np.float32 else np.uint64
        bits = rng.integers(0, np.iinfo(uint).max, n, dtype=uint, endpoint=True).view(dt)
        with np.errstate(all="ignore"):
            normal = (rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n)).astype(dt)
        return np.concatenate([special, bits, normal])
    info = np.iinfo(dt)
    return np.concatenate([np.array([0, 1, 2, info.max, info.min, info.max - 1, info.min + 1], dtype=dt),
                           rng.integers(info.min, info.max, n, dtype=dt, endpoint=True),
                           rng.integers(0, 20, n).astype(dt)])


def assert_bits(got, want, where: str = "") -> None:
    got, want = np.ascontiguousarray(got), np.ascontiguousarray(want)
    assert got.dtype == want.dtype, f"{where}: dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"{where}: shape {got.shape} != {want.shape}"
    if not np.array_equal(got.reshape(-1).view(np.uint8), want.reshape(-1).view(np.uint8)):
        bad = np.flatnonzero(got.reshape(-1).view(f"u{got.itemsize}") != want.reshape(-1).view(f"u{got.itemsize}"))
        k = int(bad[0])
        raise AssertionError(f"{where}: {bad.size} elements differ, first at {k}: "
                             f"{got.reshape(-1)[k]!r} != {want.reshape(-1)[k]!r}")


def power_program(x_dtype: str, shape: tuple[int, ...], exponent: np.ndarray):
    b = Builder()
    x = b.input(0, shape, x_dtype)
    y = b.add("power", x, b.const(exponent))
    return b.finish([y])


def ops_of(program) -> list[str]:
    return [n.op for n in program.nodes]


# ---------------------------------------------------------------- the pass on the IR


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("c", [2.0, 0.5, -1.0, 1.0, 0.0, -0.0])
@pytest.mark.parametrize("c_shape", [(), (1,)])
def test_float_fast_exponents_are_rewritten_bit_for_bit(dtype, c, c_shape):
    x = values(dtype)
    exponent = np.full(c_shape, c, dtype=dtype)
    prog = power_program(dtype, x.shape, exponent)
    out = strength_reduce(prog)
    verify(out)
    assert "power" not in ops_of(out), f"x ** {c} ({dtype}) was not rewritten: {ops_of(out)}"
    with np.errstate(all="ignore"):
        want = np.power(x, exponent)
        (got,) = run_program(out, [x])
    assert_bits(got, want, f"{dtype} ** {c!r}")


@pytest.mark.parametrize("dtype", INTS)
@pytest.mark.parametrize("k", range(0, 9))
def test_integer_powers_become_multiplications_with_the_same_wraparound(dtype, k):
    x = values(dtype)
    exponent = np.array(k, dtype=dtype)
    out = strength_reduce(power_program(dtype, x.shape, exponent))
    verify(out)
    assert "power" not in ops_of(out)
    # square and multiply: at most 2 * log2(k) multiplications
    assert ops_of(out).count("multiply") <= 2 * max(k.bit_length() - 1, 0)
    (got,) = run_program(out, [x])
    assert_bits(got, np.power(x, exponent), f"{dtype} ** {k}")


def test_two_dimensional_base_with_a_one_by_one_exponent():
    x = values("float64")[:3000].reshape(60, 50)
    exponent = np.full((1, 1), 2.0)
    out = strength_reduce(power_program("float64", x.shape, exponent))
    assert "power" not in ops_of(out)
    with np.errstate(all="ignore"):
        assert_bits(run_program(out, [x])[0], np.power(x, exponent))


@pytest.mark.parametrize(("x_dtype", "c"), [
    ("int8", 2.0), ("int32", 0.5), ("int64", -1.0), ("int64", 1.0), ("uint64", 2.0), ("int16", 0.0),
    ("float32", np.float64(2.0)), ("float32", np.float64(0.5)), ("float32", np.float64(-1.0)),
    ("bool", np.int8(2)), ("bool", np.int8(3)), ("uint8", np.int64(3)),
])
def test_mixed_dtypes_cast_the_base_first_as_numpy_does(x_dtype, c):
    x = values(x_dtype) if x_dtype != "bool" else np.array([True, False] * 50)
    exponent = np.asarray(c)
    prog = power_program(x_dtype, x.shape, exponent)
    out = strength_reduce(prog)
    verify(out)
    assert "power" not in ops_of(out)
    assert out.nodes[out.outputs[0]].dtype == prog.nodes[prog.outputs[0]].dtype
    with np.errstate(all="ignore"):
        assert_bits(run_program(out, [x])[0], np.power(x, exponent), f"{x_dtype} ** {c!r}")


@pytest.mark.parametrize(("dtype", "exponent", "shape"), [
    ("float64", np.array(3.0), (50,)),           # pow in NumPy; x*x*x rounds twice
    ("float32", np.array(3.0, "float32"), (50,)),
    ("float64", np.array(4.0), (50,)),
    ("float64", np.array(-2.0), (50,)),
    ("float64", np.array(1.5), (50,)),
    ("float64", np.array(-0.5), (50,)),
    ("float64", np.array(np.nan), (50,)),
    ("float64", np.full(50, 2.0), (50,)),        # not a scalar exponent: NumPy calls pow
    ("float64", np.full((2, 1), 2.0), (50,)),    # the exponent broadcasts the result
    ("float64", np.full((1, 1), 2.0), (50,)),    # ... to another shape
    ("int64", np.array(-1), (50,)),              # NumPy raises: so must the program
    ("int64", np.array(9), (50,)),               # beyond MAX_INT_POWER
])
def test_exponents_numpy_does_not_fast_path_are_left_alone(dtype, exponent, shape):
    prog = power_program(dtype, shape, exponent)
    assert strength_reduce(prog) is prog


def test_a_runtime_exponent_is_left_alone():
    b = Builder()
    x = b.input(0, (8,), "float64")
    e = b.input(1, (), "float64")
    prog = b.finish([b.add("power", x, e)])
    assert strength_reduce(prog) is prog


def test_negative_integer_power_still_raises_like_numpy():
    x = np.arange(1, 6)
    prog = optimize(power_program("int64", x.shape, np.array(-2)))
    assert "power" in ops_of(prog)
    with pytest.raises(ValueError):
        np.power(x, np.array(-2))
    with pytest.raises(OpValueError, match="negative integer powers"):
        run_program(prog, [x])


def test_the_pipeline_runs_it_and_cse_shares_the_base():
    b = Builder()
    x = b.input(0, (16,), "float64")
    y = b.add("power", b.add("exp", x), b.const(2.0))
    prog = optimize(b.finish([b.add("sum", y)]), verify_each=True)
    assert ops_of(prog) == ["input", "exp", "multiply", "sum"]
    mul = prog.nodes[2]
    assert mul.args[0] == mul.args[1] == 1


# ---------------------------------------------------------------- through nd.jit


CASES = [
    ("square", lambda a: a ** 2),
    ("square_float", lambda a: a ** 2.0),
    ("sqrt", lambda a: a ** 0.5),
    ("reciprocal", lambda a: a ** -1),
    ("identity", lambda a: a ** 1 + 0.0),
    ("ones", lambda a: a ** 0),
    ("sum_sq_diff", lambda a: ((a - 1.5) ** 2).sum()),
    ("chain", lambda a: (a * 0.5) ** 2 + a ** 0.5 - (a + 1.0) ** -1),
]
INT_CASES = [
    ("square", lambda a: a ** 2),
    ("cube", lambda a: a ** 3),
    ("fifth", lambda a: a ** 5),
    ("ones", lambda a: a ** 0),
    ("sum_of_cubes", lambda a: (a ** 3).sum()),
]


def _check(name: str, dtype: str, got, want, where: str) -> None:
    if name == "sum_sq_diff":   # the sum's order is noodle's defined one, not NumPy's pairwise one
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == "float32" else 1e-12)
    else:
        assert_bits(got, want, f"{name} ({dtype}), {where}")


def _run_numba(fn, x):
    pytest.importorskip("numba")
    f = nd.jit(fn, backend="numba", hot_threshold=10**9)
    assert f.compile(x) == "numba", f.state(x).error
    with np.errstate(all="ignore"):
        got = f(x)
    assert f.stats()["compiled_calls"] == 1
    assert "power" not in f.nir(x)
    return got


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("name", "fn"), CASES, ids=[c[0] for c in CASES])
def test_jit_interpreted_matches_numpy_bits(dtype, name, fn):
    x = values(dtype, n=2000, seed=1)
    with np.errstate(all="ignore"):
        want = fn(x)
        f = nd.jit(fn, backend="interpret")
        got = f(x)
    assert "power" not in f.nir(x), f"{name}: {f.nir(x)}"
    _check(name, dtype, got, want, "interpreted")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("name", "fn"), CASES, ids=[c[0] for c in CASES])
def test_jit_numba_matches_numpy_bits(dtype, name, fn):
    x = values(dtype, n=2000, seed=1)
    with np.errstate(all="ignore"):
        want = fn(x)
    _check(name, dtype, _run_numba(fn, x), want, "numba")


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8"])
@pytest.mark.parametrize(("name", "fn"), INT_CASES, ids=[c[0] for c in INT_CASES])
def test_jit_integer_powers_match_numpy_bits(dtype, name, fn):
    x = values(dtype, n=2000, seed=2)
    want = fn(x)
    got = nd.jit(fn, backend="interpret")(x)
    assert_bits(got, want, f"{name} ({dtype}), interpreted")
    assert_bits(_run_numba(fn, x), want, f"{name} ({dtype}), numba")


def test_the_module_example_runs():
    import doctest
    import importlib

    module = importlib.import_module("noodle.passes.strength")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
