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
from noodle.ir.graph import ATTRS, DTYPE_SET, MAX_NDIM, Node, Program, SubProgram, infer, loop_result_type
from noodle.ir.ops import OPS, VARIADIC, OpKind

MAX_DIM = 2**40
MAX_ELEMENTS = 2**48
MAX_LOOP_DEPTH = 8   # loops nested in loops: bounds the recursion hostile bytecode can ask for


def verify(program: Program, _depth: int = 0) -> None:
    """Raise :class:`IRVerifyError` naming the first broken invariant of ``program``.

    Linear in the number of nodes: ``nbc.loads`` runs it on untrusted programs of up to
    ``NOODLE_NBC_MAX_NODES`` instructions, so per-node work is kept small and the type
    re-derivation is memoized per (op, operand types, attributes) within one call.
    """
    nodes = program.nodes
    if not isinstance(program.n_inputs, int) or program.n_inputs < 0:
        raise IRVerifyError(f"n_inputs must be a non-negative int, got {program.n_inputs!r}")
    for i, c in enumerate(program.consts):
        if not isinstance(c, np.ndarray) or c.dtype.name not in DTYPE_SET:
            raise IRVerifyError(f"constant {i} is not an array of a supported dtype")
    seen_inputs: set[int] = set()
    inferred: dict[tuple, tuple[tuple[int, ...], str]] = {}
    for i, node in enumerate(nodes):
        row = OPS.get(node.op)
        if row is None:
            raise IRVerifyError(f"node %{i} ({node.op}): unknown op")
        _check_node_type(i, node)
        _check_node_attrs(i, node)
        _check_operands(i, node, row.arity)
        if row.kind is OpKind.INPUT:
            idx = node.attr("index")
            if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < program.n_inputs:
                raise IRVerifyError(f"node %{i} ({node.op}): input index {idx!r} outside "
                                    f"0..{program.n_inputs - 1}")
            if idx in seen_inputs:
                raise IRVerifyError(f"node %{i} ({node.op}): input {idx} declared twice")
            seen_inputs.add(idx)
            continue
        if row.kind is OpKind.CONST:
            _check_const(i, node, program)
            continue
        if row.kind is OpKind.LOOP:
            _check_loop(i, node, nodes, _depth)
            continue
        _check_inferred(i, node, nodes, inferred)
    if len(seen_inputs) != program.n_inputs:
        missing = sorted(set(range(program.n_inputs)) - seen_inputs)
        raise IRVerifyError(f"inputs {missing} are never declared")
    if not program.outputs:
        raise IRVerifyError("a program needs at least one output")
    for o in program.outputs:
        if not isinstance(o, int) or not 0 <= o < len(nodes):
            raise IRVerifyError(f"output {o!r} does not name a value")


def _check_node_type(i: int, node: Node) -> None:
    """Supported dtype; at most MAX_NDIM dimensions of int sizes; a span NumPy can index."""
    if node.dtype not in DTYPE_SET:
        raise IRVerifyError(f"node %{i} ({node.op}): unsupported dtype {node.dtype!r}")
    shape = node.shape
    if len(shape) > MAX_NDIM:
        raise IRVerifyError(f"node %{i} ({node.op}): invalid shape {shape}")
    span = 1
    for d in shape:
        if type(d) is not int or d < 0 or d > MAX_DIM:
            raise IRVerifyError(f"node %{i} ({node.op}): invalid shape {shape}")
        span *= d if d > 1 else 1
    if span > MAX_ELEMENTS:
        raise IRVerifyError(f"node %{i} ({node.op}): shape {shape} spans more than {MAX_ELEMENTS} elements")


# ``inplace``: the result of ``a op= b`` on a temporary, which NumPy writes into ``a``'s buffer (so it
# has ``a``'s layout, not a fresh array's: passes/layout)
_ALLOWED = {op: (ATTRS.get(op, frozenset()) | ({"group", "inplace"} if op not in ("input", "const") else set()))
            for op in OPS}


def _check_node_attrs(i: int, node: Node) -> None:
    """Attribute names unique, sorted and allowed for the op; ``group`` a non-negative int."""
    attrs = node.attrs
    if not attrs:
        return
    where = f"node %{i} ({node.op})"
    keys = [k for k, _ in attrs]
    if len(set(keys)) != len(keys) or keys != sorted(keys):
        raise IRVerifyError(f"{where}: attributes must be unique and sorted, got {keys}")
    allowed = _ALLOWED[node.op]
    for k in keys:
        if k not in allowed:
            raise IRVerifyError(f"{where}: unexpected attribute {k!r} (allowed: {sorted(allowed)})")
    group = node.attr("group")
    if group is not None and (not isinstance(group, int) or isinstance(group, bool) or group < 0):
        raise IRVerifyError(f"{where}: group must be a non-negative int")


