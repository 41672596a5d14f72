"""Row-wise regions: reductions over the last axis broadcast back into elementwise work on the same rows.

Why: ``e = exp(x - x.max(-1, keepdims=True)); e / e.sum(-1, keepdims=True)`` (softmax), layernorm
and normalizations are, for the other fusion rules, four or five regions, each a pass over the
whole array. As one region a backend walks each row from cache: two or three passes over a row
that fits in L2, parallel over rows.

The row space of a region is ``P + (L,)``. Each node has one role, read from its own shape and
op (so there is no guessing): an elementwise node of shape ``P + (L,)`` (``L > 1``, rank >= 2)
is *full*; an elementwise node of shape ``P + (1,)`` is a *row* value; a float reduction over
the last axis of a ``P + (L,)`` value is a *reduction* (a row value; with ``keepdims=False`` of
shape ``P``, and then only a ``reshape`` back to ``P + (1,)`` brings it to the rows again).
Neighbours with the same ``P`` (and ``L``) are joined by union-find; a component becomes one
region when it holds a reduction whose result is used inside it (else the ordinary map-reduce
fusion already does as well), its full nodes agree on ``L``, and no path leaves it and comes
back (ancestor bitmasks over components, as in :mod:`noodle.passes.fuse`). All linear in the
program's length. Matmul epilogues stay with their product (BLAS writes them in place).

Example::

    >>> from noodle.ir.graph import Builder
    >>> b = Builder(); x = b.input(0, (4, 8), "float64")
    >>> m = b.add("max", x, axis=(1,), keepdims=True)
    >>> y = b.add("subtract", x, m)
    >>> prog = b.finish([y])
    >>> region = {}
    >>> _ = rowwise_regions(prog, region, 0, frozenset())
    >>> sorted(region)
    [1, 2]
"""

from __future__ import annotations

from noodle.ir.graph import Node, Program
from noodle.ir.ops import ELEMENTWISE_KINDS, OPS, OpKind
from noodle.ir.shapes import size

_FLOATS = ("float32", "float64")


def _last_axis_reduction(node: Node, nodes: list[Node]) -> tuple[tuple[int, ...], int] | None:
    """(P, L) when ``node`` reduces a float ``P + (L,)`` value over its last axis (rank >= 2, L > 1)."""
    src = nodes[node.args[0]]
    nd = len(src.shape)
    if nd < 2 or src.shape[-1] < 2 or src.dtype not in _FLOATS or size(src.shape) == 0:
        return None
    axis = node.attr("axis")
    if axis is None or len(axis) != 1 or int(axis[0]) % nd != nd - 1:
        return None
    return tuple(src.shape[:-1]), src.shape[-1]


def _role(i: int, nodes: list[Node]) -> tuple[str, tuple[int, ...], int] | None:
    """("full" | "row" | "red", P, L or 0 when unknown) or None when node ``i`` cannot join."""
    node = nodes[i]
    kind = OPS[node.op].kind
    shape = node.shape
    if kind in ELEMENTWISE_KINDS:
        if len(shape) < 2 or size(shape) == 0:
            return None
        if shape[-1] > 1:
            return "full", tuple(shape[:-1]), shape[-1]
        return "row", tuple(shape[:-1]), 0
    if kind is OpKind.REDUCE:
        pl = _last_axis_reduction(node, nodes)
        return None if pl is None else ("red", pl[0], pl[1])
    if node.op == "reshape":
        src = nodes[node.args[0]]
        if OPS[src.op].kind is OpKind.REDUCE and not src.attr("keepdims", False):
            pl = _last_axis_reduction(src, nodes)
            if pl is not None and tuple(shape) == (*pl[0], 1):
                return "row", pl[0], 0
    return None


def _linked(i: int, ri: tuple, a: int, ra: tuple, nodes: list[Node]) -> bool:
    """Whether operand ``a`` of node ``i`` belongs to the same row-wise region as ``i``."""
    ki, pi, li = ri
    ka, pa, la = ra
    if pi != pa:
        return False
    if ka == "red" and not nodes[a].attr("keepdims", False):
        return nodes[i].op == "reshape"          # a reduction without keepdims: only via its reshape
    if ki == "red":
        return ka == "full" and la == li
    if ki == "full":
        return ka == "row" or la == li            # full: same L; row values broadcast over the row
    return ka in ("row", "red")                   # row values from row values


def rowwise_regions(program: Program, region: dict[int, int], next_id: int, blocked: frozenset[int]) -> int:
    """Turn row-wise components into regions: ``region`` (node -> region id) is updated, new
    regions numbered from ``next_id``; nodes in ``blocked`` (matmul regions) never join. Regions
    left holding only reductions are dissolved. Returns the work done (operands looked at)."""
    nodes = program.nodes
    n = len(nodes)
    roles: list[tuple | None] = [None] * n
    parent = list(range(n))

    def find(v: int) -> int:
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    work = 0
    for i, node in enumerate(nodes):
        if node.op in ("input", "const") or i in blocked:
            continue
        ri = _role(i, nodes)
        roles[i] = ri
        if ri is None:
            continue
        for a in node.args:
            work += 1
            ra = roles[a]
            if ra is not None and _linked(i, ri, a, ra, nodes):
                x, y = find(i), find(a)
                if x != y:
                    parent[max(x, y)] = min(x, y)
    comps: dict[int, list[int]] = {}
    for i in range(n):
        if roles[i] is not None:
            comps.setdefault(find(i), []).append(i)
    cands: dict[int, int] = {}      # component root -> candidate index (bit)
    for root, members in comps.items():
        if len(members) < 2:
            continue
        lengths = {roles[m][2] for m in members if roles[m][0] != "row"}   # type: ignore[index]
        if len(lengths) != 1:
            continue
        mset = set(members)
        feeds = any(OPS[nodes[a].op].kind is OpKind.REDUCE and a in mset
                    for m in members for a in nodes[m].args)
        if feeds:
            cands[root] = len(cands)
    if not cands:
        return work
    comp_of = {m: cands[r] for r, members in comps.items() if r in cands for m in members}
    anc = [0] * n
    bad: set[int] = set()
    for i, node in enumerate(nodes):
        mask = 0
        c = comp_of.get(i)
        for a in node.args:
            work += 1
            mask |= anc[a]
            ca = comp_of.get(a)
            if ca is not None:
                mask |= 1 << ca
            if c is not None and ca != c and anc[a] >> c & 1:
                bad.add(c)           # a path leaves the component and comes back
        anc[i] = mask
    old_roots: set[int] = set()
    for root, c in cands.items():
        if c in bad:
            continue
        for m in comps[root]:
            if m in region:
                old_roots.add(region[m])
            region[m] = next_id + c
    if old_roots:
        left: dict[int, list[int]] = {}
        for v, r in region.items():
            if r in old_roots:
                left.setdefault(r, []).append(v)
        for members in left.values():
            if all(OPS[nodes[v].op].kind is OpKind.REDUCE for v in members):
                for v in members:
                    del region[v]
    return work


def is_rowwise(program: Program, members: tuple[int, ...]) -> bool:
    """Whether a fused region's ``members`` form a row-wise region: a reduction inside it feeds
    another member (no other kind of region has that)."""
    nodes = program.nodes
    mset = set(members)
    for m in members:
        for a in nodes[m].args:
            if a in mset and OPS[nodes[a].op].kind is OpKind.REDUCE:
                return True
    return False


__all__ = ["is_rowwise", "rowwise_regions"]
