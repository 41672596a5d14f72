"""A reduction the kernel cannot do in the defined order: the kernel makes the values, the one
definition of the order (:mod:`noodle.ir.reduction`) reduces them.

Why: a reduction over some axes (a softmax's row sums, ``x.sum(axis=0)``) followed in a
kernel would need every loop shape to walk its lanes and chunks exactly as the definition
does; until a backend does, this wrapper gives the same bits as the interpreter by
construction, at the price of one materialized array of the reduced values.

Example::

    kernel = SplitReduceKernel(spec, backend.compile_kernel(values_spec(spec)))
    *outputs, reduced = kernel(*inputs)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from noodle.backends.base import Kernel
from noodle.backends.spec import KernelSpec
from noodle.ir.reduction import reduce_values


def values_spec(spec: KernelSpec) -> KernelSpec:
    """``spec`` without its reduction, writing the reduced value as one more output."""
    assert spec.reduce is not None
    return replace(spec, outputs=(*spec.outputs, spec.reduce.value), reduce=None)


class SplitReduceKernel(Kernel):
    """The elementwise kernel of :func:`values_spec`, then the defined-order reduction."""

    def __init__(self, spec: KernelSpec, values: Kernel) -> None:
        assert spec.reduce is not None
        self.spec = spec
        self.values = values
        self.backend = values.backend
        red = spec.reduce
        self._op, self._axes, self._keepdims = red.op, red.axes, red.keepdims
        self._dtype, self._shape = red.dtype, tuple(red.shape)

    def __getattr__(self, name: str) -> Any:
        # plan, module, source_path, from_cache...: those of the kernel that does the work
        return getattr(self.values, name)

    def __call__(self, *inputs: Any) -> tuple[Any, ...]:
        *outs, vals = self.values(*inputs)
        res = reduce_values(self._op, vals, self._axes, self._keepdims, self._dtype).reshape(self._shape)
        return (*outs, res[()] if res.shape == () else res)


__all__ = ["SplitReduceKernel", "values_spec"]
