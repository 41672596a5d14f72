"""One differential suite for every registered backend: random fused regions (hypothesis) compiled by
each backend present here, checked against the interpreter's semantics (``reference.evaluate``
runs ``eval_node``, the interpreter's own definition), which is checked against plain NumPy.

Tolerances (the runtime-trust rules, see tests/jit/test_differential.py):

* integers and bools: exact, everywhere;
* floats, arithmetic / comparisons / where / sqrt / maximum / minimum / casts: bit for bit on
  every backend (IEEE 754 fixes them; NaN compared by position);
* ``libm`` ops (exp, log, sin, cos, tanh, power): bit for bit on the Numba backend (it calls
  NumPy's loops for them); on others each op alone is within ``LIBM_ULP`` ulp of NumPy, and a
  chain of them within the trust tolerance (rtol 1e-9 float64 / 2e-4 float32, scaled by the
  largest magnitude: an ulp of ``sin`` grows through a following ``exp``);
* reductions: bit for bit where the backend follows the defined order (noodle.ir.reduction:
  Numba and CUDA); other backends' float sums within the trust tolerance.

Example counts are moderate (CI has 2 cores): small shapes keep the Numba kernels on their
serial path (a compile is a fraction of a second, cached on disk); backends that compile slowly
(IREE: ~0.5 s a module) get ``SLOW_EXAMPLES``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noodle.backends.base import Backend
from noodle.backends.numba_expf import inline_exp
from noodle.backends.reference import evaluate
from noodle.backends.registry import backend_names, get_backend
from noodle.backends.spec import Instr, KernelSpec, Reduce
from noodle.errors import CompileError
from noodle.ir.ops import OPS

FLOAT_UNARY = ["negative", "abs", "exp", "sin", "cos", "tanh", "sqrt", "log"]
FLOAT_BINARY = ["add", "subtract", "multiply", "maximum", "minimum", "divide"]
INT_UNARY = ["negative", "abs"]
INT_BINARY = ["add", "subtract", "multiply", "maximum", "minimum"]
COMPARE = ["less", "less_equal", "greater", "greater_equal", "equal", "not_equal"]

EXACT_LIBM = {"numba"}                 # backends whose exp/log/... are NumPy's own loops
DEFINED_ORDER = {"numba", "cuda"}      # backends whose float reductions follow noodle.ir.reduction
LIBM_ULP = 2                           # one libm op alone, on any other backend
FAST = [n for n in backend_names() if n in ("numba", "cuda")]
SLOW = [n for n in backend_names() if n not in FAST]
SLOW_EXAMPLES = 6
TRUST = {"float64": (1e-9, 1e-9), "float32": (2e-4, 2e-4)}   # (rtol, atol relative to max|want|)


def _param(name: str) -> Any:
    return pytest.param(name, marks=pytest.mark.gpu) if name == "cuda" else name


@pytest.fixture
def backend_of(numba_backend):
    """``backend_of(name)``: the backend, or a skip saying why it cannot run here (numba never skips)."""
    def get(name: str) -> Backend:
        if name == "numba":
            return numba_backend
        try:
            backend = get_backend(name)
        except ImportError as exc:
            pytest.skip(f"backend {name!r} cannot be imported here: {exc}")
        ok, why = backend.available()
        if not ok:
            pytest.skip(f"backend {name!r} is unavailable here: {why}")
        return backend
    return get


# ------------------------------------------------------------------------------ programs
@st.composite
def random_spec(draw, big: bool = False, compare: bool = True):
    dtype = draw(st.sampled_from(["float64", "float32", "int64"] if not big else ["float64", "float32"]))
    ndim = draw(st.integers(1, 3)) if not big else draw(st.integers(1, 2))
    if big:
        shape = (70_001,) if ndim == 1 else draw(st.sampled_from([(71, 1001), (3, 30_001)]))
    else:
        shape = tuple(draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim)))
    n_in = draw(st.integers(1, 3))
    inputs = []
    for _ in range(n_in):  # each input: the full shape, or broadcast along some axes
        mask = draw(st.lists(st.booleans(), min_size=ndim, max_size=ndim))
        in_shape = tuple(1 if m else s for m, s in zip(mask, shape, strict=True))
        if draw(st.booleans()):
            in_shape = in_shape[draw(st.integers(0, ndim)):]  # fewer leading dims
        inputs.append((dtype, in_shape))
    consts = ((dtype, draw(st.sampled_from([0.5, 2.0, -1.0])) if dtype != "int64" else draw(st.integers(-3, 3))),)
    unary, binary = (FLOAT_UNARY, FLOAT_BINARY) if dtype != "int64" else (INT_UNARY, INT_BINARY)
    body = []
    n_values = n_in + 1
    # the comparison results are bools: only the values of the spec's dtype feed its arithmetic
    # (a bool under `negative` is an ill-typed spec, which no trace produces)
    typed = list(range(n_values))
    arg = st.sampled_from(tuple(typed))
    for _ in range(draw(st.integers(1, 6))):
        pick = draw(st.integers(0, 5 if compare else 1))
        if pick == 0:
            op = draw(st.sampled_from(unary))
            body.append(Instr(op, (draw(arg),), dtype))
        elif pick == 1:
            op = draw(st.sampled_from(binary))
            body.append(Instr(op, (draw(arg), draw(arg)), dtype))
        elif pick == 2:  # where(a <op> b, c, d): a comparison feeding a select, as traced code makes
            op = draw(st.sampled_from(COMPARE))
            a, b, c, d = (draw(arg) for _ in range(4))
            body.append(Instr(op, (a, b), "bool"))
            body.append(Instr("where", (n_values, c, d), dtype))
            n_values += 1
        else:
            body.append(Instr(draw(st.sampled_from(binary)), (n_values - 1, draw(arg)), dtype))
        typed.append(n_values)
        arg = st.sampled_from(tuple(typed))
        n_values += 1
    last = n_values - 1
    reduce = None
    if draw(st.booleans()):
        op = draw(st.sampled_from(["sum", "max", "min", "mean"]))
        axes = draw(st.one_of(st.none(), st.sets(st.integers(0, ndim - 1), min_size=1).map(lambda s: tuple(sorted(s)))))
        keep = draw(st.booleans())
        rdt = "float64" if (op == "mean" and dtype == "int64") else dtype
        rshape = np.zeros(shape).sum(axis=axes, keepdims=keep).shape
        reduce = Reduce(op, last, axes, keep, rdt, rshape)
    outputs = (last,) if reduce is None or draw(st.booleans()) else ()
    return KernelSpec(tuple(inputs), consts, tuple(body), outputs, shape, reduce)


def inputs_for(spec: KernelSpec, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    xs = []
    for dtype, shape in spec.inputs:
        if dtype == "int64":
            xs.append(rng.integers(-20, 20, shape))
        else:
            xs.append((rng.standard_normal(shape) * 2).astype(dtype))
    return xs


def uniform_libm(spec: KernelSpec) -> bool:
    """True when an exp/log/pow... of a broadcast one-element input appears: the Numba backend would
    compute it once with its own math library, so it refuses the region (it runs interpreted);
    not float32 exp where NumPy's algorithm is inline (:mod:`noodle.backends.numba_expf`)."""
    n = int(np.prod(spec.shape))
    uni = [n > 1 and int(np.prod(s)) == 1 for _, s in spec.inputs]
    const_only = [False] * len(spec.inputs)
    uni += [True] * len(spec.consts)
    const_only += [True] * len(spec.consts)
    for ins in spec.body:
        uni.append(all(uni[a] for a in ins.args))
        const_only.append(all(const_only[a] for a in ins.args))
        inline = inline_exp(spec, ins)   # NumPy's bits
        if OPS[ins.op].libm and ins.dtype.startswith("float") and uni[-1] and not const_only[-1] and not inline:
            return True
    return False


