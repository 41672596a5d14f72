"""Shared plumbing for passes: substitute values, drop dead nodes, renumber.

Why one helper: every simplifying pass ends the same way (some values are
replaced by equal earlier ones, then unused nodes go and the rest are
renumbered in order); doing it once keeps each pass a few lines of *what*.
"""

from __future__ import annotations

import numpy as np

from noodle.ir.graph import Node, Program


def rebuild(program: Program, subst: dict[int, int] | None = None,
            new_nodes: dict[int, Node] | None = None, extra_consts: list[np.ndarray] | None = None
            ) -> Program:
    """Apply ``subst`` (value -> equal earlier value) and ``new_nodes`` (value -> replacement node),
    then remove nodes no output depends on (inputs always stay: they are the signature) and
    renumber. ``extra_consts`` are appended to the pool first (indices continue the old pool)."""
    subst = subst or {}
    new_nodes = new_nodes or {}
    consts = list(program.consts) + list(extra_consts or [])

    def resolve(v: int) -> int:
        while v in subst:
            v = subst[v]
        return v

    nodes = []
    for i, node in enumerate(program.nodes):
        node = new_nodes.get(i, node)
        if node.args and subst:
            args = tuple(resolve(a) for a in node.args)
            if args != node.args:
                node = Node(node.op, args, node.shape, node.dtype, node.attrs)
        nodes.append(node)
    outputs = tuple(resolve(o) for o in program.outputs)
    live = [False] * len(nodes)
    for o in outputs:
        live[o] = True
    for i in range(len(nodes) - 1, -1, -1):
        if nodes[i].op == "input":
            live[i] = True
        if live[i]:
            for a in nodes[i].args:
                live[a] = True
    renumber: dict[int, int] = {}
    kept: list[Node] = []
    used_consts: dict[int, int] = {}
    new_pool: list[np.ndarray] = []
    for i, node in enumerate(nodes):
        if not live[i] or i in subst:
            continue
        if node.op == "const":
            old = node.attr("index")
            if old not in used_consts:
                used_consts[old] = len(new_pool)
                new_pool.append(consts[old])
            node = node.with_attr("index", used_consts[old])
        elif node.args:
            args = tuple(renumber[a] for a in node.args)
            if args != node.args:
                node = Node(node.op, args, node.shape, node.dtype, node.attrs)
        renumber[i] = len(kept)
        kept.append(node)
    meta = {k: v for k, v in program.meta.items() if not k.startswith("_")}
    return Program(kept, new_pool, tuple(renumber[o] for o in outputs), program.n_inputs, meta)


__all__ = ["rebuild"]
