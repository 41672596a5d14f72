"""nd.fori_loop / nd.while_loop: eager and jitted (interpreter and compiled) against plain Python loops."""

from __future__ import annotations

import numpy as np
import pytest

import noodle as nd
from noodle.errors import TraceError
from noodle.nbc import dumps, loads

V = np.linspace(-1.0, 2.0, 7)


def py_fori(lo, hi, body, init):
    carry = init
    for i in range(lo, hi):
        carry = body(np.int64(i), carry)
    return carry


def py_while(cond, body, init):
    carry = init
    while cond(carry):
        carry = body(carry)
    return carry


def _jits(fn):
    yield nd.jit(fn, backend="interpret")
    f = nd.jit(fn)
    yield f


def _same(got, want) -> None:
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _same(g, w)
        return
    assert np.shape(got) == np.shape(want) and np.asarray(got).dtype == np.asarray(want).dtype
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


FORI = {
    "scale": (lambda x: nd.fori_loop(0, 5, lambda i, c: c * 1.5 + i, x),
              lambda x: py_fori(0, 5, lambda i, c: c * 1.5 + i, x)),
    "tuple_gather": (lambda x: nd.fori_loop(1, 6, lambda i, c: (c[0] + x[i], c[1] * 2.0), (x.sum(), x)),
                     lambda x: py_fori(1, 6, lambda i, c: (c[0] + x[i], c[1] * 2.0), (x.sum(), x))),
    "zero_trips": (lambda x: nd.fori_loop(3, 3, lambda i, c: c + 1.0, x), lambda x: x),
    "nested": (lambda x: nd.fori_loop(0, 3, lambda i, c: nd.fori_loop(0, 2, lambda j, d: d + x * j, c), x),
               lambda x: py_fori(0, 3, lambda i, c: py_fori(0, 2, lambda j, d: d + x * j, c), x)),
}


@pytest.mark.parametrize("name", sorted(FORI))
def test_fori_loop_matches_python(name: str) -> None:
    fn, ref = FORI[name]
    want = ref(V)
    _same(fn(V), want)   # eager
    for f in _jits(fn):
        f.compile(V)
        _same(f(V), want)
        _same(f(V * 2), ref(V * 2))


def test_while_loop_matches_python_and_runs_a_data_dependent_count() -> None:
    def fn(x, tol):
        return nd.while_loop(lambda c: (c[1] < 100) & (nd.max(abs(c[0])) > tol),
                             lambda c: (c[0] * 0.5, c[1] + 1), (x, np.int64(0)))

    def ref(x, tol):
        return py_while(lambda c: c[1] < 100 and np.max(abs(c[0])) > tol, lambda c: (c[0] * 0.5, c[1] + 1),
                        (x, np.int64(0)))

    for tol in (1e-3, 10.0):
        want = ref(V, tol)
        _same(fn(V, tol), want)
        for f in _jits(fn):
            f.compile(V, np.float64(tol))
            _same(f(V, np.float64(tol)), want)


def test_traced_bounds() -> None:
    fn = nd.jit(lambda x, n: nd.fori_loop(0, n, lambda i, c: c + x[i], np.zeros(())))
    for n in (0, 3, 7):
        assert fn(V, np.int64(n)) == pytest.approx(V[:n].sum(), rel=1e-12)


@pytest.mark.parametrize("body", [lambda i, c: c[:-1], lambda i, c: c.astype(np.float32),
                                  lambda i, c: (c, c)])
def test_carry_change_raises_naming_it(body) -> None:
    with pytest.raises(TraceError, match="carr"):
        nd.fori_loop(0, 2, body, V)
    with pytest.raises(TraceError, match="carr"):
        nd.jit(lambda x: nd.fori_loop(0, 2, body, x))(V)


@pytest.mark.parametrize("order", [">", "<"])
def test_a_carry_in_the_other_byte_order_is_the_same_type(order) -> None:
    """NumPy's arithmetic on a big-endian array gives a native one; the carry's type did not change
    (eagerly this raised "changes the carry from float64[6] to float64[6]")."""
    x = V[:6].astype(f"{order}f8")

    def plain(x):
        c = x
        for _ in range(3):
            c = c * 2.0 + 1.0
        return c

    def looped(x):
        return nd.fori_loop(0, 3, lambda i, c: c * 2.0 + 1.0, x)

    want = plain(x)
    for got in (looped(x), nd.jit(looped)(x)):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    np.testing.assert_array_equal(nd.fori_loop(0, 0, lambda i, c: c * 2.0, x), x)   # zero trips: the carry itself


def test_tuple_carry_error_names_the_element() -> None:
    with pytest.raises(TraceError, match="carry element 1"):
        nd.jit(lambda x: nd.fori_loop(0, 2, lambda i, c: (c[0], c[1].sum()), (x, x)))(V)


def test_cond_must_be_a_boolean_scalar() -> None:
    with pytest.raises(TraceError, match="boolean scalar"):
        nd.jit(lambda x: nd.while_loop(lambda c: c, lambda c: c - 1.0, x))(V)


