"""Which values a product's bits depend on the memory layout of.

Why: NumPy's ``matmul`` picks its BLAS call from its operands' strides and from whether they are
one buffer: a C-ordered matrix goes to one kernel, a Fortran-ordered one (a transpose, a copy of
one) to another, a vector with a step to NumPy's loop without BLAS, ``x @ x.T`` on one buffer to
``syrk``. Each sums in its own order, so the product differs in the last bits (a jitted
``a.T.copy() @ v`` differed from the plain function's). Every other op gives the same values in any
layout, so the passes may turn a fresh array into a view (``x * 1`` into ``x``, ``x.copy()`` into
``x``), merge two equal arrays into one buffer, or fold a view into a C-ordered constant, *except*
where the value reaches a product's operand: there each keeps the layout NumPy gives it.

Example::

    >>> from noodle.ir.graph import Builder
    >>> b = Builder(); a = b.input(0, (3, 3), "float64"); t = b.add("transpose", a, axes=(1, 0))
    >>> p = b.finish([b.add("matmul", a, t)])
    >>> sorted(product_operands(p))
    [0, 1]
"""

from __future__ import annotations

from noodle.ir.graph import Program
from noodle.ir.ops import OPS, OpKind

#: ops whose fresh result NumPy allocates in the "K" order of their operands
_FOLLOWS = (OpKind.UNARY, OpKind.BINARY, OpKind.TERNARY)

#: ops whose result is a view of their operand's memory (or, for a reshape NumPy cannot view, a
#: C-ordered copy that NumPy's own reshape makes too): the layout passes through them
VIEW_OPS = frozenset({"transpose", "reshape", "slice", "broadcast_to"})


def through_views(program: Program, v: int) -> list[int]:
    """``v`` and each value it is a view of, back to the value that owns the memory."""
    out = [v]
    nodes = program.nodes
    while nodes[v].op in VIEW_OPS:
        v = nodes[v].args[0]
        out.append(v)
    return out


def product_operands(program: Program) -> set[int]:
    """Every value whose layout a ``matmul`` of ``program`` reads: its operands, what they view
    and, for a fresh elementwise result or a concatenation of two or more dimensions (NumPy
    allocates it in the "K" order of its operands), the operands whose layout it follows; a
    reduction, a product or a C-ordered copy starts a layout of its own. In a loop body, what it
    carries (the next iteration's values, and the loop's results)."""
    nodes = program.nodes
    out: set[int] = set()
    stack = [a for node in nodes if node.op == "matmul" for a in node.args]
    for node in nodes:
        if node.op == "while_loop":   # a value a product inside the loop reads
            for name in ("cond", "body"):
                sub = node.attr(name).program
                stack += [node.args[sub.nodes[v].attr("index")] for v in product_operands(sub)
                          if sub.nodes[v].op == "input"]
    if "loop_carry" in program.meta:
        # a loop body: what it carries is the next iteration's operand, or a product's after the loop
        stack += list(program.outputs)
    while stack:
        v = stack.pop()
        if v in out:
            continue
        out.add(v)
        node = nodes[v]
        kind = OPS[node.op].kind
        if node.op in VIEW_OPS:
            stack.append(node.args[0])
        elif node.op == "loop_result":      # the carry: its initial value (the body keeps its own)
            stack.append(nodes[node.args[0]].args[node.attr("item")])
        elif len(node.shape) >= 2 and (kind in _FOLLOWS or node.op == "concatenate"
                                       or (kind is OpKind.CAST and node.attr("order", "K") != "C")):
            # NumPy's concatenate, too, lays its result out as its operands are
            stack.extend(a for a in node.args if nodes[a].shape)
    return out


def product_pairs(program: Program) -> set[frozenset[int]]:
    """Pairs of values that one product reads as its two operands (through views): merging such a
    pair into one buffer would turn NumPy's ``gemm`` into ``syrk``."""
    pairs: set[frozenset[int]] = set()
    for node in program.nodes:
        if node.op == "matmul":
            a, b = node.args
            for x in through_views(program, a):
                for y in through_views(program, b):
                    if x != y:
                        pairs.add(frozenset((x, y)))
    return pairs


__all__ = ["VIEW_OPS", "product_operands", "product_pairs", "through_views"]
