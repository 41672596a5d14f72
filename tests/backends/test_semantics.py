"""One semantics: one shape function for matmul (NumPy as the oracle), and the backends' reference
evaluator is the interpreter's own ``eval_node``."""

from __future__ import annotations

import numpy as np
import pytest

from noodle.backends import reference
from noodle.backends.spec import Instr, KernelSpec, MatmulSpec, Reduce
from noodle.errors import ShapeError
from noodle.ir.graph import Builder, infer
from noodle.ir.ops import OPS
from noodle.ir.shapes import matmul_shape, result_shape

FITTING = [
    ((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((2, 3), (3, 4)),
    ((5, 2, 3), (3, 4)), ((2, 3), (5, 3, 4)), ((5, 2, 3), (5, 3, 4)),
    ((1, 2, 3), (6, 3, 4)), ((7, 1, 2, 3), (6, 3, 4)), ((5, 2, 3), (3,)), ((3,), (5, 3, 4)),
    ((0, 3), (3, 2)), ((2, 0), (0, 4)),
]
MISFITS = [((3,), (4,)), ((2, 3), (4, 5)), ((2, 2, 3), (3, 3, 4)), ((), (3,)), ((3,), ()),
           ((5, 2, 3), (4,))]


@pytest.mark.parametrize(("a", "b"), FITTING)
def test_matmul_shape_is_numpys(a, b) -> None:
    want = np.matmul(np.ones(a), np.ones(b)).shape
    assert matmul_shape(a, b) == want
    assert result_shape(OPS["matmul"], [a, b]) == want
    assert infer("matmul", [(a, "float64"), (b, "float32")], {}) == (want, "float64")


@pytest.mark.parametrize(("a", "b"), MISFITS)
def test_matmul_misfits_are_refused_everywhere(a, b) -> None:
    with pytest.raises(ValueError):
        np.matmul(np.ones(a), np.ones(b))
    with pytest.raises(ValueError, match="matmul"):
        matmul_shape(a, b)
    with pytest.raises(ShapeError, match="matmul"):
        infer("matmul", [(a, "float64"), (b, "float64")], {})


def test_batched_matmul_traces_and_runs_like_numpy() -> None:
    """Batched products were refused at trace time before (graph.infer had its own 2-D rule)."""
    import noodle as nd

    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 1, 3, 4)), rng.standard_normal((5, 4, 2))
    f = nd.jit(lambda x, y: x @ y + 1.0, backend="interpret")
    np.testing.assert_array_equal(f(a, b), a @ b + 1.0)


def test_reference_has_no_evaluator_of_its_own() -> None:
    """The spec evaluator runs the interpreter's eval_node: no second definition of any op."""
    assert not hasattr(reference, "apply_op")
    src = open(reference.__file__, encoding="utf-8").read()
    assert "eval_node" in src and "getattr(np" not in src


def _mixed_spec() -> KernelSpec:
    i8, f4, f8 = "int8", "float32", "float64"
    return KernelSpec(
        inputs=((i8, (3, 4)), (f4, (4,)), ("bool", (3, 1))), consts=((i8, 100), (f8, 0.5)),
        body=(Instr("multiply", (0, 3), i8), Instr("add", (5, 1), f4), Instr("where", (2, 6, 4), f8),
              Instr("less", (0, 1), "bool"), Instr("astype", (7,), "uint8", (("dtype", "uint8"),)),
              Instr("divide", (0, 3), f8), Instr("maximum", (0, 3), i8), Instr("exp", (1,), f4)),
        outputs=(5, 6, 7, 8, 9, 10, 11, 12), shape=(3, 4),
        reduce=Reduce("sum", 5, (1,), True, "int64", (3, 1)))


def test_reference_matches_a_node_by_node_interpretation() -> None:
    """evaluate(spec) == the interpreter running the same nodes (casting rules included: int8
    wraps, float32 + float64 constant stays float32 under NEP 50)."""
    from noodle.exec.interpreter import run_program

    spec = _mixed_spec()
    rng = np.random.default_rng(2)
    xs = [rng.integers(-100, 100, (3, 4)).astype(np.int8), rng.standard_normal(4).astype(np.float32),
          rng.integers(0, 2, (3, 1)).astype(bool)]
    got = reference.evaluate(spec, *xs)
    b = Builder()
    vals = [b.input(k, s, d) for k, (d, s) in enumerate(spec.inputs)]
    vals += [b.const(v, d) for d, v in spec.consts]
    for ins in spec.body:
        vals.append(b.add(ins.op, *ins.args, **dict(ins.attrs)))
    outs = [b.add("broadcast_to", vals[v], shape=spec.shape) for v in spec.outputs]
    outs.append(b.add("sum", vals[spec.reduce.value], axis=(1,), keepdims=True))
    want = run_program(b.finish(outs), xs)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert np.asarray(g).dtype == w.dtype
        np.testing.assert_array_equal(g, w)


def test_reference_matmul_runs_the_product_then_the_epilogue() -> None:
    from backend_specs import matmul_bias_relu

    spec: MatmulSpec = matmul_bias_relu(3, 4, 5)
    rng = np.random.default_rng(3)
    a, b, bias = rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)
    (got,) = reference.evaluate_matmul(spec, a, b, bias)
    np.testing.assert_array_equal(got, np.maximum(a @ b + bias, 0.0))
