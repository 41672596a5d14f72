"""Evaluate a spec with the interpreter's own semantics: the oracle the backends are tested against.

Why here and not only in tests: a backend also needs a correct path for cases
its generated code does not cover (zero-size arrays, an op a target lacks), and
"fall back to NumPy" must mean the very same semantics the tests check. There is
no second definition of any op here: every instruction (casting rules and the
defined reduction order included) runs through :func:`noodle.ir.semantics.eval_node`,
the function the interpreter runs (``backends`` may import ``ir``, not ``exec``).

Example::

    outs = evaluate(spec, a, b)      # same convention as Kernel.__call__
"""

from __future__ import annotations

from typing import Any

import numpy as np

from noodle.backends.spec import Instr, KernelSpec, MatmulSpec
from noodle.ir.graph import Node
from noodle.ir.semantics import eval_node


def eval_instr(ins: Instr, args: list[Any]) -> np.ndarray:
    """One spec instruction on computed operand values, as the interpreter computes its node."""
    node = Node(ins.op, tuple(range(len(args))), (), ins.dtype, ins.attrs)
    with np.errstate(all="ignore"):
        return eval_node(node, args)


def evaluate(spec: KernelSpec, *inputs: Any) -> tuple[Any, ...]:
    """Run ``spec`` node by node (temporaries and all)."""
    values: list[Any] = [np.asarray(x).reshape(s) for x, (_, s) in zip(inputs, spec.inputs, strict=True)]
    values += [np.asarray(v, dtype=d) for d, v in spec.consts]
    for ins in spec.body:
        values.append(eval_instr(ins, [values[a] for a in ins.args]))
    outs: list[Any] = [np.broadcast_to(values[v], spec.shape).astype(spec.dtype_of(v)) for v in spec.outputs]
    if spec.reduce is not None:
        r = spec.reduce
        x = np.broadcast_to(values[r.value], spec.shape)
        node = Node(r.op, (0,), r.shape, r.dtype, (("axis", r.axes), ("keepdims", r.keepdims)))
        with np.errstate(all="ignore"):
            res = eval_node(node, [x]).reshape(r.shape)
        outs.append(res[()] if res.shape == () else res)
    return tuple(outs)


def evaluate_matmul(spec: MatmulSpec, a: Any, b: Any, *extra: Any) -> tuple[Any]:
    """``a @ b`` then the epilogue, each as the interpreter computes it."""
    node = Node("matmul", (0, 1), tuple(spec.out_shape), spec.out_dtype)
    prod = eval_node(node, [np.asarray(a), np.asarray(b)])
    if spec.epilogue is None:
        return (prod,)
    return (evaluate(spec.epilogue, prod, *extra)[0],)


__all__ = ["eval_instr", "evaluate", "evaluate_matmul"]
