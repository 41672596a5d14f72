"""Fusion: mark which nodes run as one kernel (attr ``group`` on each member).

Three kinds of region, matching what backends compile (``backends/spec.py``):

* **elementwise** chains over one iteration space (the group's shape); operands
  of smaller shapes broadcast in, constants are inlined;
* **map-reduce**: an elementwise region ending in one reduction of a value at
  the region's full shape (``sum(a*b + c)`` never materializes ``a*b + c``);
* **matmul + epilogue**: a product followed by elementwise nodes of the
  product's shape that consume it and nothing else does (bias, activation,
  scaling applied in the product's buffer);
* **row-wise**: reductions over the last axis broadcast back into elementwise
  work on the same rows (softmax, layernorm; :mod:`noodle.passes.rowwise`).

Why an annotation and not new nodes: the fused program stays an ordinary
program, so the interpreter, the verifier and NBC need nothing new, and the
grouping is visible in ``f.nir()``. A merge is refused when it would create a
cycle between regions (a path leaving the region and coming back).

Why the bookkeeping below (linear in program length for the programs tracing produces): the
cycle test asks "does an operand from outside the merged region depend on one of its
members?". Each node carries the set of regions its ancestors belong to as a bitmask over
region ids (regions only ever merge, so a union-find maps an old id to its region), and
each region keeps its outside operands. Joining one region needs only the new node's
operands checked: a region never reaches itself through the outside (every region is kept
that way), and the new node has no users yet. Merging several regions also checks their
outside operands, and only when the cheap union of their dependency masks says it might
matter. The decisions are exactly those of the former all-pairs version (a test compares
them on random programs).

Example::

    >>> from noodle.ir.graph import Builder
    >>> b = Builder(); x = b.input(0, (8,), "float64")
    >>> y = b.add("exp", b.add("negative", x))
    >>> [n.attr("group") for n in fuse(b.finish([y])).nodes]
    [None, 0, 0]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from noodle.ir.graph import Node, Program
from noodle.ir.ops import ELEMENTWISE_KINDS, OPS, OpKind
from noodle.ir.shapes import size
from noodle.passes.rowwise import rowwise_regions


@dataclass
class _Group:
    kind: str                 # "ew" | "mm"
    shape: tuple[int, ...]
    bits: int                 # the region ids merged into this region (a bitmask)
    first: int                # smallest member (the product of an "mm" region)
    closed: bool = False      # ended by a reduction
    tail: int = -1            # mm: the latest value (the only one allowed to escape)
    ext: list[int] = field(default_factory=list)   # operands from outside (may hold members after merges)
    dep: int = 0              # union of the ancestor masks of ``ext`` (a superset of what matters)


class _Regions:
    """Regions, the union-find over their ids, and each value's ancestor-region mask."""

    def __init__(self, program: Program) -> None:
        self.nodes = program.nodes
        self.opaque = [n.op in ("const", "input") for n in self.nodes]
        self.gid: dict[int, int] = {}        # member -> id of the region it joined
        self.parent: list[int] = []          # union-find over region ids
        self.groups: dict[int, _Group] = {}  # root id -> region
        self.anc: list[int] = [0] * len(self.nodes)   # regions among a value's (strict) ancestors
        self.work = 0                        # operands looked at (tests bound it by O(n))

    def find(self, g: int) -> int:
        parent = self.parent
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    def root(self, v: int) -> int | None:
        g = self.gid.get(v)
        return None if g is None else self.find(g)

    def see(self, i: int) -> None:
        """Compute node ``i``'s ancestor mask from its operands (before ``i`` joins anything)."""
        mask = 0
        for a in self.nodes[i].args:
            self.work += 1
            mask |= self.anc[a]
            g = self.gid.get(a)
            if g is not None:
                mask |= 1 << g
        self.anc[i] = mask

    def outside_args(self, i: int, roots: set[int]) -> list[int]:
        return [a for a in self.nodes[i].args if not self.opaque[a] and self.root(a) not in roots]

    def cycle(self, i: int, roots: list[int]) -> bool:
        """True when ``{i}`` plus the regions ``roots`` would not be one region: a path leaves it and
        comes back (an operand from outside depends on a member)."""
        rset = set(roots)
        mask = 0
        for r in roots:
            mask |= self.groups[r].bits
        for a in self.outside_args(i, rset):
            if self.anc[a] & mask:
                return True
        if len(roots) < 2:
            return False   # a region never reaches itself through the outside, and i has no users
        dep = 0
        for r in roots:
            dep |= self.groups[r].dep
        if not dep & mask:
            return False
        for r in roots:
            for a in self.groups[r].ext:
                self.work += 1
                if self.root(a) not in rset and self.anc[a] & mask:
                    return True
        return False

    def new(self, kind: str, i: int, shape: tuple[int, ...]) -> None:
        g = len(self.parent)
        self.parent.append(g)
        grp = _Group(kind, shape, 1 << g, i, tail=i)
        self.groups[g] = grp
        self.gid[i] = g
        self._add_ext(grp, self.outside_args(i, {g}))

    def join(self, i: int, roots: list[int]) -> None:
        """Merge ``roots`` (already checked by :meth:`cycle`) and add ``i``."""
        keep = roots[0]
        grp = self.groups[keep]
        for r in roots[1:]:
            other = self.groups.pop(r)
            self.parent[r] = keep
            grp.bits |= other.bits
            grp.first = min(grp.first, other.first)
            if len(other.ext) > len(grp.ext):
                grp.ext, other.ext = other.ext, grp.ext
            grp.ext.extend(other.ext)
            grp.dep |= other.dep
        if len(roots) > 1 and grp.dep & grp.bits:
            # operands that became members would make later checks look further than needed
            grp.ext = [a for a in grp.ext if self.root(a) != keep]
            self.work += len(grp.ext)
            grp.dep = 0
            for a in grp.ext:
                grp.dep |= self.anc[a]
        self.gid[i] = keep
        self._add_ext(grp, self.outside_args(i, {keep}))

    def _add_ext(self, grp: _Group, args: list[int]) -> None:
        for a in args:
            grp.ext.append(a)
            grp.dep |= self.anc[a]


