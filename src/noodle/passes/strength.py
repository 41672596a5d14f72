"""Strength reduction of ``power`` by constants, exactly where NumPy's own fast paths are.

Why: a ``power`` node costs a libm ``pow`` call per element (and, being a libm op, it keeps a
kernel from computing it inline), while ``x ** 2`` is one multiplication. NumPy itself
special-cases a *scalar* exponent in its float power loop (NumPy 2.x: 2 -> ``x*x``, 0.5 ->
``sqrt``, -1 -> ``1/x``, 1 -> ``x``, 0 -> ``1``), so rewriting exactly those cases gives the
bits the interpreter (which calls ``np.power``) gives, NaN payloads, ``-0.0`` and infinities
included. Nothing else is rewritten for floats: ``x ** 3`` goes through ``pow`` in NumPy and
``x*x*x`` rounds twice, so it differs in the last bit on about a third of inputs.

Integer powers are exact ring arithmetic with wraparound, so any non-negative constant
exponent up to :data:`MAX_INT_POWER` becomes repeated multiplication (square and multiply)
with the same bits. A negative integer exponent is left alone: NumPy raises for it, and so
must the program.

Only a one-element exponent qualifies (NumPy's fast path needs a stride-0 exponent; a full
array of 2.0 goes through ``pow``), and only when the base already has the result's shape.
A base of another dtype is cast to the result dtype first, as NumPy's loop does.

Example::

    >>> from noodle.ir.graph import Builder
    >>> b = Builder(); x = b.input(0, (4,), "float32")
    >>> y = b.add("power", x, b.const(2.0, "float32"))
    >>> [n.op for n in strength_reduce(b.finish([y])).nodes]
    ['input', 'multiply']
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from noodle.ir.graph import Node, Program, infer
from noodle.passes.rewrite import rebuild

MAX_INT_POWER = 8  # largest integer exponent expanded into multiplications (at most 4 of them)

# float exponents NumPy's power loop computes without pow (checked bit for bit in the tests)
_FLOAT_FAST = (2.0, 0.5, -1.0, 1.0, 0.0)


class _Emitter:
    """Appends typed nodes to a new node list (the rewrite inserts nodes, so indices move)."""

    def __init__(self, program: Program) -> None:
        self.nodes: list[Node] = []
        self.consts: list[np.ndarray] = list(program.consts)

    def node(self, node: Node) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def op(self, name: str, *args: int, **attrs: Any) -> int:
        types = [(self.nodes[a].shape, self.nodes[a].dtype) for a in args]
        shape, dtype = infer(name, types, attrs)
        return self.node(Node(name, tuple(args), shape, dtype, tuple(sorted(attrs.items()))))

    def const(self, value: Any, dtype: str) -> int:
        arr = np.array(value, dtype=dtype, order="C", copy=True)
        self.consts.append(arr)
        return self.node(Node("const", (), (), dtype, (("index", len(self.consts) - 1),)))


def _exponent(program: Program, node: Node) -> np.ndarray | None:
    """The exponent as a 0-d array of the result dtype, when it is a one-element constant."""
    e = program.nodes[node.args[1]]
    if e.op != "const":
        return None
    c = program.consts[e.attr("index")]
    if c.size != 1:
        return None
    with np.errstate(all="ignore"):
        return np.asarray(c.reshape(())).astype(node.dtype)


def _int_power(em: _Emitter, x: int, k: int) -> int:
    """x ** k (k >= 2) by square and multiply; in a ring the grouping cannot change the bits."""
    result: int | None = None
    square = x
    while True:
        if k & 1:
            result = square if result is None else em.op("multiply", result, square)
        k >>= 1
        if not k:
            return result if result is not None else square
        square = em.op("multiply", square, square)


def _reduce(em: _Emitter, node: Node, x: int, c: np.ndarray) -> int | None:
    """Emit the cheaper form of ``x ** c`` (x already renumbered); None: keep the power."""
    kind = np.dtype(node.dtype).kind
    if kind == "f":
        value = float(c)
        if value not in _FLOAT_FAST:   # (nan is in nothing)
            return None
    elif kind in "iu":
        value = int(c)
        if value < 0 or value > MAX_INT_POWER:
            return None
    else:
        return None
    if value == 0:
        one = em.const(1, node.dtype)
        return em.op("broadcast_to", one, shape=node.shape) if node.shape else one
    if em.nodes[x].dtype != node.dtype:
        x = em.op("astype", x, dtype=node.dtype)
    if value == 1:
        return x
    if value == 0.5:
        return em.op("sqrt", x)
    if value == -1:
        return em.op("divide", em.const(1, node.dtype), x)
    if kind == "f":   # value == 2
        return em.op("multiply", x, x)
    return _int_power(em, x, int(value))


def strength_reduce(program: Program) -> Program:
    """Rewrite ``power(x, c)`` for a one-element constant ``c`` where NumPy's result is a cheaper op."""
    if not any(n.op == "power" for n in program.nodes):
        return program
    em = _Emitter(program)
    remap: list[int] = []
    changed = False
    for node in program.nodes:
        args = tuple(remap[a] for a in node.args)
        # (a power of two NumPy scalars is C's pow, with no fast paths: kept as it is)
        if node.op == "power" and program.nodes[node.args[0]].shape == node.shape and not node.attr("scalar", False):
            c = _exponent(program, node)
            if c is not None:
                mark = len(em.nodes)
                out = _reduce(em, node, args[0], c)
                if out is not None and (em.nodes[out].shape, em.nodes[out].dtype) == (node.shape, node.dtype):
                    remap.append(out)
                    changed = True
                    continue
                del em.nodes[mark:]   # (defensive: a form of another type is never used)
        remap.append(em.node(replace(node, args=args) if args != node.args else node))
    if not changed:
        return program
    out = Program(em.nodes, em.consts, tuple(remap[o] for o in program.outputs), program.n_inputs,
                  dict(program.meta))
    return rebuild(out)   # drops the exponents no one reads any more


__all__ = ["MAX_INT_POWER", "strength_reduce"]
