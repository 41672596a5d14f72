"""Fusion: mark which nodes run as one kernel (attr ``group`` on each member).

Three kinds of region, matching what backends compile (``backends/spec.py``):

* **elementwise** chains over one iteration space (the group's shape); operands
  of smaller shapes broadcast in, constants are inlined;
* **map-reduce**: an elementwise region ending in one reduction of a value at
  the region's full shape (``sum(a*b + c)`` never materializes ``a*b + c``);
* **matmul + epilogue**: a product followed by elementwise nodes of the
  product's shape that consume it and nothing else does (bias, activation,
  scaling applied in the product's buffer).

Why an annotation and not new nodes: the fused program stays an ordinary
program, so the interpreter, the verifier and NBC need nothing new, and the
grouping is visible in ``f.nir()``. A merge is refused when it would create a
cycle between regions (a path leaving the region and coming back).

Example::

    >>> from noodle.ir.graph import Builder
    >>> b = Builder(); x = b.input(0, (8,), "float64")
    >>> y = b.add("exp", b.add("negative", x))
    >>> [n.attr("group") for n in fuse(b.finish([y])).nodes]
    [None, 0, 0]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from noodle.ir.graph import Program
from noodle.ir.ops import ELEMENTWISE_KINDS, OPS, OpKind
from noodle.ir.shapes import size


@dataclass
class _Group:
    kind: str                 # "ew" | "mm"
    shape: tuple[int, ...]
    members: set[int] = field(default_factory=set)
    closed: bool = False      # ended by a reduction
    tail: int = -1            # mm: the latest value (the only one allowed to escape)


def fuse(program: Program) -> Program:
    """Return a copy of ``program`` with ``group`` attributes marking fused regions."""
    nodes = program.nodes
    users = program.users()
    outputs = set(program.outputs)
    is_const = [n.op in ("const", "input") for n in nodes]
    ancestors: list[set[int]] = []
    for node in nodes:
        anc: set[int] = set()
        for a in node.args:
            anc.add(a)
            anc |= ancestors[a]
        ancestors.append(anc)
    groups: dict[int, _Group] = {}
    group_of: dict[int, int] = {}
    next_id = 0

    def external_args_hit(members: set[int]) -> bool:
        """True when some member's operand from outside depends on a member (a cycle)."""
        for m in members:
            for a in nodes[m].args:
                if a not in members and not is_const[a] and ancestors[a] & members:
                    return True
        return False

    def new_group(kind: str, i: int, shape: tuple[int, ...]) -> None:
        nonlocal next_id
        groups[next_id] = _Group(kind, shape, {i}, tail=i)
        group_of[i] = next_id
        next_id += 1

    for i, node in enumerate(nodes):
        kind = OPS[node.op].kind
        if kind in ELEMENTWISE_KINDS and node.shape and size(node.shape) > 0 \
                and not (OPS[node.op].libm and size(node.shape) == 1):
            # (0-d values are scalars: a kernel launch costs more than the interpreter; a
            # one-element exp/log/pow... stays with the interpreter too, so inside a kernel it is
            # an input, never a scalar the kernel would compute with another math library)
            # matmul epilogue first: the product's tail feeds only this node
            joined = False
            for a in node.args:
                g = group_of.get(a)
                if g is None:
                    continue
                grp = groups[g]
                if (grp.kind == "mm" and grp.tail == a and grp.shape == node.shape
                        and node.dtype == nodes[min(grp.members)].dtype   # written in the product's buffer
                        and a not in outputs and all(u == i for u in users[a])
                        and not external_args_hit(grp.members | {i})):
                    grp.members.add(i)
                    grp.tail = i
                    group_of[i] = g
                    joined = True
                    break
            if joined:
                continue
            cands = []
            for a in node.args:
                g = group_of.get(a)
                if g is not None and g not in cands:
                    grp = groups[g]
                    if grp.kind == "ew" and not grp.closed and grp.shape == node.shape:
                        cands.append(g)
            chosen: list[int] = []
            if cands:
                merged = {i}.union(*(groups[g].members for g in cands))
                if not external_args_hit(merged):
                    chosen = cands
                else:
                    for g in cands:
                        if not external_args_hit(groups[g].members | {i}):
                            chosen = [g]
                            break
            if not chosen:
                new_group("ew", i, node.shape)
                continue
            keep = chosen[0]
            for g in chosen[1:]:
                for m in groups[g].members:
                    group_of[m] = keep
                groups[keep].members |= groups.pop(g).members
            groups[keep].members.add(i)
            group_of[i] = keep
        elif kind is OpKind.REDUCE:
            x = node.args[0]
            g = group_of.get(x)
            if g is not None:
                grp = groups[g]
                if grp.kind == "ew" and not grp.closed and grp.shape == nodes[x].shape:
                    grp.members.add(i)
                    grp.closed = True
                    group_of[i] = g
        elif kind is OpKind.MATMUL and size(node.shape) > 0:
            new_group("mm", i, node.shape)
    # renumber groups in order of first member, so text and bytecode are stable
    order = sorted(groups, key=lambda g: min(groups[g].members))
    renum = {g: k for k, g in enumerate(order)}
    out = program.copy()
    out.meta = {k: v for k, v in program.meta.items() if not k.startswith("_")}
    out.nodes = [n.with_attr("group", renum[group_of[i]]) if i in group_of else n.without_attr("group")
                 for i, n in enumerate(nodes)]
    return out


__all__ = ["fuse"]