# ------------------------------------------------------------------------------ comparison
def as_bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64) if a.dtype.kind == "f" else a


def host(x: Any) -> np.ndarray:
    """A backend's output as a NumPy array (CuPy arrays come back from the device)."""
    get = getattr(x, "get", None)
    return np.asarray(get() if callable(get) and not isinstance(x, np.ndarray) else x)


def ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Distance in units in the last place (finite values; signs compared through the ordered bits)."""
    it = np.int32 if got.dtype == np.float32 else np.int64
    g, w = got.view(it).astype(np.int64), want.view(it).astype(np.int64)
    top = np.int64(np.iinfo(it).min)
    g = np.where(g < 0, top - g, g)
    w = np.where(w < 0, top - w, w)
    return np.abs(g - w)


def assert_same(got: np.ndarray, want: np.ndarray, where: str, *, exact: bool, ulp: int | None = None) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype, f"{where}: {got.dtype}{got.shape} != {want.dtype}{want.shape}"
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=where)
        return
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    assert np.array_equal(nan_g, nan_w), f"{where}: NaN positions differ"
    g, w = got[~nan_g], want[~nan_w]
    if exact:
        np.testing.assert_array_equal(as_bits(g), as_bits(w), err_msg=f"{where}: bits differ")
    elif ulp is not None:
        assert np.array_equal(np.isinf(g), np.isinf(w)), f"{where}: inf positions differ"
        worst = int(ulps(g, w).max()) if g.size else 0
        assert worst <= ulp, f"{where}: {worst} ulp from the interpreter (allowed {ulp})"
    else:
        rtol, atol = TRUST[want.dtype.name]
        finite = w[np.isfinite(w)]
        scale = float(np.max(np.abs(finite))) if finite.size else 0.0
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol * max(scale, 1.0), err_msg=where)


def check_backend(name: str, backend: Backend, spec: KernelSpec, seed: int) -> None:
    xs = inputs_for(spec, seed)
    want = evaluate(spec, *xs)
    try:
        kernel = backend.compile_kernel(spec)
    except CompileError as exc:
        if name == "numba":
            assert uniform_libm(spec) and "runs interpreted" in str(exc), exc
        else:   # refusing is correct (the region runs interpreted), but it must say why
            assert str(exc), f"{name} refused a region without a reason"
        return
    if name == "numba":
        assert not uniform_libm(spec)
    got = [host(g) for g in kernel(*xs)]
    assert len(got) == len(want)
    libm = any(OPS[ins.op].libm for ins in spec.body) and name not in EXACT_LIBM
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        w = np.asarray(w)
        is_reduction = spec.reduce is not None and k == len(spec.outputs)
        exact = not libm and (not is_reduction or name in DEFINED_ORDER or w.dtype.kind != "f")
        assert_same(g, w, f"{name} output {k} of {spec}", exact=exact)


# ------------------------------------------------------------------------------ the suite
@pytest.mark.parametrize("name", [_param(n) for n in FAST])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(spec=random_spec(), seed=st.integers(0, 2 ** 16))
def test_random_regions_match_the_interpreter(backend_of, name: str, spec: KernelSpec, seed: int) -> None:
    check_backend(name, backend_of(name), spec, seed)


@pytest.mark.parametrize("name", [_param(n) for n in FAST])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(spec=random_spec(big=True, compare=False), seed=st.integers(0, 2 ** 16))
def test_large_regions_match_the_interpreter(backend_of, name: str, spec: KernelSpec, seed: int) -> None:
    """Above the parallel threshold: Numba's threaded, blocked and staged code paths (NumPy ufuncs
    on blocks between Numba stages), CUDA's grid-stride loops."""
    check_backend(name, backend_of(name), spec, seed)


