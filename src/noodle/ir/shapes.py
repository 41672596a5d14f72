"""Result shapes of ops from operand shapes (NumPy's rules), shared by placement, eager ops and the tracer.

Why one module: the graph's type inference (:func:`noodle.ir.graph.infer`), placement's size
estimates and the eager ops must agree on every shape, so each rule is written once here.

Example::

    >>> matmul_shape((2, 3, 4), (4,))
    (2, 3)
    >>> matmul_shape((4,), (5, 4, 2))
    (5, 2)
"""

from __future__ import annotations

import numpy as np

from noodle.ir.ops import OpDef, OpKind


def result_shape(op: OpDef, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The output shape of ``op`` applied to operands of ``shapes`` (reductions: the input's shape).

    Raises ValueError (from NumPy) when the shapes do not fit together.
    """
    if op.kind is OpKind.MATMUL:
        return matmul_shape(*shapes)
    if op.kind in (OpKind.REDUCE, OpKind.SHAPE, OpKind.CAST):
        return tuple(shapes[0])
    return tuple(np.broadcast_shapes(*shapes))


def matmul_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of ``np.matmul`` on operands of shapes ``a`` and ``b`` (the one definition).

    A 1-D ``a`` is a row vector and a 1-D ``b`` a column vector (the added axis is dropped from
    the result); leading (batch) dimensions broadcast. Raises ValueError naming what does not fit.
    """
    a, b = tuple(int(d) for d in a), tuple(int(d) for d in b)
    if not a or not b:
        raise ValueError(f"matmul: scalar operands are not allowed (shapes {a} @ {b}); use multiply")
    k_a = a[-1]
    k_b = b[-2] if len(b) > 1 else b[0]
    if k_a != k_b:
        raise ValueError(f"matmul: inner dimensions differ ({a} @ {b}: {k_a} vs {k_b})")
    try:
        batch = np.broadcast_shapes(a[:-2], b[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions {a[:-2]} and {b[:-2]} do not broadcast ({a} @ {b})") from None
    return tuple(int(d) for d in batch) + ((a[-2],) if len(a) > 1 else ()) + ((b[-1],) if len(b) > 1 else ())


def size(shape: tuple[int, ...]) -> int:
    """Number of elements of ``shape`` (exact Python int, 1 for a 0-d shape)."""
    n = 1
    for d in shape:
        n *= d
    return n
