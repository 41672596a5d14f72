"""The single-function loop shapes of the Numba code generator: ``flat``, ``rows`` and ``chunks``.

Why apart from the stages: these shapes are one Numba function each, a loop
around the emitter's per-element body (see :mod:`noodle.backends.numba_plan` for
what each shape is and when it is chosen); the ``stages`` shape is several
functions and a driver (:mod:`noodle.backends.numba_stages`).

Example::

    >>> from noodle.backends.spec import Instr, KernelSpec
    >>> from noodle.backends.numba_plan import emitter, plan
    >>> spec = KernelSpec((("float64", (8,)),), (), (Instr("negative", (0,), "float64"),), (1,), (8,))
    >>> p = plan(spec)
    >>> LOOP_SHAPES[p.mode](spec, p, emitter(spec, p), "range")
    ['for i in range(8):', '    v0 = i0[i]', '    v1 = (-v0)', '    o0[i] = v1']
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from noodle.backends.numba_emit import (
    SUB_BLOCK,
    Emitter,
    close_lanes,
    indent,
    lane_reduce,
    sub_block_sum,
    unrolled_sum,
    uses_chunk_buffer,
)
from noodle.backends.numba_plan import Plan
from noodle.backends.spec import KernelSpec
from noodle.ir.reduction import CHUNK, LANES


def gen_flat(spec: KernelSpec, p: Plan, e: Emitter, loop: str) -> list[str]:
    """One loop over the collapsed 1-D space."""
    lines = e.hoisted(e.targets())
    lines.append(f"for i in {loop}({p.n}):")
    body = e.body(e.targets(), e.loads(["i"] * e.n_in), "")
    body += e.store_outputs("i", "")
    return lines + indent(body or ["pass"], 1)


def segment_loads(p: Plan, base: dict[int, str], lo: str, hi: str, col: str) -> tuple[list[str], dict[int, str]]:
    """How each varying input is read along a contiguous-last-axis segment indexed by ``j``.

    ``base`` maps each varying input to its offset expression at the segment's row; the
    segment spans ``base + lo`` to ``base + hi`` and element ``j`` sits at column ``col``.
    Contiguous operands are sliced (index ``j`` from 0: no negative-index checks, the loop
    vectorizes), operands broadcast along the row are read once, others are strided.
    Returns the lines to emit before the loop and the per-input load expressions.
    """
    lines: list[str] = []
    load: dict[int, str] = {}
    for k, b in base.items():
        st = p.in_strides[k][-1]
        if st == 0:
            lines.append(f"s{k} = i{k}[{b}]")
            load[k] = f"s{k}"
        elif st == 1:
            lines.append(f"w{k} = i{k}[{b}{lo}:{b}{hi}]")
            load[k] = f"w{k}[j]"
        else:
            load[k] = f"i{k}[{b} + {col} * {st}]"
    return lines, load


def gen_rows(spec: KernelSpec, p: Plan, e: Emitter, loop: str) -> list[str]:
    """(p)range over the outer dims, an inner loop over the last one."""
    shape = p.shape
    rows = "nrows" if isinstance(p.n, str) else int(np.prod(shape[:-1]))   # a generic plan's name
    last = shape[-1]
    lines = e.hoisted(e.targets())
    lines.append(f"for r in {loop}({rows}):")
    # fresh names per level: Numba's parfor pass rejects reassigning anything derived from the index
    inner = ["q0 = r"] + [f"b{k} = 0" for k in range(e.n_in) if not e.uni[k]]
    for lvl, d in enumerate(range(len(shape) - 2, -1, -1)):
        inner.append(f"x{lvl} = q{lvl} % {shape[d]}")
        inner.append(f"q{lvl + 1} = q{lvl} // {shape[d]}")
        for k in range(e.n_in):
            if not e.uni[k] and p.in_strides[k][d]:
                inner.append(f"b{k} += x{lvl} * {p.in_strides[k][d]}")
    inner.append(f"ob = r * {last}")
    # per row: contiguous operands are sliced (index j from 0: no negative-index checks, the
    # inner loop vectorizes) and operands broadcast along the row are read once
    varying = [k for k in range(e.n_in) if not e.uni[k]]
    seg, load = segment_loads(p, {k: f"b{k}" for k in varying}, "", f" + {last}", "j")
    inner += seg
    inner += [f"y{j} = o{j}[ob:ob + {last}]" for j in range(len(spec.outputs))]
    inner.append(f"for j in range({last}):")
    body = e.body(e.targets(), load, "") + e.store_outputs("j", "", "y")
    inner += indent(body or ["pass"], 1)
    return lines + indent(inner, 1)


CHUNKS_PER_ITEM = 8   # chunks one parallel item reduces (one chunk buffer per item)


def gen_chunks(spec: KernelSpec, p: Plan, e: Emitter, loop: str) -> list[str]:
    """Full reduction of a 1-D space in the defined order: chunks of ``CHUNK`` elements, each
    sliced so its index starts at 0 (no negative-index checks), reduced in ``LANES`` lanes; the
    parallel loop runs over items of ``CHUNKS_PER_ITEM`` chunks; the driver adds the chunk values
    in order. A float sum takes one of two forms of the same order (see :func:`chunk_sum_style`):
    pieces of ``SUB_BLOCK`` values through a small buffer (allocated once per item), or one
    unrolled pass."""
    nchunk = "nch" if isinstance(p.n, str) else max(1, -(-p.n // CHUNK))
    lines = e.hoisted(e.targets())
    per = CHUNKS_PER_ITEM
    style = chunk_sum_style(spec, p, loop)
    lines.append(f"for it in {loop}(({nchunk} + {per - 1}) // {per}):")
    item = []
    if style == "pieces":
        item.append(f"buf = np.empty({SUB_BLOCK}, np.float64)")
    item.append(f"for c in range(it * {per}, min({nchunk}, it * {per} + {per})):")
    inner = [f"lo = c * {CHUNK}", f"hi = min(lo + {CHUNK}, {p.n})", "m = hi - lo"]

    def slices(lo: str, hi: str) -> list[str]:
        return ([f"x{k} = i{k}[{lo}:{hi}]" for k in range(e.n_in) if not e.uni[k]]
                + [f"y{j} = o{j}[{lo}:{hi}]" for j in range(len(spec.outputs))])

    def loads(ix: str) -> dict[int, str]:
        return e.loads([ix] * e.n_in, "x")

    if style == "pieces":
        inner.append("ls = (" + ", ".join(["-0.0"] * LANES) + ")")
        inner.append(f"for sb in range(lo, hi, {SUB_BLOCK}):")
        piece = [f"sh = min(sb + {SUB_BLOCK}, hi)", "mm = sh - sb", *slices("sb", "sh")]
        piece += sub_block_sum(e, p.acc_dtype, e.targets(), "mm", loads, "y")
        inner += indent(piece, 1)
        inner += close_lanes([f"ls[{u}]" for u in range(LANES)])
    elif style == "unrolled":
        inner += slices("lo", "hi")
        inner += unrolled_sum(e, p.acc_dtype, e.targets(), "m", loads, "y")
    else:
        inner += slices("lo", "hi")
        inner += lane_reduce(e, p.acc_dtype, e.targets(), "0", "m", loads, "y")
    inner.append("part[c] = acc0")
    item += indent(inner, 1)
    return lines + indent(item, 1)


def chunk_sum_style(spec: KernelSpec, p: Plan, loop: str) -> str:
    """How :func:`gen_chunks` writes a chunk's reduction: ``"unrolled"`` for a float64 sum on
    every thread (bound by memory: one streaming pass is fastest), ``"pieces"`` for other float
    sums (the buffered pass is vectorized: fastest when the arithmetic, not memory, is the
    limit), ``"lanes"`` for the rest (integer sums, max, min: a lane array)."""
    if not uses_chunk_buffer(spec, p.acc_dtype):
        return "lanes"
    red = spec.reduce
    assert red is not None
    return "unrolled" if loop == "prange" and spec.dtype_of(red.value) == "float64" else "pieces"


#: plan mode -> the generator of its loop body
LOOP_SHAPES: dict[str, Callable[[KernelSpec, Plan, Emitter, str], list[str]]] = {
    "flat": gen_flat, "rows": gen_rows, "chunks": gen_chunks,
}


__all__ = ["CHUNKS_PER_ITEM", "LOOP_SHAPES", "chunk_sum_style", "gen_chunks", "gen_flat", "gen_rows", "segment_loads"]
