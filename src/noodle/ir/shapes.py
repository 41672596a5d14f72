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


def slice_length(start: int, stop: int, step: int) -> int:
    """Elements a normalized slice selects (``len(range(start, stop, step))``)."""
    return len(range(start, stop, step))


def index_type(op_name: str, arg_types: list[tuple[tuple[int, ...], str]], attrs: dict
               ) -> tuple[tuple[int, ...], str]:
    """Shape and dtype of the indexing and loop ops (slice, gather, concatenate, while_loop).

    Why they check every attribute value: the same rules type what the tracer records and re-check
    what hostile bytecode declares, so a bound outside the array never reaches an evaluator.
    """
    from noodle.errors import DTypeError, IRVerifyError, ShapeError  # noqa: PLC0415 - keep this module light

    def ints(name: str, n: int) -> tuple[int, ...]:
        v = attrs.get(name)
        if not isinstance(v, tuple) or len(v) != n or not all(isinstance(a, int) and not isinstance(a, bool)
                                                               for a in v):
            raise IRVerifyError(f"{op_name}: {name} must be a tuple of {n} ints, got {v!r}")
        return v

    def axis_of(ndim: int) -> int:
        axis = attrs.get("axis")
        if not isinstance(axis, int) or isinstance(axis, bool) or not 0 <= axis < ndim:
            raise ShapeError(f"{op_name}: axis {axis!r} is out of range for {ndim} dimensions")
        return axis

    if op_name == "slice":
        if len(arg_types) != 1:
            raise IRVerifyError(f"slice takes 1 operand, got {len(arg_types)}")
        (shape, dtype), = arg_types
        n = len(shape)
        starts, stops, steps = ints("starts", n), ints("stops", n), ints("steps", n)
        out = []
        for d, a, b, s in zip(shape, starts, stops, steps, strict=True):
            lo, hi = (0, d) if s > 0 else (-1, d - 1)
            if s == 0 or not (lo <= a <= hi and lo <= b <= hi):
                raise ShapeError(f"slice {a}:{b}:{s} is not normalized for an axis of {d} "
                                 "(start and stop within the axis, step not 0)")
            out.append(slice_length(a, b, s))
        return tuple(out), dtype
    if op_name == "gather":
        if len(arg_types) != 2:
            raise IRVerifyError(f"gather takes 2 operands, got {len(arg_types)}")
        (shape, dtype), (ishape, idtype) = arg_types
        if not shape:
            raise ShapeError("gather from a 0-d array: there is no axis to index")
        axis = axis_of(len(shape))
        if np.dtype(idtype).kind not in "iu":
            raise DTypeError(f"gather indices must be integers, got {idtype}")
        return tuple(shape[:axis]) + tuple(ishape) + tuple(shape[axis + 1:]), dtype
    if op_name == "concatenate":
        if not arg_types or len(arg_types) > 255:
            raise IRVerifyError(f"concatenate takes 1 to 255 operands, got {len(arg_types)}")
        first = arg_types[0][0]
        if not first:
            raise ShapeError("concatenate of 0-d arrays: there is no axis to join along")
        axis = axis_of(len(first))
        total = 0
        for shape, _ in arg_types:
            if len(shape) != len(first) or any(s != f for k, (s, f) in enumerate(zip(shape, first, strict=True))
                                               if k != axis):
                raise ShapeError(f"concatenate: shapes {[s for s, _ in arg_types]} differ outside axis {axis}")
            total += shape[axis]
        dtype = np.result_type(*[np.dtype(d) for _, d in arg_types]).name
        return tuple(first[:axis]) + (total,) + tuple(first[axis + 1:]), dtype
    if op_name == "while_loop":
        return _loop_type(arg_types, attrs)
    raise IRVerifyError(f"{op_name}: its type comes from the loop node it reads (loop_result_type)")


def _loop_type(arg_types: list[tuple[tuple[int, ...], str]], attrs: dict) -> tuple[tuple[int, ...], str]:
    """A while_loop's operands are its initial carry then the outer values its sub-programs read;
    the cond gives one 0-d bool, the body the next carry with the same types. The node's own type
    is a 0-d bool placeholder: its value is the carried tuple, typed by its loop_result nodes."""
    from noodle.errors import IRVerifyError  # noqa: PLC0415
    from noodle.ir.graph import SubProgram  # noqa: PLC0415 - graph imports this module

    cond, body, carry = attrs.get("cond"), attrs.get("body"), attrs.get("carry")
    if not isinstance(cond, SubProgram) or not isinstance(body, SubProgram):
        raise IRVerifyError("while_loop needs cond and body sub-programs")
    n = len(arg_types)
    if not isinstance(carry, int) or isinstance(carry, bool) or not 1 <= carry <= n or n > 255:
        raise IRVerifyError(f"while_loop carry count {carry!r} does not fit its {n} operands")
    want = [(tuple(s), d) for s, d in arg_types]
    for name, sub, n_out in (("cond", cond, 1), ("body", body, carry)):
        p = sub.program
        if p.n_inputs != n or len(p.outputs) != n_out:
            raise IRVerifyError(f"while_loop {name} takes {p.n_inputs} inputs and gives {len(p.outputs)} "
                                f"outputs; the loop passes {n} and expects {n_out}")
        if [(tuple(s), d) for s, d in p.input_types()] != want:
            raise IRVerifyError(f"while_loop {name} inputs {p.input_types()} differ from the operands {want}")
    c = cond.program.nodes[cond.program.outputs[0]]
    if c.shape != () or c.dtype != "bool":
        raise IRVerifyError(f"while_loop cond gives {c.dtype}{list(c.shape)}, not a 0-d bool")
    for k in range(carry):
        o = body.program.nodes[body.program.outputs[k]]
        if (o.shape, o.dtype) != want[k]:
            raise IRVerifyError(f"while_loop body gives {o.dtype}{list(o.shape)} for carried value {k}, "
                                f"which enters as {want[k][1]}{list(want[k][0])}")
    return (), "bool"