def _assign(program: Program, rowwise: bool = True) -> tuple[dict[int, int], int]:
    """Each fused node's region number (regions numbered by first member), and the work done
    (``rowwise``: also form row-wise regions)."""
    nodes = program.nodes
    users = program.users()
    outputs = set(program.outputs)
    rs = _Regions(program)
    groups = rs.groups
    for i, node in enumerate(nodes):
        if rs.opaque[i]:
            continue
        rs.see(i)
        kind = OPS[node.op].kind
        if kind in ELEMENTWISE_KINDS and node.shape and size(node.shape) > 0 \
                and not (OPS[node.op].libm and size(node.shape) == 1):
            # (0-d values are scalars: a kernel launch costs more than the interpreter; a
            # one-element exp/log/pow... stays with the interpreter too, so inside a kernel it is
            # an input, never a scalar the kernel would compute with another math library)
            # matmul epilogue first: the product's tail feeds only this node
            joined = False
            for a in node.args:
                r = rs.root(a)
                if r is None:
                    continue
                grp = groups[r]
                if (grp.kind == "mm" and grp.tail == a and grp.shape == node.shape
                        and node.dtype == nodes[grp.first].dtype   # written in the product's buffer
                        and a not in outputs and all(u == i for u in users[a])
                        and not rs.cycle(i, [r])):
                    rs.join(i, [r])
                    grp.tail = i
                    joined = True
                    break
            if joined:
                continue
            cands: list[int] = []
            for a in node.args:
                r = rs.root(a)
                if r is not None and r not in cands:
                    grp = groups[r]
                    if grp.kind == "ew" and not grp.closed and grp.shape == node.shape:
                        cands.append(r)
            chosen: list[int] = []
            if cands:
                if not rs.cycle(i, cands):
                    chosen = cands
                elif len(cands) > 1:
                    for r in cands:
                        if not rs.cycle(i, [r]):
                            chosen = [r]
                            break
            if chosen:
                rs.join(i, chosen)
            else:
                rs.new("ew", i, node.shape)
        elif kind is OpKind.REDUCE:
            x = node.args[0]
            r = rs.root(x)
            if r is not None:
                grp = groups[r]
                if grp.kind == "ew" and not grp.closed and grp.shape == nodes[x].shape:
                    rs.join(i, [r])   # its only operand is a member: no cycle possible
                    grp.closed = True
        elif kind is OpKind.MATMUL and size(node.shape) > 0:
            rs.new("mm", i, node.shape)
    region = {i: rs.find(g) for i, g in rs.gid.items()}
    # row-wise regions (softmax, layernorm) take their members from the regions above
    if rowwise:
        blocked = frozenset(i for i, r in region.items() if groups[r].kind == "mm")
        rs.work += rowwise_regions(program, region, len(rs.parent), blocked)
    rs.work += _break_region_cycles(program, region)
    # number regions in order of first member, so text and bytecode are stable
    first: dict[int, int] = {}
    for i, r in region.items():
        first.setdefault(r, i)
    renum = {r: k for k, r in enumerate(sorted(first, key=first.__getitem__))}
    return {i: renum[r] for i, r in region.items()}, rs.work


