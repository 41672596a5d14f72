"""Index arithmetic shared by the code generators: broadcast strides and dimension collapsing.

Why: every backend must read broadcast inputs without materializing them. An
input of shape ``(n,)`` broadcast to ``(m, n)`` is read with element stride 0
along the first axis. Dimensions that are contiguous for *every* operand are
merged first (NumPy's own iterator does the same), so the common case of
same-shaped inputs becomes one flat loop, and a bias added to a matrix becomes
a two-level loop. All sizes and strides are compile-time constants of the
generated kernel (a spec has fixed shapes).

Example::

    >>> broadcast_strides((3,), (2, 3))
    (0, 1)
    >>> collapse((2, 3), [(3, 1), (0, 1)], [False, False])
    ((2, 3), [(3, 1), (0, 1)], [False, False])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from noodle.errors import ShapeError

if TYPE_CHECKING:
    from noodle.backends.spec import KernelSpec


def c_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides of a C-contiguous array of ``shape``."""
    strides = []
    acc = 1
    for s in reversed(shape):
        strides.append(acc)
        acc *= s
    return tuple(reversed(strides))


def broadcast_strides(in_shape: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides for reading a C-contiguous ``in_shape`` array broadcast to ``shape``."""
    if len(in_shape) > len(shape):
        raise ShapeError(f"input shape {in_shape} has more dimensions than the iteration space {shape}")
    pad = (1,) * (len(shape) - len(in_shape)) + tuple(in_shape)
    own = c_strides(pad)
    out = []
    for d, (si, so) in enumerate(zip(pad, shape, strict=True)):
        if si == so:
            out.append(own[d] if so != 1 else 0)
        elif si == 1:
            out.append(0)
        else:
            raise ShapeError(f"input shape {in_shape} does not broadcast to {shape} (axis {d})")
    return tuple(out)


def collapse(shape: tuple[int, ...], strides: list[tuple[int, ...]], reduced: list[bool]
             ) -> tuple[tuple[int, ...], list[tuple[int, ...]], list[bool]]:
    """Drop size-1 dims and merge neighbours that are contiguous for every operand.

    ``reduced`` marks the axes a reduction runs over; a reduced axis never
    merges with a kept one.
    """
    dims = [d for d in range(len(shape)) if shape[d] != 1]
    new_shape: list[int] = []
    new_strides: list[list[int]] = [[] for _ in strides]
    new_reduced: list[bool] = []
    for d in dims:
        if new_shape and new_reduced[-1] == reduced[d] and all(
            new_strides[k][-1] == st[d] * shape[d] for k, st in enumerate(strides)
        ):
            new_shape[-1] *= shape[d]
            for k, st in enumerate(strides):
                new_strides[k][-1] = st[d]
            continue
        new_shape.append(shape[d])
        new_reduced.append(reduced[d])
        for k, st in enumerate(strides):
            new_strides[k].append(st[d])
    return tuple(new_shape), [tuple(s) for s in new_strides], new_reduced


@dataclass(frozen=True)
class SpecLayout:
    """The collapsed iteration layout of one :class:`KernelSpec` (see :func:`spec_layout`)."""

    shape: tuple[int, ...]                 # the spec's iteration space, as given
    n: int                                 # elements in it
    cshape: tuple[int, ...]                # collapsed dims
    in_strides: list[tuple[int, ...]]      # collapsed element strides, one tuple per input
    out_strides: tuple[int, ...]           # collapsed element strides of a full-shape output
    reduced: list[bool]                    # per collapsed dim: does the reduction run over it


def spec_layout(spec: KernelSpec, type_name: Callable[[str], str]) -> SpecLayout:
    """Check every dtype of ``spec`` with ``type_name``, then collapse its broadcast layout.

    Why one walk for every code generator: the Numba and the CUDA backends must agree
    on which axes a reduction covers and how inputs are strided, or the same spec would
    mean different things on CPU and GPU. ``type_name`` is the backend's dtype mapping
    (it raises DTypeError for what the backend cannot generate), called first so an
    unsupported dtype is reported before any shape problem.
    """
    for dtype, _ in spec.inputs:
        type_name(dtype)
    for ins in spec.body:
        type_name(ins.dtype)
    shape = tuple(spec.shape)
    nd = len(shape)
    strides = [broadcast_strides(tuple(s), shape) for _, s in spec.inputs]
    red = spec.reduce
    if red is None:
        reduced = [False] * nd
    else:
        axes = tuple(range(nd)) if red.axes is None else tuple(a % nd for a in red.axes) if nd else ()
        reduced = [d in axes for d in range(nd)]
    cshape, cstr, cred = collapse(shape, strides + [c_strides(shape)], reduced)
    n = int(np.prod(shape)) if shape else 1
    return SpecLayout(shape, n, cshape, cstr[:-1], cstr[-1], cred)


__all__ = ["SpecLayout", "broadcast_strides", "c_strides", "collapse", "spec_layout"]
