"""The defined-order lane sums of an elementwise expression, evaluated as it is summed.

Why: a row kernel's ``sum(d * d)`` (layernorm's variance, RMS norm's ``mean(x * x)``) used to
store ``d * d`` in a row buffer and read it back through :func:`~noodle.backends.numba_reduce._lanes`:
one more loop over the row, a store and a load per element, 10-15% of a float32 layernorm here.
:func:`lane_expr_rows` builds an intrinsic that loads the expression's operands, computes it in
vector registers and adds it into the lanes in the same step. Each element is the same IEEE
operations on the same operands in the same dtype as the kernel's own loop (no contraction into
FMA, no fast-math flags), converted to float64 and added into lane ``t % 8`` in order, so each
lane's bits are :func:`_lanes`' on the stored values.

A program (:class:`LaneProgram`) is a list of steps over three kinds of leaves: *pointers*
(an array read at ``offset + t``: a matrix input's row or a column vector), *scalars* (one value
per row: a row's mean, a constant) and the earlier steps. Only the ops of :data:`LANE_OPS` are
programs; a sum of anything else keeps the stored path.

Example::

    prog = LaneProgram("float32", 1, 1, (("subtract", ("p", 0), ("s", 0)),
                                         ("multiply", ("v", 0), ("v", 0))))
    lanes4 = lane_expr_rows(prog, 4)   # an intrinsic: lanes4(arrays, offsets, scalars, steps)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from noodle.backends.llvm_loop import CountedLoop, add_to_lanes, lanes_tuple

#: op -> the IR builder method of its one vector instruction (IEEE, the dtype of its operands)
LANE_OPS: dict[str, str] = {"add": "fadd", "subtract": "fsub", "multiply": "fmul", "divide": "fdiv",
                            "negative": "fneg"}

Ref = tuple[str, int]   # ("p", pointer) | ("s", scalar) | ("v", earlier step)


@dataclass(frozen=True)
class LaneProgram:
    """An elementwise expression in one float dtype: ``steps`` of ``(op, *refs)``; the value is
    the last step's (or, with no steps, pointer 0's)."""

    dtype: str
    n_ptr: int
    n_scalar: int
    steps: tuple[tuple[Any, ...], ...]

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"a lane program computes in float32 or float64, not {self.dtype}")
        if self.n_ptr < 1:
            raise ValueError("a lane program reads at least one array (pointer 0 sets the row's elements)")
        for i, (op, *refs) in enumerate(self.steps):
            if op not in LANE_OPS:
                raise ValueError(f"a lane program has no op {op!r}; it has {sorted(LANE_OPS)}")
            for kind, k in refs:
                bound = {"p": self.n_ptr, "s": self.n_scalar, "v": i}.get(kind, 0)
                if not 0 <= k < bound:
                    raise ValueError(f"step {i} reads ({kind!r}, {k}), which does not exist")


def _codegen(prog: LaneProgram, rows: int) -> Any:
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:  # pragma: no cover - compiled
        arrays, offsets, scalars, steps = args
        i64, i32, f64 = ir.IntType(64), ir.IntType(32), ir.DoubleType()
        elt = ir.FloatType() if prog.dtype == "float32" else f64
        vin, vacc = ir.VectorType(elt, 8), ir.VectorType(f64, 8)
        align = 4 if prog.dtype == "float32" else 8
        datas = []
        for k in range(prog.n_ptr):
            ary = context.make_array(sig.args[0][k])(context, builder, builder.extract_value(arrays, k))
            datas.append(ary.data)
        # per row: each pointer's first element, each scalar as a splat vector
        bases = [[builder.gep(datas[k], [builder.extract_value(offsets, k * rows + g)]) for k in range(prog.n_ptr)]
                 for g in range(rows)]
        splats = []
        for g in range(rows):
            row = []
            for k in range(prog.n_scalar):
                s = builder.extract_value(scalars, k * rows + g)
                vec = builder.insert_element(ir.Constant(vin, ir.Undefined), s, ir.Constant(i32, 0))
                row.append(builder.shuffle_vector(vec, ir.Constant(vin, ir.Undefined),
                                                  ir.Constant(ir.VectorType(i32, 8), [0] * 8)))
            splats.append(row)
        loop = CountedLoop(builder, "lanex", steps, [(vacc, ir.Constant(vacc, [-0.0] * 8))] * rows)
        at = builder.mul(loop.q, ir.Constant(i64, 8))
        nexts = []
        for g, acc in enumerate(loop.values):
            loaded = [builder.load(builder.bitcast(builder.gep(b, [at]), vin.as_pointer()), align=align)
                      for b in bases[g]]
            vals: list[Any] = []

            def ref(r: Ref, g: int = g, loaded: list[Any] = loaded, vals: list[Any] = vals) -> Any:
                kind, k = r
                return loaded[k] if kind == "p" else splats[g][k] if kind == "s" else vals[k]

            for op, *refs in prog.steps:
                vals.append(getattr(builder, LANE_OPS[op])(*[ref(r) for r in refs]))
            nexts.append(add_to_lanes(builder, acc, vals[-1] if vals else loaded[0]))
        loop.close(nexts)
        return lanes_tuple(context, builder, sig, loop.values)

    return codegen


def lane_expr_rows(prog: LaneProgram, rows: int) -> Any:
    """An intrinsic ``f(arrays, offsets, scalars, steps)`` -> ``8 * rows`` float64 lanes: row
    ``g``'s lane ``u`` adds, for ``q < steps``, the program's value at element ``8q + u``, where
    pointer ``k`` reads ``arrays[k][offsets[k * rows + g] + 8q + u]`` and scalar ``k`` is
    ``scalars[k * rows + g]``; each lane starts from ``-0.0`` (the order of
    :func:`~noodle.backends.numba_reduce._lanes_rows`). ``arrays``: a tuple of 1-D C arrays of
    ``prog.dtype``; ``offsets``/``scalars``: tuples of ints/floats."""
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    dt = types.float32 if prog.dtype == "float32" else types.float64

    def typer(typingctx: Any, arrays: Any, offsets: Any, scalars: Any, steps: Any) -> Any:
        elts = list(arrays) if isinstance(arrays, types.BaseTuple) else []
        if len(elts) != prog.n_ptr or any(not (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
                                                and a.dtype == dt) for a in elts):
            return None
        if not (isinstance(offsets, types.BaseTuple) and len(offsets) == prog.n_ptr * rows
                and all(isinstance(o, types.Integer) for o in offsets)):
            return None
        if not (isinstance(scalars, types.BaseTuple) and len(scalars) == prog.n_scalar * rows
                and all(s == dt for s in scalars)):
            return None
        return types.UniTuple(types.float64, 8 * rows)(arrays, offsets, scalars, steps), _codegen(prog, rows)

    typer.__name__ = f"lane_expr_rows{rows}"
    return intrinsic(typer)


__all__ = ["LANE_OPS", "LaneProgram", "Ref", "lane_expr_rows"]
