"""A reduction the kernel cannot do in the defined order: the kernel makes the values, the one
definition of the order (:mod:`noodle.ir.reduction`) reduces them.

Why: a reduction over some axes (a softmax's row sums, ``x.sum(axis=0)``) followed in a
kernel would need every loop shape to walk its lanes and chunks exactly as the definition
does; this wrapper gives the same bits as the interpreter, at the price of one materialized
array of the reduced values. A backend may pass ``float_sum``, a faster spelling of the same
order for float sums of NumPy values (the Numba backend passes the kernels of
:mod:`noodle.backends.numba_reduce`: the NumPy spelling of the definition was 5-12x slower than
NumPy's own sum); ``max``/``min`` (NumPy's are fast and exact, then
:func:`~noodle.ir.reduction.canonical_extreme`), integer sums and CuPy arrays call
:func:`~noodle.ir.reduction.reduce_values` itself. Neutral ground: no backend's toolchain is
imported here.

Example::

    kernel = SplitReduceKernel(spec, backend.compile_kernel(values_spec(spec)), float_sum=None)
    *outputs, reduced = kernel(*inputs)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from noodle.backends.base import Kernel
from noodle.backends.spec import KernelSpec
from noodle.ir.reduction import reduce_values


@dataclass(frozen=True)
class SplitPlan:
    """What a :class:`SplitReduceKernel` runs: ``mode`` is ``"split"``; ``values_mode`` the
    values kernel's own plan mode (``"rows"``, ``"flat"``...; ``""`` if it has none)."""

    op: str
    axes: tuple[int, ...] | None
    values_mode: str
    mode: str = "split"


def values_spec(spec: KernelSpec) -> KernelSpec:
    """``spec`` without its reduction, writing the reduced value as one more output."""
    assert spec.reduce is not None
    return replace(spec, outputs=(*spec.outputs, spec.reduce.value), reduce=None)


class SplitReduceKernel(Kernel):
    """The elementwise kernel of :func:`values_spec`, then the defined-order reduction."""

    def __init__(self, spec: KernelSpec, values: Kernel,
                 float_sum: Callable[[np.ndarray, tuple[int, ...]], Any] | None = None) -> None:
        assert spec.reduce is not None
        self.spec = spec
        self.values = values
        self.backend = values.backend
        red = spec.reduce
        self._op, self._axes, self._keepdims = red.op, red.axes, red.keepdims
        self._dtype, self._shape = red.dtype, tuple(red.shape)
        vplan = getattr(values, "plan", None)
        self.plan = SplitPlan(red.op, red.axes, str(getattr(vplan, "mode", "")))
        # a float sum/mean of NumPy values: the backend's spelling of the order (same bits)
        float_red = red.op in ("sum", "mean") and np.dtype(spec.dtype_of(red.value)).kind == "f"
        self._fast = float_sum if float_red else None

    def __getattr__(self, name: str) -> Any:
        # module, source_path, from_cache...: those of the kernel that does the work
        return getattr(self.values, name)

    def __call__(self, *inputs: Any) -> tuple[Any, ...]:
        *outs, vals = self.values(*inputs)
        fast = self._fast if type(vals) is np.ndarray else None
        res = reduce_values(self._op, vals, self._axes, self._keepdims, self._dtype, float_sum=fast)
        res = res.reshape(self._shape)
        return (*outs, res[()] if res.shape == () else res)


__all__ = ["SplitReduceKernel", "values_spec"]
