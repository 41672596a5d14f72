"""The NIR verifier: every invariant a pass, the tracer or ``nbc.loads`` must keep.

Why re-derive types instead of trusting them: a pass that forgets to update a
shape, or hostile bytecode that declares one, would otherwise reach a backend
that indexes memory by it. The verifier re-infers every node's shape and dtype
from its operands and compares.

Example::

    >>> from noodle.ir.graph import Builder
    >>> from noodle.ir.verify import verify
    >>> b = Builder(); x = b.input(0, (2,), "float32")
    >>> verify(b.finish([b.add("negative", x)]))
"""

from __future__ import annotations

import numpy as np

from noodle.errors import IRVerifyError, NoodleError
from noodle.ir.graph import ATTRS, DTYPE_SET, MAX_NDIM, Program, infer
from noodle.ir.ops import OPS, OpKind

MAX_DIM = 2**40
MAX_ELEMENTS = 2**48


def verify(program: Program) -> None:
    """Raise :class:`IRVerifyError` naming the first broken invariant of ``program``."""
    nodes = program.nodes
    if not isinstance(program.n_inputs, int) or program.n_inputs < 0:
        raise IRVerifyError(f"n_inputs must be a non-negative int, got {program.n_inputs!r}")
    for i, c in enumerate(program.consts):
        if not isinstance(c, np.ndarray) or c.dtype.name not in DTYPE_SET:
            raise IRVerifyError(f"constant {i} is not an array of a supported dtype")
    seen_inputs: set[int] = set()
    for i, node in enumerate(nodes):
        where = f"node %{i} ({node.op})"
        row = OPS.get(node.op)
        if row is None:
            raise IRVerifyError(f"{where}: unknown op")
        if node.dtype not in DTYPE_SET:
            raise IRVerifyError(f"{where}: unsupported dtype {node.dtype!r}")
        if len(node.shape) > MAX_NDIM or any((not isinstance(d, int)) or d < 0 or d > MAX_DIM
                                              for d in node.shape):
            raise IRVerifyError(f"{where}: invalid shape {node.shape}")
        span = 1
        for d in node.shape:
            span *= max(d, 1)
        if span > MAX_ELEMENTS:
            raise IRVerifyError(f"{where}: shape {node.shape} spans more than {MAX_ELEMENTS} elements")
        allowed = ATTRS.get(node.op, frozenset())
        if node.op not in ("input", "const"):
            allowed = allowed | {"group"}
        keys = [k for k, _ in node.attrs]
        if len(set(keys)) != len(keys) or keys != sorted(keys):
            raise IRVerifyError(f"{where}: attributes must be unique and sorted, got {keys}")
        for k in keys:
            if k not in allowed:
                raise IRVerifyError(f"{where}: unexpected attribute {k!r} (allowed: {sorted(allowed)})")
        group = node.attr("group")
        if group is not None and (not isinstance(group, int) or isinstance(group, bool) or group < 0):
            raise IRVerifyError(f"{where}: group must be a non-negative int")
        for a in node.args:
            if not isinstance(a, int) or not 0 <= a < i:
                raise IRVerifyError(f"{where}: operand {a!r} does not name an earlier value (SSA)")
        if len(node.args) != row.arity:
            raise IRVerifyError(f"{where}: expects {row.arity} operands, has {len(node.args)}")
        if row.kind is OpKind.INPUT:
            idx = node.attr("index")
            if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < program.n_inputs:
                raise IRVerifyError(f"{where}: input index {idx!r} outside 0..{program.n_inputs - 1}")
            if idx in seen_inputs:
                raise IRVerifyError(f"{where}: input {idx} declared twice")
            seen_inputs.add(idx)
            continue
        if row.kind is OpKind.CONST:
            idx = node.attr("index")
            if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < len(program.consts):
                raise IRVerifyError(f"{where}: constant index {idx!r} outside the pool")
            c = program.consts[idx]
            if tuple(c.shape) != node.shape or c.dtype.name != node.dtype:
                raise IRVerifyError(f"{where}: declared {node.shape} {node.dtype}, pool has "
                                    f"{c.shape} {c.dtype.name}")
            continue
        for name in ATTRS.get(node.op, ()):
            if name not in keys and name not in ("keepdims",):
                if name == "axis":
                    continue
                raise IRVerifyError(f"{where}: missing attribute {name!r}")
        _check_attr_types(where, node.op, dict(node.attrs))
        types = [(nodes[a].shape, nodes[a].dtype) for a in node.args]
        try:
            shape, dtype = infer(node.op, types, dict(node.attrs))
        except NoodleError as exc:
            raise IRVerifyError(f"{where}: {exc}") from None
        if shape != node.shape or dtype != node.dtype:
            raise IRVerifyError(f"{where}: declared {node.shape} {node.dtype}, operands give {shape} {dtype}")
    if len(seen_inputs) != program.n_inputs:
        missing = sorted(set(range(program.n_inputs)) - seen_inputs)
        raise IRVerifyError(f"inputs {missing} are never declared")
    if not program.outputs:
        raise IRVerifyError("a program needs at least one output")
    for o in program.outputs:
        if not isinstance(o, int) or not 0 <= o < len(nodes):
            raise IRVerifyError(f"output {o!r} does not name a value")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_attr_types(where: str, op: str, attrs: dict) -> None:
    if op in ("sum", "mean", "max", "min"):
        axis = attrs.get("axis")
        if axis is not None and not (isinstance(axis, tuple) and all(_is_int(a) for a in axis)):
            raise IRVerifyError(f"{where}: axis must be None or a tuple of ints")
        if not isinstance(attrs.get("keepdims", False), bool):
            raise IRVerifyError(f"{where}: keepdims must be a bool")
    for name in ("shape", "axes"):
        if name in attrs:
            v = attrs[name]
            if not (isinstance(v, tuple) and len(v) <= MAX_NDIM and all(_is_int(a) for a in v)):
                raise IRVerifyError(f"{where}: {name} must be a tuple of ints")
    if op == "astype" and not isinstance(attrs.get("dtype"), str):
        raise IRVerifyError(f"{where}: dtype must be a dtype name")


__all__ = ["verify"]