def _break_region_cycles(program: Program, region: dict[int, int]) -> int:
    """Split regions until no two depend on each other (``region``: node -> region, updated).

    Why: each region is checked when it forms (no path leaves it and comes back), but two
    regions can still need each other (a1 -> b1 in one direction, b2 -> a2 in the other, with
    a1, a2 and b1, b2 unrelated inside their regions), and then no order runs them. When that
    happens the latest-starting region of the knot runs node by node instead (each node alone,
    as it would have been without merges), and the knot is checked again on its own, until no
    knot is left. Returns the work done (nodes and operands looked at).
    """
    nodes = program.nodes
    next_id = max(region.values(), default=-1) + 1
    pending, work = _knots(nodes, region, None)
    while pending:
        knot = pending.pop()
        first: dict[int, int] = {}
        count: dict[int, int] = {}
        for v in knot:
            r = region.get(v)
            if r is not None:
                first.setdefault(r, v)
                count[r] = count.get(r, 0) + 1
        # a cycle passes through a region of two or more nodes (a lone node cannot close one)
        latest = max((r for r in first if count[r] > 1), key=first.__getitem__)
        for v in knot:
            if region.get(v) == latest:
                if OPS[nodes[v].op].kind is OpKind.REDUCE:
                    del region[v]
                else:
                    region[v] = next_id
                    next_id += 1
        more, w = _knots(nodes, region, set(knot))
        pending.extend(more)
        work += w
    return work


def _knots(nodes: list, region: dict[int, int], only: set[int] | None) -> tuple[list[list[int]], int]:
    """The nodes of each strongly connected set of two or more units (a region, or a lone
    node), among the nodes ``only`` (None: all); Tarjan's algorithm, iterative: linear.
    Also returns the work done."""
    unit_of: dict[int, int] = {}     # unit key (region r >= 0, lone node v: -1 - v) -> dense id
    members: list[list[int]] = []
    succ: list[set[int]] = []
    work = 0
    for v in (range(len(nodes)) if only is None else sorted(only)):
        node = nodes[v]
        if node.op in ("input", "const"):
            continue
        r = region.get(v)
        u = unit_of.setdefault(-1 - v if r is None else r, len(members))
        if u == len(members):
            members.append([])
            succ.append(set())
        members[u].append(v)
        for a in node.args:
            work += 1
            if only is not None and a not in only:
                continue
            ra = region.get(a)
            w = unit_of.get(-1 - a if ra is None else ra)
            if w is not None and w != u:   # (None: an input or a constant)
                succ[w].add(u)
    n = len(members)
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    found: list[list[int]] = []
    counter = 0
    for start in range(n):
        if index[start] >= 0:
            continue
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack[start] = True
        frames = [(start, iter(succ[start]))]
        while frames:
            v, it = frames[-1]
            for w in it:
                if index[w] < 0:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = True
                    frames.append((w, iter(succ[w])))
                    break
                if on_stack[w] and index[w] < low[v]:
                    low[v] = index[w]
            else:
                frames.pop()
                if frames:
                    parent = frames[-1][0]
                    if low[v] < low[parent]:
                        low[parent] = low[v]
                if low[v] == index[v]:
                    w = stack.pop()
                    on_stack[w] = False
                    if w != v:
                        comp = [w]
                        while w != v:
                            w = stack.pop()
                            on_stack[w] = False
                            comp.append(w)
                        found.append([m for c in comp for m in members[c]])
    return found, work


def _with_group(node: Node, group: int | None) -> Node:
    attrs = node.attrs
    for k, _ in attrs:
        if k == "group":
            attrs = tuple(item for item in attrs if item[0] != "group")
            break
    if group is not None:
        # attributes stay sorted by name (equal nodes compare equal)
        attrs = (*attrs, ("group", group)) if not attrs or attrs[-1][0] < "group" \
            else tuple(sorted((*attrs, ("group", group)), key=lambda item: item[0]))
    return node if attrs == node.attrs else Node(node.op, node.args, node.shape, node.dtype, attrs)


def fuse(program: Program, rowwise: bool = True) -> Program:
    """Return a copy of ``program`` with ``group`` attributes marking fused regions (``rowwise=False``:
    without row-wise regions, as the elementwise/map-reduce/matmul rules alone decide)."""
    assigned, _work = _assign(program, rowwise)
    out = program.copy()
    out.meta = {k: v for k, v in program.meta.items() if not k.startswith("_")}
    out.nodes = [_with_group(n, assigned.get(i)) for i, n in enumerate(program.nodes)]
    return out


__all__ = ["fuse"]
