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

from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

import numpy as np

from noodle.errors import OpIndexError
from noodle.ir.graph import Node, Program
from noodle.ir.ops import OPS, OpKind
from noodle.ir.reduction import reduce_values


def eval_node(node: Node, vals: Sequence[Any], xp: Any = np) -> Any:
    """Evaluate one computing node on already computed operand values."""
    row = OPS[node.op]
    kind = row.kind
    if kind is OpKind.LOOP:
        if node.op == "loop_result":
            return vals[0][node.attr("item")]
        return run_loop(node, vals, lambda sub, args: run_subprogram(sub, args, xp))
    if node.op == "power" and node.attr("scalar", False):
        out = scalar_power(vals[0], vals[1], xp)
    elif kind in (OpKind.UNARY, OpKind.BINARY, OpKind.TERNARY):
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
        out = vals[0].astype(node.attr("dtype"), order=node.attr("order", "K"))
    elif node.op == "slice":
        out = vals[0][slices(node)]   # a view, as NumPy's basic slicing gives
    elif node.op == "gather":
        out = gather(vals[0], vals[1], node.attr("axis"), xp, node.attr("subscript", False))
    elif node.op == "concatenate":
        out = xp.concatenate([v.astype(node.dtype, copy=False) for v in vals], axis=node.attr("axis"))
    else:  # pragma: no cover - verify() rejects anything else
        raise AssertionError(f"cannot evaluate {node.op}")
    if not isinstance(out, xp.ndarray):
        out = xp.asarray(out)
    if out.dtype.name != node.dtype:
        # NumPy agrees with the inferred dtype by construction; CuPy may differ on corners
        out = out.astype(node.dtype)
    if node.attr("inplace", False) and out.ndim >= 2 and out.strides != vals[0].strides:
        kept = xp.empty_like(vals[0], dtype=out.dtype)   # ``a op= b`` writes into a's buffer: a's layout
        kept[...] = out
        out = kept
    return out


def scalar_power(a: Any, b: Any, xp: Any = np) -> Any:
    """``a ** b`` as NumPy computes it for two scalars (the tracer marks such a ``power``).

    Why: NumPy's scalar math calls C's ``pow``; its ufunc ``np.power`` has SIMD loops and fast
    paths (``x ** 2`` as a square) whose results differ in the last bit for about 5% of float64
    and 20% of float32 operands here. A plain function's ``s ** y`` on NumPy scalars (a sum, an
    element ``x[i]``, an argument) gets the scalar result, so the program must too: on the host,
    from the values (CuPy's 0-d arrays are read back)."""
    def host(v: Any) -> Any:
        v = v.get() if hasattr(v, "get") and not isinstance(v, np.generic | np.ndarray) else v
        return np.asarray(v)[()]

    out = host(a) ** host(b)
    return out if xp is np else xp.asarray(out)


def slices(node: Node) -> tuple[slice, ...]:
    """The Python slices of a ``slice`` node, whose bounds are ``slice.indices()``'s: under a
    negative step a stop of -1 means "through 0", and a start of -1 means "nothing" (``x[-8::-1]``
    of five elements). Written back as Python slices, -1 would mean the last element instead."""
    return tuple(_python_slice(a, b, s)
                 for a, b, s in zip(node.attr("starts"), node.attr("stops"), node.attr("steps"), strict=True))


def _python_slice(start: int, stop: int, step: int) -> slice:
    if step > 0:
        return slice(start, stop, step)
    if start < 0:
        return slice(0, 0, step)
    return slice(start, None if stop < 0 else stop, step)


def gather(x: Any, idx: Any, axis: int, xp: Any = np, subscript: bool = False) -> Any:
    """``take(x, idx, axis)`` with NumPy's bounds rule (negative indices count from the end; outside
    ``-n..n-1`` is an error): an :class:`OpIndexError`, which is an ``IndexError`` as NumPy's is.

    Why NumPy's own check on NumPy arrays: its ``take`` checks every index as it gathers, and a
    ``min``/``max`` of the indices first read them twice more (a 1e6-element gather ran at 0.64x
    NumPy's ``x[idx]``). CuPy's ``take`` wraps out-of-range indices instead: checked first.
    ``subscript``: the gather of ``x[..., idx]``, taken as that subscript (NumPy lays its result out
    with the indexed axis outermost, ``take`` in C order: a product of it reads the layout)."""
    n = x.shape[axis]
    if xp is np:
        try:
            if subscript and axis:
                return x[(slice(None),) * axis + (idx,)]
            return np.take(x, idx, axis=axis)
        except IndexError as exc:
            raise OpIndexError(f"{exc} (a gather, x[idx] or nd.take); NumPy raises IndexError too: keep "
                               f"indices within -{n}..{n - 1}") from exc
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < -n or hi >= n:
            bad = lo if lo < -n else hi
            raise OpIndexError(f"index {bad} is out of bounds for axis {axis} with size {n} (a gather, x[idx] "
                               f"or nd.take); NumPy raises IndexError too: keep indices within -{n}..{n - 1}")
    return xp.take(x, idx, axis=axis)


def run_subprogram(program: Program, args: Sequence[Any], xp: Any = np) -> tuple[Any, ...]:
    """Evaluate a loop's cond or body: the interpreter's walk, kept here so that loops have one
    definition that constant folding and the interpreter share (``ir`` may not import ``exec``)."""
    values: list[Any] = [None] * len(program.nodes)
    for i, node in enumerate(program.nodes):
        if node.op == "input":
            values[i] = args[node.attr("index")]
        elif node.op == "const":
            c = program.consts[node.attr("index")]
            values[i] = c if xp is np else xp.asarray(c)
        else:
            values[i] = eval_node(node, [values[a] for a in node.args], xp)
    return tuple(values[o] for o in program.outputs)


#: Set while an untrusted program runs (:func:`noodle.exec.limits.bounded_loops`): called with a
#: ``while_loop`` node as it starts, it returns a function called before every iteration that raises
#: once the run is over its bounds. Why a context variable: the trip count of a loop is data, so it
#: cannot be bounded before the run like shapes are, and ``ir`` may not import ``exec``'s limits; the
#: interpreter's walk and the compiled runner's loop both reach this one function. Unset: unbounded
#: (a user's own jitted code is trusted, and pays one lookup per loop, not per iteration).
LOOP_GUARD: ContextVar[Callable[[Node], Callable[[], None]] | None] = ContextVar("noodle_loop_guard", default=None)


def run_loop(node: Node, vals: Sequence[Any], run: Callable[[Program, tuple], tuple[Any, ...]]) -> tuple[Any, ...]:
    """JAX's ``while_loop``: ``carry = body(carry)`` while ``cond(carry)``; the outer values the
    sub-programs read follow the carry in ``vals``. ``run(sub_program, args)`` evaluates one
    sub-program (the interpreter's walk, or a compiled runner). Returns the final carry."""
    k = node.attr("carry")
    cond, body = node.attr("cond").program, node.attr("body").program
    carry = tuple(vals[:k])
    extra = tuple(vals[k:])
    guard = LOOP_GUARD.get()
    tick = guard(node) if guard is not None else None
    while bool(run(cond, carry + extra)[0]):
        if tick is not None:
            tick()
        carry = tuple(run(body, carry + extra))
    return carry


__all__ = ["LOOP_GUARD", "eval_node", "gather", "run_loop", "run_subprogram", "scalar_power", "slices"]
