"""The running maximum or minimum of a contiguous float run as vector code (a Numba intrinsic).

Why an intrinsic: ``m = a if a > m else m`` is a select, and LLVM vectorizes a select reduction
only under fast-math's no-NaN and no-signed-zero flags, which the kernels never set; the plain
loop stayed scalar and ran a row softmax's ``max`` pass as slowly as NumPy's ``exp`` of the same
row. Here the accumulator is one wide vector (64 float32 or 32 float64 values: four AVX-512
registers, four independent chains), updated with an ordered compare and a select per element,
with a separate "a NaN was seen" vector. Which lane holds which value does not matter for a
maximum: the result is one of the values whatever the order; NaN and the sign of a zero (the
only places an order could show) are left to the caller's defined rules
(:func:`noodle.backends.numba_rowwise._extreme`).

Example (inside ``@njit`` code)::

    m, nan_seen = extreme_lanes_max(row, start, steps, row[start])
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

#: values per step: a vector of this many elements (four 512-bit registers' worth)
WIDTH = {types.float32: 64, types.float64: 32}


def _codegen(is_max: bool) -> Any:
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:  # pragma: no cover - compiled
        rowv, startv, stepsv, initv = args
        dtype = sig.args[0].dtype
        width = WIDTH[dtype]
        ary = context.make_array(sig.args[0])(context, builder, rowv)
        i64, i32, i1 = ir.IntType(64), ir.IntType(32), ir.IntType(1)
        elt = context.get_data_type(dtype)
        vec, vbool = ir.VectorType(elt, width), ir.VectorType(i1, width)
        align = 4 if dtype == types.float32 else 8
        base = builder.gep(ary.data, [startv])
        first = ir.Constant(vec, ir.Undefined)
        for u in range(width):
            first = builder.insert_element(first, initv, ir.Constant(i32, u))
        pre = builder.basic_block
        head = builder.append_basic_block("extreme.head")
        body = builder.append_basic_block("extreme.body")
        done = builder.append_basic_block("extreme.done")
        builder.branch(head)
        builder.position_at_end(head)
        q = builder.phi(i64)
        acc = builder.phi(vec)
        nan = builder.phi(vbool)
        q.add_incoming(ir.Constant(i64, 0), pre)
        acc.add_incoming(first, pre)
        nan.add_incoming(ir.Constant(vbool, [0] * width), pre)
        builder.cbranch(builder.icmp_signed("<", q, stepsv), body, done)
        builder.position_at_end(body)
        ptr = builder.gep(base, [builder.mul(q, ir.Constant(i64, width))])
        v = builder.load(builder.bitcast(ptr, vec.as_pointer()), align=align)
        better = builder.fcmp_ordered(">" if is_max else "<", v, acc)
        nxt = builder.select(better, v, acc)
        nan_nxt = builder.or_(nan, builder.fcmp_unordered("uno", v, v))
        q.add_incoming(builder.add(q, ir.Constant(i64, 1)), body)
        acc.add_incoming(nxt, body)
        nan.add_incoming(nan_nxt, body)
        builder.branch(head)
        builder.position_at_end(done)
        m = builder.extract_element(acc, ir.Constant(i32, 0))
        seen = builder.extract_element(nan, ir.Constant(i32, 0))
        for u in range(1, width):
            x = builder.extract_element(acc, ir.Constant(i32, u))
            m = builder.select(builder.fcmp_ordered(">" if is_max else "<", x, m), x, m)
            seen = builder.or_(seen, builder.extract_element(nan, ir.Constant(i32, u)))
        out = context.get_constant_undef(sig.return_type)
        out = builder.insert_value(out, m, 0)
        return builder.insert_value(out, seen, 1)

    return codegen


def _typing(row: Any, start: Any, steps: Any, init: Any) -> Any:
    if not (isinstance(row, types.Array) and row.ndim == 1 and row.layout == "C" and row.dtype in WIDTH):
        return None
    if init != row.dtype:
        return None
    return types.Tuple((row.dtype, types.boolean))(row, types.intp, types.intp, row.dtype)


@intrinsic
def extreme_lanes_max(typingctx: Any, row: Any, start: Any, steps: Any, init: Any) -> Any:  # pragma: no cover
    """``(m, nan_seen)`` over ``row[start : start + WIDTH * steps]`` and ``init``: ``m`` the largest
    non-NaN value by ``>`` (either zero when zeros tie), ``nan_seen`` whether a NaN was read."""
    sig = _typing(row, start, steps, init)
    return None if sig is None else (sig, _codegen(True))


@intrinsic
def extreme_lanes_min(typingctx: Any, row: Any, start: Any, steps: Any, init: Any) -> Any:  # pragma: no cover
    """As :func:`extreme_lanes_max`, the smallest by ``<``."""
    sig = _typing(row, start, steps, init)
    return None if sig is None else (sig, _codegen(False))


__all__ = ["WIDTH", "extreme_lanes_max", "extreme_lanes_min"]
