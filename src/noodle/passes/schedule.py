"""Units of execution of a fused program, in a valid order.

A *unit* is either one fused region (all nodes sharing a ``group``) or one
ungrouped computing node. Both the memory planner and the JIT's lowering walk
units: only values that leave a unit are ever materialized.

Example::

    >>> from noodle.ir.graph import Builder
    >>> from noodle.passes.fuse import fuse
    >>> b = Builder(); x = b.input(0, (8,), "float64")
    >>> y = b.add("exp", b.add("negative", x))
    >>> [u.members for u in units(fuse(b.finish([y])))]
    [(1, 2)]
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from noodle.errors import IRVerifyError
from noodle.ir.graph import Program


@dataclass(frozen=True)
class Unit:
    """One step: ``members`` (node indices, ascending), their ``group`` (None: a lone node),
    ``inputs`` (values from outside, in first-use order) and ``outputs`` (values used
    outside or returned)."""

    group: int | None
    members: tuple[int, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def units(program: Program) -> list[Unit]:
    """The program's units in a dependency-respecting order (IRVerifyError on a cycle)."""
    nodes = program.nodes
    cached = program.meta.get("_units")
    if cached is not None:
        return cached
    by_group: dict[int, list[int]] = {}
    raw: list[tuple[int | None, list[int]]] = []
    for i, node in enumerate(nodes):
        if node.op in ("input", "const"):
            continue
        g = node.attr("group")
        if g is None:
            raw.append((None, [i]))
        elif g in by_group:
            by_group[g].append(i)
        else:
            by_group[g] = [i]
            raw.append((g, by_group[g]))
    unit_of: dict[int, int] = {}
    for k, (_, members) in enumerate(raw):
        for m in members:
            unit_of[m] = k
    users = program.users()
    outputs = set(program.outputs)
    built: list[Unit] = []
    deps: list[set[int]] = []
    for g, members in raw:
        mset = set(members)
        ins: list[int] = []
        seen: set[int] = set()
        d: set[int] = set()
        for m in members:
            for a in nodes[m].args:
                if a not in mset and a not in seen:
                    seen.add(a)
                    ins.append(a)
                    if a in unit_of:
                        d.add(unit_of[a])
        outs = tuple(m for m in members if m in outputs or any(u not in mset for u in users[m]))
        built.append(Unit(g, tuple(members), tuple(ins), outs))
        deps.append(d)
    # Kahn's algorithm, lowest first node first: deterministic
    indeg = [len(d) for d in deps]
    rdeps: list[list[int]] = [[] for _ in built]
    for k, d in enumerate(deps):
        for j in d:
            rdeps[j].append(k)
    ready = [(built[k].members[0], k) for k in range(len(built)) if indeg[k] == 0]
    heapq.heapify(ready)
    order: list[Unit] = []
    while ready:
        _, k = heapq.heappop(ready)
        order.append(built[k])
        for j in rdeps[k]:
            indeg[j] -= 1
            if indeg[j] == 0:
                heapq.heappush(ready, (built[j].members[0], j))
    if len(order) != len(built):
        raise IRVerifyError("fused regions depend on each other in a cycle; the fusion pass is wrong")
    program.meta["_units"] = order
    return order


__all__ = ["Unit", "units"]
