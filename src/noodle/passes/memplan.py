"""Memory planning: which materialized values can share a buffer, and the peak.

Only values that leave a unit (see :mod:`noodle.passes.schedule`) take memory:
a fused region's temporaries live in registers. Shape ops (reshape, transpose,
broadcast_to) are views and take none; they extend their source's lifetime.
Walking units in order, a value is born at its unit and dies after the last
unit that reads it (program outputs live to the end). A dying buffer goes back
to a pool keyed by byte size and the next value of exactly that size reuses
it: the same policy as the backends' buffer pool (recycle arrays of the same
size), so the plan is what actually happens.

Example::

    >>> from noodle.ir.graph import Builder
    >>> from noodle.passes.fuse import fuse
    >>> b = Builder(); x = b.input(0, (1000,), "float64")
    >>> y = b.add("exp", b.add("negative", x))
    >>> plan_memory(fuse(b.finish([y])))["peak_bytes"]
    8000
"""

from __future__ import annotations

from typing import Any

from noodle.ir.graph import Program, value_nbytes
from noodle.passes.schedule import units

_VIEWS = frozenset({"reshape", "transpose", "broadcast_to"})


def plan_memory(program: Program) -> dict[str, Any]:
    """The buffer plan of a (fused) program.

    Returns ``peak_bytes`` (most bytes live at once, inputs excluded: what the
    program adds to the caller's memory), ``pool_bytes`` (sum of distinct
    buffers with size-exact reuse), ``unfused_peak_bytes`` (the same walk with
    every node materialized, as eager NumPy does), ``output_bytes``, and
    ``buffers``: value -> buffer id.
    """
    steps = units(program)
    planned = _walk(program, [(u.members, u.outputs) for u in steps])
    eager_steps = [((m,), (m,)) for u in steps for m in u.members]
    planned["unfused_peak_bytes"] = _walk(program, eager_steps)["peak_bytes"]
    planned["output_bytes"] = sum(value_nbytes(program.nodes[o]) for o in set(program.outputs)
                                  if program.nodes[o].op not in ("input", "const"))
    planned["units"] = len(steps)
    return planned


def _walk(program: Program, steps: list[tuple[tuple[int, ...], tuple[int, ...]]]) -> dict[str, Any]:
    nodes = program.nodes
    root: dict[int, int] = {}  # a view's storage owner

    def owner(v: int) -> int:
        while v in root:
            v = root[v]
        return v

    last_use: dict[int, int] = {}
    for members, _ in steps:
        for m in members:
            if nodes[m].op in _VIEWS and len(members) == 1:
                root[m] = owner(nodes[m].args[0])   # (steps are in order: chains stay one link long)
    for k, (members, _) in enumerate(steps):
        mset = set(members)
        for m in members:
            for a in nodes[m].args:
                if a not in mset:
                    last_use[owner(a)] = max(last_use.get(owner(a), -1), k)
    end = len(steps)
    for o in program.outputs:
        last_use[owner(o)] = end
    free: dict[int, list[int]] = {}
    buffer_size: list[int] = []
    buffers: dict[int, int] = {}
    live = 0
    peak = 0
    dying: dict[int, list[int]] = {}
    for k, (_members, outs) in enumerate(steps):
        for v in outs:
            if v in root or nodes[v].op in ("input", "const"):
                continue
            size = value_nbytes(nodes[v])
            pool = free.get(size)
            if pool:
                buf = pool.pop()
            else:
                buf = len(buffer_size)
                buffer_size.append(size)
            buffers[v] = buf
            live += size
            dying.setdefault(last_use.get(v, k), []).append(v)
        peak = max(peak, live)
        for v in dying.pop(k, []):
            size = value_nbytes(nodes[v])
            live -= size
            free.setdefault(size, []).append(buffers[v])
    return {"peak_bytes": peak, "pool_bytes": sum(buffer_size), "buffers": buffers}


__all__ = ["plan_memory"]
