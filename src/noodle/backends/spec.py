"""What a backend is asked to compile: a fused region, described without NIR.

Why a separate, small description: backends should not depend on the whole NIR
graph machinery, and the same spec must hash to the same key in every process
(the on-disk kernel cache is keyed by it). A spec is plain frozen data.

Value numbering inside a :class:`KernelSpec`: values ``0 .. n_inputs-1`` are
the inputs, the next ``len(consts)`` values are the scalar constants, and then
one value per body instruction, in order. Every elementwise value is a scalar
at one point of the iteration space ``shape``; inputs broadcast to ``shape``
by NumPy rules (their own ``shape`` is kept so a backend can index them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

SPEC_VERSION = 1


@dataclass(frozen=True)
class Instr:
    """One elementwise instruction: ``op`` (an op-table name) applied to value indices."""

    op: str
    args: tuple[int, ...]
    dtype: str                       # result dtype, e.g. "float64"
    attrs: tuple[tuple[str, Any], ...] = ()   # e.g. (("dtype", "float32"),) for astype


@dataclass(frozen=True)
class Reduce:
    """A reduction applied to one elementwise value (map-reduce fusion)."""

    op: str                          # "sum" | "mean" | "max" | "min"
    value: int                       # the value index being reduced
    axes: tuple[int, ...] | None     # None: all axes
    keepdims: bool
    dtype: str                       # result dtype
    shape: tuple[int, ...]           # result shape


class _ValueNumbering:
    """Value numbering shared by :class:`KernelSpec` and :class:`RowSpec`: inputs, then
    constants, then one value per body instruction."""

    inputs: tuple[tuple[str, tuple[int, ...]], ...]
    consts: tuple[tuple[str, float | int | bool], ...]
    body: tuple[Instr, ...]

    @property
    def n_values(self) -> int:
        return len(self.inputs) + len(self.consts) + len(self.body)

    def dtype_of(self, value: int) -> str:
        n_in, n_c = len(self.inputs), len(self.consts)
        if value < n_in:
            return self.inputs[value][0]
        if value < n_in + n_c:
            return self.consts[value - n_in][0]
        return self.body[value - n_in - n_c].dtype

    def closure(self, values: Iterable[int]) -> set[int]:
        """``values`` and every value they are computed from (inputs and constants included)."""
        base = len(self.inputs) + len(self.consts)
        seen: set[int] = set()
        stack = list(values)
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            if v >= base:
                stack.extend(self.body[v - base].args)
        return seen

    def key(self) -> str:
        """Stable content hash (same in every process): the kernel-cache key."""
        return _hash(self)


@dataclass(frozen=True)
class KernelSpec(_ValueNumbering):
    """A fused elementwise region, optionally ending in one reduction."""

    inputs: tuple[tuple[str, tuple[int, ...]], ...]     # (dtype, shape) per input
    consts: tuple[tuple[str, float | int | bool], ...]  # (dtype, value) per scalar constant
    body: tuple[Instr, ...]
    outputs: tuple[int, ...]          # values written out at full ``shape`` (not reduced)
    shape: tuple[int, ...]            # iteration space
    reduce: Reduce | None = None
    fastmath: bool = False
    version: int = field(default=SPEC_VERSION)


@dataclass(frozen=True)
class MatmulSpec:
    """``a @ b`` followed by an elementwise epilogue applied in the product's buffer.

    In ``epilogue`` input 0 is the product (shape ``out_shape``); further inputs
    are the extra operands (a bias, a scale) in order. ``epilogue`` may be None.
    """

    a: tuple[str, tuple[int, ...]]
    b: tuple[str, tuple[int, ...]]
    out_dtype: str
    out_shape: tuple[int, ...]
    epilogue: KernelSpec | None = None
    version: int = field(default=SPEC_VERSION)

    def key(self) -> str:
        return _hash(self)


@dataclass(frozen=True)
class RowSpec(_ValueNumbering):
    """A row-wise region: reductions over the last axis broadcast back into elementwise work over
    the same rows (softmax, layernorm, normalizations), compiled as one kernel that walks each row
    from cache instead of one pass over the whole array per op.

    The iteration space is ``rows + (length,)``. Value numbering is :class:`KernelSpec`'s (inputs,
    then constants, then ``body``). ``levels[i]`` says where body value ``i`` lives: ``"full"``
    (one value per element of a row) or ``"row"`` (one per row, shape ``rows + (1,)``). A body
    instruction whose op is a reduction (``sum``/``mean``/``max``/``min``) is a row value reducing
    a full value over the row, in the defined order of :mod:`noodle.ir.reduction`. Inputs keep
    their own shape; a backend broadcasts them to the level of each use. ``outputs`` are
    (value, shape) pairs: a row value may leave as ``rows + (1,)`` or as ``rows``.

    Example::

        >>> spec = RowSpec((("float64", (2, 8)),), (), (Instr("max", (0,), "float64"),), ("row",),
        ...                ((1, (2, 1)),), (2,), 8)
        >>> len(spec.key())
        32
    """

    inputs: tuple[tuple[str, tuple[int, ...]], ...]
    consts: tuple[tuple[str, float | int | bool], ...]
    body: tuple[Instr, ...]
    levels: tuple[str, ...]
    outputs: tuple[tuple[int, tuple[int, ...]], ...]
    rows: tuple[int, ...]
    length: int
    version: int = field(default=SPEC_VERSION)


def _hash(spec: Any) -> str:
    payload = json.dumps({"type": type(spec).__name__, **asdict(spec)}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


__all__ = ["Instr", "KernelSpec", "MatmulSpec", "Reduce", "RowSpec", "SPEC_VERSION"]