@pytest.mark.parametrize("name", [_param(n) for n in SLOW] or [pytest.param("-", marks=pytest.mark.skip(
    reason="no slow-compiling backend is registered"))])
@settings(max_examples=SLOW_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                             HealthCheck.function_scoped_fixture])
@given(spec=random_spec(), seed=st.integers(0, 2 ** 16))
def test_random_regions_match_the_interpreter_on_slow_compilers(backend_of, name: str, spec: KernelSpec,
                                                                 seed: int) -> None:
    check_backend(name, backend_of(name), spec, seed)


LIBM_CASES = [(op, dt) for op in ("exp", "log", "sin", "cos", "tanh", "sqrt") for dt in ("float32", "float64")]


@pytest.mark.parametrize("name", [_param(n) for n in backend_names()])
def test_each_libm_op_alone_is_within_its_ulp_budget(backend_of, name: str) -> None:
    """Every op the backend supports, on 4099 values per dtype: bit for bit where the backend calls
    NumPy's loops (and always for sqrt, which IEEE 754 fixes), within LIBM_ULP elsewhere. One module
    per dtype (compiled once); where the backend refuses it, one per op, skipping the refused ones."""
    backend = backend_of(name)
    rng = np.random.default_rng(11)
    checked = []
    for dt in ("float32", "float64"):
        n = 4099
        x = np.concatenate([rng.uniform(0.01, 30.0, n - 7), [0.5, 1.0, 2.0, 1e-30, 88.0, 3.14159, 700.0]]).astype(dt)
        ops = [op for op, d in LIBM_CASES if d == dt and backend.supports(op)[0]]
        try:
            groups = [(ops, backend.compile_kernel(_unary_spec(ops, dt, n)))]
        except CompileError:
            groups = []
            for op in ops:
                try:
                    groups.append(([op], backend.compile_kernel(_unary_spec([op], dt, n))))
                except CompileError:
                    continue   # refused for this dtype: such regions run interpreted
        for group, kernel in groups:
            with np.errstate(all="ignore"):
                want = evaluate(kernel.spec, x)
                got = [host(g) for g in kernel(x)]
            for op, g, w in zip(group, got, want, strict=True):
                exact = name in EXACT_LIBM or not OPS[op].libm
                assert_same(g, np.asarray(w), f"{name} {op} {dt}", exact=exact, ulp=None if exact else LIBM_ULP)
                checked.append((op, dt))
    assert ("sqrt", "float64") in checked and ("exp", "float32") in checked, f"{name} checked only {checked}"


