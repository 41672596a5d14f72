"""The kinds of entry a backend's op table holds, and the one way a code generator reads it.

Why typed entries: every backend declares its translation of every op of
:mod:`noodle.ir.ops` in one table keyed by op name (``Backend.op_table``), and
code is generated from that table, never from if/elif chains or private op
lists. An op is translated differently by its kind: an elementwise op becomes an
expression inside a fused loop, a reduction an accumulator update, a matmul a
library call, a shape op an array view between kernels; an op a target cannot do
is :class:`~noodle.backends.base.Unsupported` (placement routes it elsewhere).
Neutral ground: the Numba and the CUDA generators both import this module and
neither imports the other.

Example::

    >>> table = {"negative": Elementwise(lambda args, dts, out: f"(-{args[0]})")}
    >>> lookup(table, "demo", "negative", Elementwise).expr(["x"], ["float64"], "float64")
    '(-x)'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from noodle.backends.base import Unsupported
from noodle.backends.op_text import Cast, compare_dtype, infix, symbol
from noodle.errors import CompileError

#: (operand expressions, operand dtypes, result dtype) -> expression text
Expr = Callable[[list[str], list[str], str], str]


@dataclass(frozen=True)
class Elementwise:
    """An op computed inside a fused kernel: ``expr(args, dtypes, out_dtype)`` spells it."""

    expr: Expr


@dataclass(frozen=True)
class Reduction:
    """A reduction a kernel accumulates: ``update(acc, value, acc_dtype)`` is one statement that
    folds ``value`` (already in the accumulator dtype) into ``acc``, which starts from
    :func:`noodle.ir.reduction.identity` (the defined order's rules)."""

    update: Callable[[str, str, str], str]


@dataclass(frozen=True)
class Library:
    """An op the backend hands to a library between kernels (a product to BLAS or cuBLAS)."""

    call: str


@dataclass(frozen=True)
class View:
    """A shape op: no arithmetic, an array view between kernels (the JIT runs it as a lone step)."""

    call: str


Entry = TypeVar("Entry", Elementwise, Reduction, Library, View)


def lookup(table: Mapping[str, Any], backend: str, op: str, kind: type[Entry]) -> Entry:
    """The ``kind`` entry of ``op`` in ``table``; CompileError says why there is none (the kernel
    then runs interpreted)."""
    entry = table.get(op)
    if isinstance(entry, Unsupported):
        raise CompileError(f"the {backend} backend cannot generate op {op!r}: {entry.reason}")
    if not isinstance(entry, kind):
        what = "no translation" if entry is None else f"a {type(entry).__name__} entry"
        raise CompileError(f"the {backend} backend has {what} for op {op!r} where a {kind.__name__} is needed")
    return entry


def comparisons(cast: Cast) -> dict[str, Elementwise]:
    """The six comparisons, each made in the operands' result dtype (NumPy's rule); ``cast`` is the
    generator's syntax for a conversion. Infix comparisons read the same in Python and C."""
    def compare(op: str) -> Elementwise:
        sym = symbol(op)
        return Elementwise(lambda args, dts, out: infix(sym, args, dts, compare_dtype(dts), cast))
    return {op: compare(op) for op in ("less", "less_equal", "greater", "greater_equal", "equal", "not_equal")}


def lone_nodes() -> dict[str, Unsupported]:
    """Indexing and loops: lone nodes, never inside a fused region (ir.ops OpKind.INDEX / LOOP)."""
    return {
        "slice": Unsupported("slice runs as a lone node through the interpreter (a view: nothing to compute)"),
        "gather": Unsupported("gather runs as a lone node through the interpreter (np.take, bounds checked)"),
        "concatenate": Unsupported("concatenate runs as a lone node through the interpreter (one copy)"),
        "while_loop": Unsupported("while_loop runs as a lone node: the runner loops around its body's kernels"),
        "loop_result": Unsupported("loop_result runs as a lone node through the interpreter "
                                   "(picks a carried value)"),
    }


def views(module: str) -> dict[str, View]:
    """The shape ops as views of the array module named ``module`` (``np``, ``cupy``)."""
    return {name: View(f"{module}.{name}") for name in ("reshape", "transpose", "broadcast_to")}


__all__ = ["Elementwise", "Expr", "Library", "Reduction", "View", "comparisons", "lone_nodes", "lookup", "views"]
