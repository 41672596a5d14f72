"""Constant folding, common-subexpression elimination, algebraic simplification, DCE.

Why only *exact* rewrites: the interpreter is the spec, and a compiled program
must agree with it bit for bit wherever the backend allows. So ``x*1``, ``x/1``,
``x-0``, ``x**1``, ``--x`` and no-op casts/reshapes are removed, but ``x+0.0``
is kept for floats (``-0.0 + 0.0`` is ``+0.0``) and ``x-x`` is kept (NaN/inf).

Example::

    >>> from noodle.ir.graph import Builder
    >>> b = Builder(); x = b.input(0, (3,), "float64")
    >>> one = b.const(1.0); y = b.add("multiply", x, one)
    >>> [n.op for n in algebraic(b.finish([y])).nodes]
    ['input']
"""

from __future__ import annotations

import numpy as np

from noodle.ir.graph import Node, Program
from noodle.ir.ops import OPS, OpKind
from noodle.ir.semantics import eval_node
from noodle.passes.layout import VIEW_OPS, product_operands, product_pairs
from noodle.passes.rewrite import rebuild

FOLD_LIMIT = 65536  # largest constant (elements) folding may create


def dce(program: Program) -> Program:
    """Drop nodes that no output depends on."""
    return rebuild(program)


def fold_constants(program: Program) -> Program:
    """Evaluate nodes whose operands are all constants (result up to FOLD_LIMIT elements)."""
    nodes = program.nodes
    new_nodes: dict[int, Node] = {}
    extra: list[np.ndarray] = []
    values: dict[int, np.ndarray] = {}
    base = len(program.consts)
    layout = product_operands(program)
    for i, node in enumerate(nodes):
        if node.op == "const":
            values[i] = program.consts[node.attr("index")]
            continue
        if node.op == "input" or not node.args or any(a not in values for a in node.args):
            continue
        if OPS[node.op].kind is OpKind.LOOP:   # its value is the carried tuple, not one array
            continue
        if int(np.prod(node.shape, dtype=np.int64)) > FOLD_LIMIT:
            continue
        try:
            with np.errstate(all="ignore"):
                got = eval_node(node, [values[a] for a in node.args])
            if i in layout and not got.flags.c_contiguous:
                continue   # a product reads this value's layout (passes/layout): constants are C-ordered
            out = np.array(got, order="C", copy=True)
        except Exception:  # noqa: BLE001 - left to run time: it raises there if, and only if, it runs
            # (a gather of constant out-of-range indices in a loop body that never runs must not raise)
            continue
        values[i] = out
        new_nodes[i] = Node("const", (), node.shape, node.dtype, (("index", base + len(extra)),))
        extra.append(out)
    if not new_nodes:
        return program
    return rebuild(program, new_nodes=new_nodes, extra_consts=extra)


def cse(program: Program) -> Program:
    """Merge nodes computing the same op on the same operands (and equal constants)."""
    seen: dict[tuple, int] = {}
    subst: dict[int, int] = {}
    pairs = product_pairs(program)   # one buffer for both operands of a product: syrk, not gemm
    for i, node in enumerate(program.nodes):
        if node.op == "input":
            continue
        args = tuple(subst.get(a, a) for a in node.args)
        attrs = tuple((k, v) for k, v in node.attrs if k != "group")
        if node.op == "const":
            c = program.consts[node.attr("index")]
            key: tuple = ("const", c.dtype.name, c.shape, c.tobytes())
        else:
            key = (node.op, args, attrs, node.shape, node.dtype)
        prev = seen.get(key)
        if prev is None:
            seen[key] = i
        elif frozenset((i, prev)) not in pairs:
            subst[i] = prev
    return rebuild(program, subst) if subst else program


def _same_layout(program: Program, v: int, same: int) -> bool:
    """Whether NumPy gives ``v`` the layout of ``same`` (its value), so that a product of ``v`` may
    read ``same`` instead: a view op keeps it; a fresh array (``x * 1``, ``x.astype(x.dtype)``)
    has the "K" layout of a fresh operand, but not that of an argument, a constant or a view
    (a transpose's copy is C- or Fortran-ordered where the view is strided), nor C order where
    the operand is in another."""
    node, src = program.nodes[v], program.nodes[same]
    if node.op in VIEW_OPS:
        return True
    if src.op in ("input", "const") or src.op in VIEW_OPS:
        return False
    return node.op != "astype" or node.attr("order", "K") == "K"


def _const_value(program: Program, v: int) -> np.ndarray | None:
    node = program.nodes[v]
    return program.consts[node.attr("index")] if node.op == "const" else None


def _all_equal(c: np.ndarray | None, value: float, negzero: bool | None = None) -> bool:
    if c is None or c.size == 0:
        return False
    if not bool(np.all(c == value)):
        return False
    if negzero is not None and c.dtype.kind == "f":
        return bool(np.all(np.signbit(c) == negzero))
    return True


def algebraic(program: Program) -> Program:
    """Exact identities: x*1, 1*x, x/1, x-0 (x-(+0.0) for floats), x+(-0.0) (x+0 for ints), x**1, --x, no-op shape/cast."""
    nodes = program.nodes
    subst: dict[int, int] = {}
    layout = product_operands(program)
    for i, node in enumerate(nodes):
        same = None  # the operand this node equals, if any
        op = node.op
        if OPS[op].kind is OpKind.BINARY:
            a, b = node.args
            ca, cb = _const_value(program, a), _const_value(program, b)
            if op == "multiply":
                same = a if _all_equal(cb, 1) else b if _all_equal(ca, 1) else None
            elif op == "divide" or (op == "power" and not node.attr("scalar", False)):
                same = a if _all_equal(cb, 1) else None
            elif op == "subtract":
                # x - (+0.0) is x, but x - (-0.0) turns -0.0 into +0.0: only a positive zero goes
                same = a if (_all_equal(cb, 0, negzero=False) if cb is not None and cb.dtype.kind == "f"
                             else _all_equal(cb, 0)) else None
            elif op == "add":
                def zero(c: np.ndarray | None) -> bool:
                    if c is None:
                        return False
                    return _all_equal(c, 0, negzero=True) if c.dtype.kind == "f" else _all_equal(c, 0)
                same = a if zero(cb) else b if zero(ca) else None
        elif op == "negative":
            inner = nodes[node.args[0]]
            if inner.op == "negative":
                same = inner.args[0]
        elif op in ("reshape", "broadcast_to"):
            same = node.args[0]
        elif op == "transpose":
            if tuple(node.attr("axes")) == tuple(range(len(node.shape))):
                same = node.args[0]
        elif op == "astype":
            same = node.args[0]
        if same is not None:
            src = nodes[same]
            if src.shape == node.shape and src.dtype == node.dtype and (i not in layout or _same_layout(program, i, same)):
                subst[i] = same
    return rebuild(program, subst) if subst else program


__all__ = ["FOLD_LIMIT", "algebraic", "cse", "dce", "fold_constants"]
