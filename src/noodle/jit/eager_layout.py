"""The memory layout NumPy would give a fused region's output that a product reads.

Why: a compiled kernel writes its outputs C-ordered, while NumPy's ufuncs allocate theirs in "K"
order, following their operands' strides: ``(w.T * 2) @ x`` multiplies a Fortran-ordered matrix
in NumPy. NumPy's ``matmul`` picks its BLAS call from the layout, and the calls sum in different
orders, so the jitted product differed in the last bits (:mod:`noodle.passes.layout`). Only outputs
a product reads (through views) are relaid, and only when an operand of the region is not
C-ordered at run time (the C-ordered case, almost every call, costs one flag test per operand).

The layout is worked out as NumPy's own expression would allocate it: member by member, each
elementwise result allocated by NumPy's iterator in "K" order over its operands' stand-ins (what
a ufunc does), a C-ordered copy (``x.copy()``) or a reduction's or product's result C-ordered,
a view taken as NumPy takes it. The stand-ins are allocated, never written (pages never touched).
One case is not followed: NumPy reusing a large temporary of another layout in place (its
"temporary elision") can leave a mixed-layout result in the temporary's order.

Example::

    step = with_eager_layout(program, unit, step)   # the same step, its outputs relaid where needed
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from noodle.ir.graph import Program
from noodle.ir.ops import OPS, OpKind
from noodle.ir.semantics import eval_node
from noodle.passes.layout import VIEW_OPS, product_operands

_ELEMENTWISE = (OpKind.UNARY, OpKind.BINARY, OpKind.TERNARY)


def k_order(operands: list[np.ndarray], shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialized array as a NumPy ufunc allocates its output over ``operands``: order "K"."""
    if not operands:
        return np.empty(shape, dtype)
    it = np.nditer([*operands, None], flags=["refs_ok", "zerosize_ok"],
                   op_flags=[["readonly"]] * len(operands) + [["writeonly", "allocate"]],
                   op_dtypes=[None] * len(operands) + [dtype], order="K", op_axes=None)
    out = it.operands[-1]
    if out.shape != shape:     # operands that do not broadcast to the result: C order
        return np.empty(shape, dtype)
    return out


def with_eager_layout(program: Program, members: tuple[int, ...] | list[int], inputs: tuple[int, ...],
                      step: Callable[..., tuple[Any, ...]], outs: tuple[int, ...],
                      read: set[int] | None = None) -> Callable[..., tuple[Any, ...]]:
    """``step`` (a region's compiled step: ``step(*input values) -> output values``), its outputs
    that a product reads given NumPy's layout; ``step`` itself where no product reads one.
    ``read``: :func:`~noodle.passes.layout.product_operands` of ``program``, when the caller has it
    (one walk per program, not one per region)."""
    nodes = program.nodes
    if read is None:
        read = product_operands(program)
    targets = [k for k, v in enumerate(outs) if v in read and len(nodes[v].shape) >= 2]
    if not targets:
        return step
    plan = [(m, nodes[m]) for m in members]
    # a copy asked for in Fortran order is not C-ordered even from C-ordered operands
    always = any(node.op == "astype" and node.attr("order") in ("F", "A") for _, node in plan)

    def stand_ins(vals: tuple[Any, ...]) -> dict[int, Any]:
        env: dict[int, Any] = {}
        for v, x in zip(inputs, vals, strict=True):
            env[v] = x if isinstance(x, np.ndarray) and x.ndim else None
        for m, node in plan:
            kind = OPS[node.op].kind
            if node.op in VIEW_OPS and env.get(node.args[0]) is not None:
                env[m] = eval_node(node, [env[node.args[0]]])
            elif node.attr("inplace", False) and env.get(node.args[0]) is not None and node.shape:
                env[m] = np.empty_like(env[node.args[0]], dtype=node.dtype)   # written into a's buffer
            elif kind in _ELEMENTWISE or (kind is OpKind.CAST and node.attr("order", "K") in ("K", "A")):
                ops = [env[a] for a in node.args if env.get(a) is not None]
                env[m] = k_order(ops, tuple(node.shape), np.dtype(node.dtype)) if node.shape else None
            else:   # a copy in C (or F) order, a reduction, a product: C order
                order = "F" if node.op == "astype" and node.attr("order") == "F" else "C"
                env[m] = np.empty(node.shape, node.dtype, order=order) if node.shape else None
        return env

    def relaid(*vals: Any) -> tuple[Any, ...]:
        got = step(*vals)
        if not always and all(not isinstance(x, np.ndarray) or x.flags.c_contiguous for x in vals):
            return got      # "K" order over C-ordered operands is C order: the kernel's own
        env = stand_ins(vals)
        out = list(got)
        for k in targets:
            want = env.get(outs[k])
            x = out[k]
            if want is not None and isinstance(x, np.ndarray) and want.strides != x.strides:
                np.copyto(want, x)
                out[k] = want
        return tuple(out)

    return relaid


__all__ = ["k_order", "with_eager_layout"]
