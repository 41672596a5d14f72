"""Which row sums of a row-wise kernel are computed from their expression, not a stored row.

Why: layernorm's ``mean(d * d)`` and RMS norm's ``mean(x * x)`` read a per-element value that
nothing else reads. Stored in a row buffer and summed back it costs one loop, a store and a load
per element; :mod:`noodle.backends.numba_lane_expr` computes it in the lanes instead. This module
decides where that holds (:func:`find_lane_sums`) and writes the generated module's helpers
(:func:`helper_source`): per such sum, the chunk loop of
:func:`~noodle.backends.numba_reduce._rsum_rows` around the intrinsic, with the tail of a row
that is not a multiple of eight computed as scalars by the kernel's own op text. The bits are
those of the stored path: the same operations per element, the same lanes, the same order.

Example (inside :mod:`noodle.backends.numba_rowwise`)::

    sums = find_lane_sums(plan)        # {sum value: LaneSum}
    src += helper_source(sums[v], plan.L, ROWS)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from noodle.backends.numba_emit import op_expr
from noodle.backends.numba_lane_expr import LANE_OPS, LaneProgram, Ref
from noodle.ir.reduction import CHUNK

MAX_STEPS = 12   # ops per program: a longer expression keeps the stored path


@dataclass
class LaneSum:
    """One row sum computed from its expression: the program, its pointer leaves (input view
    index and kind: ``mat`` reads the row, ``col`` the same vector for every row), its scalar
    leaves (value numbers: constants, row values) and the per-element values it computes."""

    v: int
    prog: LaneProgram
    ptrs: list[tuple[int, str]]
    scalars: list[int]
    tree: set[int] = field(default_factory=set)


def find_lane_sums(p: Any) -> dict[int, LaneSum]:
    """The row sums/means of plan ``p`` whose operand is read by nothing else and is an
    expression of :data:`LANE_OPS` in one float dtype over input rows, column vectors, constants
    and row values of earlier passes of the same stage."""
    spec, base, readers = p.spec, p.base, p.readers
    out: dict[int, LaneSum] = {}
    for i, ins in enumerate(spec.body):
        v = base + i
        if ins.op not in ("sum", "mean") or p.level[v] != "row" or p.uni[v] or p.ufunc[v]:
            continue
        a = ins.args[0]
        if (a < base or p.uni[a] or p.level[a] != "full" or a in p.out_index or readers.get(a) != {v}
                or spec.dtype_of(a) not in ("float32", "float64")):
            continue
        found = _program(p, v, a)
        if found is not None:
            out[v] = found
    return out


def _program(p: Any, v: int, a: int) -> LaneSum | None:
    spec, base, dt = p.spec, p.base, p.spec.dtype_of(a)
    ptrs: list[tuple[int, str]] = []
    scalars: list[int] = []
    steps: list[tuple[Any, ...]] = []
    memo: dict[int, Ref] = {}
    tree: set[int] = set()

    def leaf(u: int) -> Ref | None:
        if u < p.n_in and not p.uni[u]:
            vi = p.view_of[(u, "full")]
            kind = p.views[vi][1]
            if kind not in ("mat", "col"):
                return None
            ptrs.append((vi, kind))
            return ("p", len(ptrs) - 1)
        row_value = (u >= base and not p.uni[u] and p.level[u] == "row" and p.stage[u] == p.stage[v]
                     and not p.ufunc[u] and p.passes[u] < p.passes[v])
        if not (p.uni[u] or row_value):
            return None
        scalars.append(u)
        return ("s", len(scalars) - 1)

    def walk(u: int) -> Ref | None:
        if u in memo:
            return memo[u]
        if spec.dtype_of(u) != dt:
            return None
        if u < base or p.uni[u] or p.level[u] == "row":
            ref = leaf(u)
        else:
            ins = spec.body[u - base]
            if ins.op not in LANE_OPS or p.ufunc[u] or u in p.inline or p.stage[u] != p.stage[v]:
                return None
            refs = [walk(b) for b in ins.args]
            if any(r is None for r in refs) or len(steps) >= MAX_STEPS:   # (its operands' steps counted)
                return None
            steps.append((ins.op, *refs))
            tree.add(u)
            ref = ("v", len(steps) - 1)
        if ref is not None:
            memo[u] = ref
        return ref

    if walk(a) is None or not steps:
        return None
    return LaneSum(v, LaneProgram(dt, len(ptrs), len(scalars), tuple(steps)), ptrs, scalars, tree)


def lane_only(p: Any, sums: dict[int, LaneSum]) -> set[int]:
    """The per-element values only the programs read: never computed by the kernel's loops."""
    readers = p.readers
    out: set[int] = set()
    for ls in sums.values():
        inside = ls.tree | {ls.v}
        # from the operand down: a value is program-only when all its readers are
        for u in sorted(ls.tree, reverse=True):
            if u not in p.out_index and readers.get(u, set()) <= (out & inside) | {ls.v}:
                out.add(u)
    return out


