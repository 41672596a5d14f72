"""Result shapes of ops from operand shapes (NumPy's rules), shared by placement, eager ops and the tracer."""

from __future__ import annotations

import numpy as np

from noodle.ir.ops import OpDef, OpKind


def result_shape(op: OpDef, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The output shape of ``op`` applied to operands of ``shapes`` (reductions: the input's shape).

    Raises ValueError (from NumPy) when the shapes do not fit together.
    """
    if op.kind is OpKind.MATMUL:
        a, b = shapes
        if not a or not b:
            raise ValueError("matmul: scalar operands are not allowed")
        if a[-1] != (b[-2] if len(b) > 1 else b[0]):
            raise ValueError(f"matmul: inner dimensions differ ({a[-1]} vs {b[-2] if len(b) > 1 else b[0]})")
        batch = np.broadcast_shapes(a[:-2], b[:-2])
        return tuple(batch) + ((a[-2],) if len(a) > 1 else ()) + ((b[-1],) if len(b) > 1 else ())
    if op.kind in (OpKind.REDUCE, OpKind.SHAPE, OpKind.CAST):
        return tuple(shapes[0])
    return tuple(np.broadcast_shapes(*shapes))


def size(shape: tuple[int, ...]) -> int:
    """Number of elements of ``shape`` (exact Python int, 1 for a 0-d shape)."""
    n = 1
    for d in shape:
        n *= d
    return n