def _check_operands(i: int, node: Node, arity: int) -> None:
    """SSA: every operand names an earlier value; as many operands as the op takes."""
    for a in node.args:
        if not isinstance(a, int) or not 0 <= a < i:
            raise IRVerifyError(f"node %{i} ({node.op}): operand {a!r} does not name an earlier value (SSA)")
    if len(node.args) != arity and not (arity == VARIADIC and 1 <= len(node.args) <= 255):
        raise IRVerifyError(f"node %{i} ({node.op}): expects {arity} operands, has {len(node.args)}")


def _check_loop(i: int, node: Node, nodes: list[Node], depth: int) -> None:
    """A while_loop's sub-programs verify on their own (nesting bounded); a loop_result reads a
    while_loop and has its body's type for the item."""
    where = f"node %{i} ({node.op})"
    if node.op == "loop_result":
        try:
            got = loop_result_type(nodes[node.args[0]], node.attr("item"))
        except NoodleError as exc:
            raise IRVerifyError(f"{where}: {exc}") from None
        if got != (node.shape, node.dtype):
            raise IRVerifyError(f"{where}: declared {node.shape} {node.dtype}, the loop gives {got[0]} {got[1]}")
        return
    if depth >= MAX_LOOP_DEPTH:
        raise IRVerifyError(f"{where}: loops nested more than {MAX_LOOP_DEPTH} deep")
    for name in ("cond", "body"):
        sub = node.attr(name)
        if not isinstance(sub, SubProgram):
            raise IRVerifyError(f"{where}: {name} must be a sub-program")
        try:
            verify(sub.program, depth + 1)
        except IRVerifyError as exc:
            raise IRVerifyError(f"{where}: in its {name}: {exc}") from None
    types = [(nodes[a].shape, nodes[a].dtype) for a in node.args]
    try:
        got = infer(node.op, types, dict(node.attrs))
    except NoodleError as exc:
        raise IRVerifyError(f"{where}: {exc}") from None
    if got != (node.shape, node.dtype):
        raise IRVerifyError(f"{where}: declared {node.shape} {node.dtype}, operands give {got[0]} {got[1]}")


def _check_const(i: int, node: Node, program: Program) -> None:
    where = f"node %{i} ({node.op})"
    idx = node.attr("index")
    if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < len(program.consts):
        raise IRVerifyError(f"{where}: constant index {idx!r} outside the pool")
    c = program.consts[idx]
    if tuple(c.shape) != node.shape or c.dtype.name != node.dtype:
        raise IRVerifyError(f"{where}: declared {node.shape} {node.dtype}, pool has "
                            f"{c.shape} {c.dtype.name}")


def _check_inferred(i: int, node: Node, nodes: list[Node],
                    inferred: dict[tuple, tuple[tuple[int, ...], str]]) -> None:
    """Required attributes present and well typed; the declared type is what the operands give."""
    types = tuple((nodes[a].shape, nodes[a].dtype) for a in node.args)
    # repr, not the values: True == 1 and (0,) == (False,) hash alike, but only one is valid
    key = (node.op, types, repr(node.attrs) if node.attrs else "")
    got = inferred.get(key)
    if got is None:
        where = f"node %{i} ({node.op})"
        keys = [k for k, _ in node.attrs]
        for name in ATTRS.get(node.op, ()):
            if name not in keys and name not in ("keepdims", "axis", "scalar", "order", "subscript"):   # optional
                raise IRVerifyError(f"{where}: missing attribute {name!r}")
        _check_attr_types(where, node.op, dict(node.attrs))
        try:
            got = infer(node.op, list(types), dict(node.attrs))
        except NoodleError as exc:
            raise IRVerifyError(f"{where}: {exc}") from None
        inferred[key] = got
    shape, dtype = got
    if shape != node.shape or dtype != node.dtype:
        raise IRVerifyError(f"node %{i} ({node.op}): declared {node.shape} {node.dtype}, "
                            f"operands give {shape} {dtype}")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_attr_types(where: str, op: str, attrs: dict) -> None:
    if op in ("sum", "mean", "max", "min"):
        axis = attrs.get("axis")
        if axis is not None and not (isinstance(axis, tuple) and all(_is_int(a) for a in axis)):
            raise IRVerifyError(f"{where}: axis must be None or a tuple of ints")
        if not isinstance(attrs.get("keepdims", False), bool):
            raise IRVerifyError(f"{where}: keepdims must be a bool")
    for name in ("shape", "axes", "starts", "stops", "steps"):
        if name in attrs:
            v = attrs[name]
            if not (isinstance(v, tuple) and len(v) <= MAX_NDIM and all(_is_int(a) for a in v)):
                raise IRVerifyError(f"{where}: {name} must be a tuple of ints")
    if op == "astype" and not isinstance(attrs.get("dtype"), str):
        raise IRVerifyError(f"{where}: dtype must be a dtype name")
    if op == "astype" and attrs.get("order", "K") not in ("C", "F", "A", "K"):
        raise IRVerifyError(f"{where}: order must be 'C', 'F', 'A' or 'K', got {attrs.get('order')!r}")


__all__ = ["verify"]