def _unary_spec(ops: list[str], dt: str, n: int) -> KernelSpec:
    return KernelSpec(((dt, (n,)),), (), tuple(Instr(op, (0,), dt) for op in ops), tuple(range(1, len(ops) + 1)),
                      (n,))


@pytest.mark.parametrize("name", [_param(n) for n in backend_names()])
def test_the_benchmark_chain_compiles_and_matches(backend_of, name: str) -> None:
    """A backend must not pass the suite by refusing everything: the issue's chain compiles."""
    from backend_specs import chain, sum_abc

    backend = backend_of(name)
    for spec in (chain(10_000, "float64"), chain(10_000, "float32"), sum_abc(10_000, "float64")):
        xs = inputs_for(spec, 5)
        want = evaluate(spec, *xs)
        got = [host(g) for g in backend.compile_kernel(spec)(*xs)]
        libm = name not in EXACT_LIBM and any(OPS[i.op].libm for i in spec.body)
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            red = spec.reduce is not None and k == len(spec.outputs)
            assert_same(g, np.asarray(w), f"{name} {spec.key()}", exact=not libm and (not red or name in DEFINED_ORDER))


@settings(max_examples=60, deadline=None)
@given(spec=random_spec(), seed=st.integers(0, 2 ** 16))
def test_the_interpreter_semantics_match_plain_numpy(spec: KernelSpec, seed: int) -> None:
    """The oracle itself against NumPy: the spec evaluated op by op with NumPy's ufuncs on arrays
    (reductions: NumPy's own order, so float sums within the trust tolerance)."""
    xs = inputs_for(spec, seed)
    got = evaluate(spec, *xs)
    vals: list[Any] = [np.asarray(x).reshape(s) for x, (_, s) in zip(xs, spec.inputs, strict=True)]
    vals += [np.asarray(v, dtype=d) for d, v in spec.consts]
    with np.errstate(all="ignore"):
        for ins in spec.body:
            vals.append(np.asarray(getattr(np, OPS[ins.op].numpy or ins.op)(*[vals[a] for a in ins.args])))
        want: list[Any] = [np.broadcast_to(vals[v], spec.shape) for v in spec.outputs]
        if spec.reduce is not None:
            r = spec.reduce
            res = getattr(np, r.op)(np.broadcast_to(vals[r.value], spec.shape), axis=r.axes, keepdims=r.keepdims)
            want.append(np.asarray(res).astype(r.dtype))
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        red = spec.reduce is not None and k == len(spec.outputs)
        # max/min: equal values (NumPy may pick either zero of a -0.0/+0.0 tie; the defined order
        # takes +0.0 for max and -0.0 for min): 0 ulp, which counts the zeros as one
        extreme = red and spec.reduce.op in ("max", "min")
        assert_same(np.asarray(g), np.asarray(w), f"interpreter output {k} of {spec}",
                    exact=not red or np.asarray(w).dtype.kind != "f", ulp=0 if extreme else None)


@pytest.mark.parametrize("name", [_param(n) for n in backend_names()])
def test_results_stay_valid_after_the_next_call(backend_of, name: str) -> None:
    """A returned array is the caller's: the next call of the same kernel must not write into it
    (``f(a); f(b)`` in a jitted function calls one cached kernel twice, and the first result is
    still in use)."""
    f4 = "float32"
    spec = KernelSpec(((f4, (4, 5)),), (), (Instr("abs", (0,), f4),), (1,), (4, 5))
    rng = np.random.default_rng(0)
    x0, x1 = (rng.standard_normal((4, 5)).astype(f4) for _ in range(2))
    kernel = backend_of(name).compile_kernel(spec)
    (first,) = kernel(x1)
    first_copy = host(first).copy()
    kernel(x0)
    np.testing.assert_array_equal(host(first), first_copy, err_msg=f"{name}: the next call overwrote a result")
