"""The passes at scale: a 10,000-node program optimizes in well under a second, with the same decisions.

Two generators (a long chain and a wide DAG with reductions, products, casts and several
shapes) feed the standard pipeline. Tests never assert on time: fusion counts the operands it
looks at and that count must stay O(n), and pytest-timeout stops a pass gone quadratic. The
fusion decisions are compared with a verbatim copy of the former all-pairs fusion
(``old_fuse`` below) on the random programs of ``programs.py`` and on the generators.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from noodle.errors import IRVerifyError
from noodle.exec.interpreter import run_program
from noodle.ir.graph import Builder, Program
from noodle.ir.ops import ELEMENTWISE_KINDS, OPS, OpKind
from noodle.ir.shapes import size
from noodle.ir.verify import verify
from noodle.passes import PIPELINE, fuse, optimize, plan_memory, units
from noodle.passes.fuse import _assign
from noodle.trace import trace

from .programs import cases

# ---------------------------------------------------------------- generators


def chain_program(n: int, shape: tuple[int, ...] = (64,)) -> Program:
    """A long elementwise chain (an unrolled update loop): one region, growing all the time."""
    b = Builder()
    x = b.input(0, shape, "float64")
    c = b.const(1.5)
    v = x
    ops = ["add", "multiply", "subtract", "maximum"]
    for i in range(n):
        v = b.add(ops[i % 4], v, c if i % 3 else x)
        if i % 7 == 0:
            v = b.add("exp", v)
    return b.finish([v])


def wide_program(n: int, seed: int = 0) -> Program:
    """A wide random DAG over recent values: elementwise ops of two shapes, full and row
    reductions broadcast back, products, casts, transposes; many outputs, so DCE keeps most."""
    rng = np.random.default_rng(seed)
    b = Builder()
    vals = [b.input(i, (16, 16), "float64") for i in range(4)]
    vals += [b.input(4 + i, (16,), "float64") for i in range(2)]
    window = 64
    while len(b.nodes) < n:
        recent = vals[-window:]
        i = recent[int(rng.integers(len(recent)))]
        j = recent[int(rng.integers(len(recent)))]
        si, sj = b.nodes[i].shape, b.nodes[j].shape
        k = int(rng.integers(0, 10))
        if k == 0:
            vals.append(b.add("sum", i, axis=None))
        elif k == 1 and len(si) == 2:
            vals.append(b.add("max", i, axis=(1,), keepdims=True))
        elif k == 2 and si == sj == (16, 16):
            vals.append(b.add("matmul", i, j))
        elif k == 3 and len(si) == 2:
            vals.append(b.add("transpose", i, axes=(1, 0)))
        elif k == 4:
            vals.append(b.add("astype", i, dtype="float32" if b.nodes[i].dtype == "float64" else "float64"))
        elif k == 5:
            vals.append(b.add(["negative", "exp", "abs"][int(rng.integers(3))], i))
        else:
            name = ["add", "multiply", "subtract", "minimum"][k % 4]
            try:
                np.broadcast_shapes(si, sj)
            except ValueError:
                j = i
            vals.append(b.add(name, i, j))
    return b.finish(vals[::7])


def before_fuse(program: Program) -> Program:
    for name, run in PIPELINE:
        if name == "fuse":
            break
        program = run(program)
    return program


def groups_of(program: Program) -> list:
    return [n.attr("group") for n in program.nodes]


# ---------------------------------------------------------------- identical decisions


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(max_steps=10))
def test_fusion_decisions_equal_the_former_all_pairs_fusion(case):
    xs = case.inputs(0)
    with np.errstate(all="ignore"):
        prog = before_fuse(trace(case.fn(), xs))
    new, old = fuse(prog, rowwise=False), old_fuse(prog)
    verify(new)
    assert groups_of(new) == groups_of(old), f"{case}"
    assert new.nodes == old.nodes


def schedulable(program: Program) -> bool:
    try:
        units(program)
    except IRVerifyError:
        return False
    return True


def refines(fine: Program, coarse: Program) -> bool:
    """Every region of ``fine`` lies inside one region of ``coarse`` (reductions may leave)."""
    inside: dict[int, int] = {}
    for f, c in zip(groups_of(fine), groups_of(coarse), strict=True):
        if f is None:
            continue
        if c is None or inside.setdefault(f, c) != c:
            return False
    return True


@pytest.mark.parametrize("make", [lambda: chain_program(300), *(lambda s=s: wide_program(900, s) for s in range(6))])
def test_fusion_decisions_equal_on_the_generators_where_the_former_was_valid(make):
    prog = before_fuse(make())
    new, old = fuse(prog, rowwise=False), old_fuse(prog)
    verify(new)
    assert schedulable(new)
    if schedulable(old):
        assert groups_of(new) == groups_of(old)
    else:
        # the former fusion let two regions need each other (no order runs them): the new one
        # splits regions until none do, and only splits
        assert refines(new, old)
        assert groups_of(new) != groups_of(old)


def test_two_regions_that_need_each_other_are_split():
    # A = {a1, a2, p} and B = {b1, b2, q}: a1 -> t -> b1 and b2 -> r -> a2. Each region alone has no
    # path leaving and coming back, but A needs B (a2 reads r) and B needs A (b1 reads t).
    b = Builder()
    x = b.input(0, (8,), "float64")
    a1 = b.add("exp", x)
    t = b.add("reshape", a1, shape=(2, 4))
    b1 = b.add("exp", t)
    y = b.input(1, (2, 4), "float64")
    b2 = b.add("negative", y)
    r = b.add("reshape", b2, shape=(8,))
    a2 = b.add("negative", r)
    p = b.add("add", a1, a2)
    q = b.add("add", b1, b2)
    prog = b.finish([p, q])
    old = old_fuse(prog)
    assert not schedulable(old)   # the former fusion's result
    new = fuse(prog, rowwise=False)
    assert schedulable(new)
    g = groups_of(new)
    assert g[a1] == g[a2] == g[p]            # A stays one region
    assert len({g[b1], g[b2], g[q]}) == 3    # B, which starts later, runs node by node
    xs = [np.linspace(-1, 1, 8), np.linspace(0, 1, 8).reshape(2, 4)]
    want = run_program(prog, xs)
    got = run_program(new, xs)
    for w, o in zip(want, got, strict=True):
        np.testing.assert_array_equal(o, w)


def test_a_merge_refused_for_a_cycle_through_the_outside_is_still_refused():
    # z = y * u where u derives from y through a transpose (no region): putting z in y's region
    # would make a path leave the region (y -> transpose -> u) and come back (u -> z)
    b = Builder()
    x = b.input(0, (8,), "float64")
    y = b.add("exp", x)
    t = b.add("transpose", b.add("reshape", y, shape=(2, 4)), axes=(1, 0))   # outside any region
    u = b.add("reshape", t, shape=(8,))
    z = b.add("multiply", y, u)
    prog = b.finish([z])
    new, old = fuse(prog, rowwise=False), old_fuse(prog)
    assert groups_of(new) == groups_of(old)
    assert new.nodes[z].attr("group") != new.nodes[y].attr("group")


# ---------------------------------------------------------------- scale


@pytest.mark.timeout(120)
@pytest.mark.parametrize("make", [lambda: chain_program(10_000), lambda: wide_program(12_000)],
                         ids=["chain", "wide"])
def test_a_10000_node_program_optimizes_with_linear_fusion_work(make):
    prog = make()
    n = len(prog.nodes)
    assert n >= 10_000
    out = optimize(prog)
    verify(out)
    assert len(out.nodes) >= 5_000, "DCE should keep most of the generated program"
    _, work = _assign(before_fuse(prog))
    operands = sum(len(node.args) for node in prog.nodes)
    assert work <= 4 * operands, f"fusion looked at {work} operands for {operands} in the program"
    steps = units(out)
    assert sum(len(u.members) for u in steps) == sum(1 for nd in out.nodes if nd.op not in ("input", "const"))
    plan = plan_memory(out)
    assert plan["units"] == len(steps) and plan["peak_bytes"] > 0


# ---------------------------------------------------------------- the former fusion, verbatim


@dataclass
class _OldGroup:
    kind: str                 # "ew" | "mm"
    shape: tuple[int, ...]
    members: set[int] = field(default_factory=set)
    closed: bool = False      # ended by a reduction
    tail: int = -1            # mm: the latest value (the only one allowed to escape)


def old_fuse(program: Program) -> Program:
    """The all-pairs fusion this file checks the linear one against (verbatim, renamed)."""
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
    groups: dict[int, _OldGroup] = {}
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
        groups[next_id] = _OldGroup(kind, shape, {i}, tail=i)
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