def helper_source(ls: LaneSum, length: int, rows: int) -> list[str]:
    """Module-level source: the intrinsic ``_lx{v}_{rows}`` and ``q{v}_{rows}(P, O, S)``, the
    defined-order sums (float64, NaN as ``np.nan``) of ``rows`` rows: ``P`` the pointer leaves'
    arrays, ``O`` each pointer's row offset per row (pointer-major), ``S`` each scalar per row."""
    prog, v = ls.prog, ls.v
    name = f"_lx{v}_{rows}"
    nch = -(-length // CHUNK)
    lines = [f"{name} = lane_expr_rows({prog!r}, {rows})", "", "@njit(**_OPTS)", f"def q{v}_{rows}(P, O, S):"]
    body: list[str] = []

    def chunk(j0: str, n: int, total: str) -> list[str]:
        offs = ", ".join(f"O[{k}] + {j0}" for k in range(prog.n_ptr * rows))
        out = [f"ln = {name}(P, ({offs},), S, {n // 8})"]
        jt = n - n % 8
        for g in range(rows):
            lanes = []
            for u in range(8):
                lane = f"ln[{8 * g + u}]"
                if u < n % 8:   # the tail of a short last chunk: lanes 0 .. tail-1
                    out += _element(prog, rows, g, f"{j0} + {jt + u}", f"w{u}")
                    lane = f"({lane} + np.float64(w{u}))"
                lanes.append(lane)
            out.append(f"a{g} = {' + '.join(lanes)}")
            out.append(total.format(g=g))
        return out

    body += [f"t{g} = 0.0" for g in range(rows)]
    if nch > 1:   # whole chunks (multiples of eight: no tail), then the last added on
        body.append(f"for c in range({nch - 1}):")
        body += ["    " + s for s in chunk(f"c * {CHUNK}", CHUNK, "t{g} = a{g} if c == 0 else t{g} + a{g}")]
        body += chunk(str((nch - 1) * CHUNK), length - (nch - 1) * CHUNK, "t{g} = t{g} + a{g}")
    else:
        body += chunk("0", length, "t{g} = a{g}")
    res = [f"np.nan if t{g} != t{g} else t{g}" for g in range(rows)]
    body.append(f"return {res[0]}" if rows == 1 else f"return ({', '.join(res)})")
    return lines + ["    " + s for s in body] + [""]


def _element(prog: LaneProgram, rows: int, g: int, at: str, out: str) -> list[str]:
    """Lines computing the program at element ``at`` of row ``g`` into ``out``, with the op text
    of the kernel's own loops (:func:`~noodle.backends.numba_emit.op_expr`)."""
    names: list[str] = []

    def ref(r: Ref) -> str:
        kind, k = r
        if kind == "p":
            return f"P[{k}][O[{k * rows + g}] + {at}]"
        return f"S[{k * rows + g}]" if kind == "s" else names[k]

    lines = []
    for i, (op, *refs) in enumerate(prog.steps):
        nm = f"{out}_{i}"
        lines.append(f"{nm} = {op_expr(op, [ref(r) for r in refs], [prog.dtype] * len(refs), prog.dtype)}")
        names.append(nm)
    lines.append(f"{out} = {names[-1]}")
    return lines


def call_text(ls: LaneSum, rows: int, offset: Any, scalar: Any) -> str:
    """The call of ``q{v}_{rows}``: ``offset(kind, g)`` is a pointer's row offset text for row
    ``g`` of the group, ``scalar(u, g)`` a scalar leaf's text."""
    arrays = "".join(f"i{vi}, " for vi, _ in ls.ptrs)
    offs = "".join(f"{offset(kind, g)}, " for _, kind in ls.ptrs for g in range(rows))
    scs = "".join(f"{scalar(u, g)}, " for u in ls.scalars for g in range(rows))
    return f"q{ls.v}_{rows}(({arrays}), ({offs}), ({scs}))"


__all__ = ["MAX_STEPS", "LaneSum", "call_text", "find_lane_sums", "helper_source", "lane_only"]
