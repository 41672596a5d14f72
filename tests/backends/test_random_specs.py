"""Random fused regions (hypothesis) through the Numba backend, NumPy (the reference evaluator) as
oracle, bit for bit: the compiled kernel must give the interpreter's bits (the runtime-trust rule).

Small shapes keep every kernel on the serial path, where a compile costs a
fraction of a second; the parallel paths are covered by the hand-built tests.
Integer chains use only ops whose results stay exact (no division, no power).
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noodle.backends.reference import evaluate
from noodle.backends.spec import Instr, KernelSpec, Reduce
from noodle.errors import CompileError
from noodle.ir.ops import OPS

FLOAT_UNARY = ["negative", "abs", "exp", "sin", "cos", "tanh"]
FLOAT_BINARY = ["add", "subtract", "multiply", "maximum", "minimum", "divide"]
INT_UNARY = ["negative", "abs"]
INT_BINARY = ["add", "subtract", "multiply", "maximum", "minimum"]


@st.composite
def random_spec(draw, big: bool = False):
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
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):
            op = draw(st.sampled_from(unary))
            body.append(Instr(op, (draw(st.integers(0, n_values - 1)),), dtype))
        else:
            op = draw(st.sampled_from(binary))
            args = (draw(st.integers(0, n_values - 1)), draw(st.integers(0, n_values - 1)))
            body.append(Instr(op, args, dtype))
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


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=random_spec(), seed=st.integers(0, 2 ** 16))
def test_random_specs_match_numpy(numba_backend, spec: KernelSpec, seed: int) -> None:
    _compare(numba_backend, spec, seed)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=random_spec(big=True), seed=st.integers(0, 2 ** 16))
def test_random_block_staged_specs_match_numpy(numba_backend, spec: KernelSpec, seed: int) -> None:
    """Large regions (1-D, or 2-D with broadcasting): transcendental ops run as NumPy ufuncs
    on blocks between Numba stages."""
    _compare(numba_backend, spec, seed)


def _uniform_libm(spec: KernelSpec) -> bool:
    """True when an exp/log/pow... of a broadcast one-element input appears: such a value would be
    computed once with the kernel's math library, so the backend refuses it (it runs interpreted)."""
    n = int(np.prod(spec.shape))
    uni = [n > 1 and int(np.prod(s)) == 1 for _, s in spec.inputs]
    const_only = [False] * len(spec.inputs)
    uni += [True] * len(spec.consts)
    const_only += [True] * len(spec.consts)
    for ins in spec.body:
        uni.append(all(uni[a] for a in ins.args))
        const_only.append(all(const_only[a] for a in ins.args))
        if OPS[ins.op].libm and ins.dtype.startswith("float") and uni[-1] and not const_only[-1]:
            return True
    return False


def as_bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64) if a.dtype.kind == "f" else a


def _compare(numba_backend, spec: KernelSpec, seed: int) -> None:
    """The kernel's outputs have the reference's bits (NaN compared by position): the reference is
    the interpreter's semantics, reductions included (noodle.ir.reduction)."""
    rng = np.random.default_rng(seed)
    xs = []
    for dtype, shape in spec.inputs:
        if dtype == "int64":
            xs.append(rng.integers(-20, 20, shape))
        else:
            xs.append((rng.standard_normal(shape) * 2).astype(dtype))
    with np.errstate(all="ignore"):
        ref = evaluate(spec, *xs)
    try:
        kernel = numba_backend.compile_kernel(spec)
    except CompileError as exc:
        assert _uniform_libm(spec) and "runs interpreted" in str(exc), exc
        return
    assert not _uniform_libm(spec)
    got = kernel(*xs)
    assert len(got) == len(ref)
    for g, r in zip(got, ref, strict=True):
        g, r = np.asarray(g), np.asarray(r)
        assert g.shape == r.shape and g.dtype == r.dtype
        if g.dtype.kind == "f":
            assert np.array_equal(np.isnan(g), np.isnan(r))
            np.testing.assert_array_equal(as_bits(g)[~np.isnan(g)], as_bits(r)[~np.isnan(r)])
        else:
            np.testing.assert_array_equal(g, r)
