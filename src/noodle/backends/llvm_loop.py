"""A counted loop in LLVM IR for the Numba intrinsics that write their own vector loops.

Why a helper: the row sums' lanes (:mod:`noodle.backends.numba_reduce`) and the row max/min
(:mod:`noodle.backends.numba_extreme`) each build ``for q in range(steps)`` with values carried
from one step to the next (vector accumulators); the block and phi wiring is the same.

Example (inside an intrinsic's codegen)::

    loop = CountedLoop(builder, "lanes", steps, [(vec_type, zeros)])
    (acc,) = loop.values
    ... builder code for step loop.q ...
    loop.close([builder.fadd(acc, v)])        # the builder is now after the loop
    result = acc                              # the carried value after the last step
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir

_I64 = ir.IntType(64)


class CountedLoop:
    """Opens the loop: ``q`` (i64, 0 .. steps-1) and ``values`` (the carried phis) are usable in
    its body, where the builder is left; :meth:`close` takes each value's next state."""

    def __init__(self, builder: Any, name: str, steps: Any, carried: list[tuple[Any, Any]]) -> None:
        self.builder = builder
        pre = builder.basic_block
        self.head = builder.append_basic_block(f"{name}.head")
        body = builder.append_basic_block(f"{name}.body")
        self.done = builder.append_basic_block(f"{name}.done")
        builder.branch(self.head)
        builder.position_at_end(self.head)
        self.q = builder.phi(_I64)
        self.q.add_incoming(ir.Constant(_I64, 0), pre)
        self.values = []
        for ty, init in carried:
            phi = builder.phi(ty)
            phi.add_incoming(init, pre)
            self.values.append(phi)
        builder.cbranch(builder.icmp_signed("<", self.q, steps), body, self.done)
        builder.position_at_end(body)

    def close(self, nexts: list[Any]) -> None:
        """End the body: each carried value becomes its entry of ``nexts``; continue after the loop."""
        b = self.builder
        last = b.basic_block
        self.q.add_incoming(b.add(self.q, ir.Constant(_I64, 1)), last)
        for phi, nxt in zip(self.values, nexts, strict=True):
            phi.add_incoming(nxt, last)
        b.branch(self.head)
        b.position_at_end(self.done)


def add_to_lanes(builder: Any, acc: Any, v: Any) -> Any:
    """``acc + v`` lane by lane: ``v`` (float32 or float64 lanes) converted to the float64 lanes
    of ``acc`` first, each lane one IEEE add (the defined-order sums' step)."""
    if v.type != acc.type:
        v = builder.fpext(v, acc.type)
    return builder.fadd(acc, v)


def lanes_tuple(context: Any, builder: Any, sig: Any, accs: list[Any]) -> Any:
    """The intrinsic's result: the eight lanes of each accumulator in turn, as ``sig``'s tuple."""
    out = context.get_constant_undef(sig.return_type)
    for g, acc in enumerate(accs):
        for u in range(8):
            out = builder.insert_value(out, builder.extract_element(acc, ir.Constant(ir.IntType(32), u)), 8 * g + u)
    return out


__all__ = ["CountedLoop", "add_to_lanes", "lanes_tuple"]