def test_loops_round_trip_through_nbc() -> None:
    f = nd.jit(lambda x: nd.fori_loop(0, 4, lambda i, c: nd.while_loop(lambda d: d.sum() > 1.0,
                                                                        lambda d: d * 0.5, c + x), x))
    data = f.bytecode(V)
    prog = loads(data)
    assert dumps(prog) == data and any(n.op == "while_loop" for n in prog.nodes)
    from noodle.exec.interpreter import run_program
    (out,) = run_program(prog, (V,))
    np.testing.assert_allclose(out, f(V), rtol=0, atol=0)


def test_conjugate_gradient_example_agrees_jitted() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "dense_layers.py"
    spec = importlib.util.spec_from_file_location("dense_layers_ex", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(1)
    m = rng.standard_normal((60, 60))
    a, b = m @ m.T + 60 * np.eye(60), rng.standard_normal(60)
    x, k = mod.conjugate_gradient(a, b)
    solve = nd.jit(mod.conjugate_gradient)
    solve.compile(a, b)
    xj, kj = solve(a, b)
    assert kj == k and 0 < k <= 50
    np.testing.assert_allclose(xj, x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a @ x, b, atol=1e-4)


def _dead_loop_with_a_bad_gather():
    """A loop whose body gathers index 5 of a 3-element constant, and whose cond is false at once."""
    from noodle.ir.graph import Builder, SubProgram

    body = Builder()
    c = body.input(0, (1,), "float64")
    bad = body.add("gather", body.const(np.arange(3.0)), body.const(np.array([5], dtype=np.int64)), axis=0)
    body_prog = body.finish([body.add("add", c, bad)])
    cond = Builder()
    cond.input(0, (1,), "float64")
    cond_prog = cond.finish([cond.const(np.array(False))])
    b = Builder()
    loop = b.add("while_loop", b.input(0, (1,), "float64"), cond=SubProgram(cond_prog), body=SubProgram(body_prog),
                 carry=1)
    return b.finish([b.add("loop_result", loop, item=0)])


@pytest.mark.parametrize("backend", ["interpret", "numba"])
def test_a_loop_that_never_runs_does_not_raise_for_its_body(backend: str) -> None:
    """Folding evaluates constants ahead of time: it must leave an op that would raise to run time."""
    from noodle.backends import get_backend
    from noodle.exec.interpreter import run_program
    from noodle.jit.lower import build_runner
    from noodle.passes import optimize
    from noodle.passes.simplify import fold_constants

    program = _dead_loop_with_a_bad_gather()
    x = np.array([1.5])
    np.testing.assert_array_equal(run_program(program, (x,))[0], x)
    body = program.nodes[1].attr("body").program
    assert "gather" in [n.op for n in fold_constants(body).nodes]   # not folded: it would raise
    runner = build_runner(optimize(program.copy()), "interpret" if backend == "interpret" else get_backend(backend))
    np.testing.assert_array_equal(runner((x,))[0], x)
    from noodle.errors import OpIndexError
    from noodle.ir.semantics import run_subprogram
    with pytest.raises(OpIndexError, match="index 5 is out of bounds"):   # where it does run, it raises
        run_subprogram(body, (x,))


@pytest.mark.parametrize("fn, x", [
    # eagerly the Python int stays weak: + an int8 array gives int8 (jitted: int64)
    (lambda x: nd.fori_loop(0, 3, lambda i, c: c + 1, 0) + x, np.ones(3, np.int8)),
    # eagerly the Python float carry becomes float32 after one iteration (jitted: float64 bits)
    (lambda x: nd.fori_loop(0, 10, lambda i, c: c + x[i] * x[i], 0.0), np.arange(10, dtype=np.float32) / 10),
    (lambda x: nd.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] * 2.0), (0, x)), np.ones(3)),
    (lambda x: nd.while_loop(lambda c: c < 3.0, lambda c: c + x[0], 0.0), np.ones(3, np.float32)),
])
def test_a_python_scalar_carry_is_refused_where_its_dtype_is_not_fixed(fn, x) -> None:
    """NumPy types a Python scalar by what it meets, so the eager loop's dtype may change after
    its first iteration; the traced loop fixed int64/float64 and returned another dtype (and other
    bits). The jitted call refuses the carry, naming it and what to write instead."""
    fn(x)   # eagerly it runs
    with pytest.raises(TraceError, match=r"starts as the Python (int|float).*np\.(int64|float64)\("):
        nd.jit(fn)(x)


def test_a_numpy_scalar_carry_fixes_the_dtype_in_both_modes() -> None:
    x = np.arange(10, dtype=np.float32) / 10

    def fn(x):
        return nd.fori_loop(0, 10, lambda i, c: c + x[i] * x[i], np.float32(0.0))

    want = fn(x)
    got = nd.jit(fn)(x)
    assert type(got) is type(want) and got.dtype == np.float32
    assert np.asarray(got).view(np.uint32) == np.asarray(want).view(np.uint32)


def test_a_python_scalar_argument_as_a_carry_is_refused_too() -> None:
    def fn(x, s):
        return nd.fori_loop(0, 3, lambda i, c: c + x[i], s)

    x8 = np.array([100, 100, 100, 5], np.int8)
    with np.errstate(over="ignore"):
        assert fn(x8, 0).dtype == np.int8   # eagerly: NEP 50 makes it int8 (300 wraps to 44)
    for s in (0, 0.0):
        with pytest.raises(TraceError, match="starts as"):
            nd.jit(fn)(x8, s)
