"""The meaning of one NIR node, in NumPy terms (the op table's ``numpy`` column).

Why it lives in ``ir``: both the interpreter and constant folding must compute
*exactly* the same thing, and passes may not import the interpreter (imports
point one way). ``xp`` is NumPy or CuPy.

Example::

    >>> import numpy as np
    >>> from noodle.ir.graph import Node
    >>> eval_node(Node("add", (0, 1), (2,), "float64"), [np.ones(2), np.ones(2)])
    array([2., 2.])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from noodle.ir.graph import Node
from noodle.ir.ops import OPS, OpKind
from noodle.ir.reduction import reduce_values


def eval_node(node: Node, vals: Sequence[Any], xp: Any = np) -> Any:
    """Evaluate one computing node on already computed operand values."""
    row = OPS[node.op]
    kind = row.kind
    if kind in (OpKind.UNARY, OpKind.BINARY, OpKind.TERNARY):
        out = getattr(xp, row.numpy)(*vals)
    elif kind is OpKind.REDUCE:
        # the defined order (noodle.ir.reduction), not NumPy's: every backend follows the same one
        out = reduce_values(node.op, vals[0], node.attr("axis"), node.attr("keepdims", False), node.dtype)
    elif kind is OpKind.MATMUL:
        out = xp.matmul(vals[0], vals[1])
    elif node.op == "reshape":
        out = xp.reshape(vals[0], node.attr("shape"))
    elif node.op == "transpose":
        out = xp.transpose(vals[0], node.attr("axes"))
    elif node.op == "broadcast_to":
        out = xp.broadcast_to(vals[0], node.attr("shape"))
    elif node.op == "astype":
        out = vals[0].astype(node.attr("dtype"))
    else:  # pragma: no cover - verify() rejects anything else
        raise AssertionError(f"cannot evaluate {node.op}")
    if not isinstance(out, xp.ndarray):
        out = xp.asarray(out)
    if out.dtype.name != node.dtype:
        # NumPy agrees with the inferred dtype by construction; CuPy may differ on corners
        out = out.astype(node.dtype)
    return out


__all__ = ["eval_node"]
