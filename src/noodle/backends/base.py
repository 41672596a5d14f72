"""The interface every code-generation backend implements.

Why an abstract base: the JIT front end lowers each fused region to a
:class:`~noodle.backends.spec.KernelSpec` or
:class:`~noodle.backends.spec.MatmulSpec` and asks *a* backend to compile it;
it must not care whether Numba, CUDA or (later) MLIR/IREE does the work. A new
backend subclasses :class:`Backend`, registers a factory in
:mod:`noodle.backends.registry`, and touches nothing else.

Call convention of a compiled :class:`Kernel`: ``kernel(*inputs)`` takes the
spec's inputs in order (arrays of exactly the spec's dtypes and shapes; Python
scalars are accepted for 0-d / size-1 inputs) and returns a tuple: one array
per ``spec.outputs`` entry at the full iteration shape, then the reduction
result if ``spec.reduce`` is set (a NumPy scalar when the reduced shape is
``()``, else an array of ``spec.reduce.shape``). A matmul kernel returns a
1-tuple: the product with its epilogue applied.

Example::

    from noodle.backends import get_backend
    backend = get_backend("numba")
    ok, why = backend.available()
    kernel = backend.compile_kernel(spec)
    (out,) = kernel(a, b)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from noodle.backends.spec import KernelSpec, MatmulSpec
from noodle.errors import DTypeError, ShapeError


@dataclass(frozen=True)
class Unsupported:
    """A backend's op-table entry for an op it cannot translate; placement routes such regions elsewhere."""

    reason: str


def table_ops() -> frozenset[str]:
    """The ops every backend's ``op_table`` must have an entry for (all but program inputs/constants)."""
    from noodle.ir.ops import OPS, OpKind

    return frozenset(name for name, row in OPS.items() if row.kind not in (OpKind.INPUT, OpKind.CONST))


class Kernel(ABC):
    """A compiled fused region: callable, returns a tuple of outputs."""

    spec: KernelSpec | MatmulSpec
    backend: str

    @abstractmethod
    def __call__(self, *inputs: Any) -> tuple[Any, ...]:
        """Run on ``inputs`` (see the module docstring for the convention)."""

    @property
    def key(self) -> str:
        """The spec's content hash (the cache key)."""
        return self.spec.key()

    def entry(self) -> Callable[..., tuple[Any, ...]]:
        """The function a runner calls for this kernel: the kernel itself, unless a backend
        generates a leaner one for it (:meth:`noodle.backends.numba_cpu.NumbaKernel.entry`).
        Defined here so that a kernel that wraps another (and forwards attribute lookups to it)
        never hands out the inner kernel's entry as its own."""
        return self

    def native_target(self) -> Any:
        """What a C-level caller of this kernel passes to which compiled function
        (:class:`noodle.backends.numba_native_call.NativeTarget`), or None: only a backend that
        knows its compiled function's exact signature and semantics offers one."""
        return None


class Backend(ABC):
    """A code generator for one target (CPU via Numba, GPU via CUDA, ...)."""

    name: str = "abstract"
    #: op name -> this backend's translation of it (a template, a callable, ...) or Unsupported(why);
    #: one entry per op of :func:`table_ops` (a coverage test checks every registered backend)
    op_table: ClassVar[Mapping[str, Any]] = {}

    def supports(self, op: str) -> tuple[bool, str]:
        """(True, "") when ``op`` has a translation here, else (False, why not)."""
        entry = self.op_table.get(op)
        if entry is None:
            return False, f"backend {self.name!r} has no translation of op {op!r}"
        if isinstance(entry, Unsupported):
            return False, entry.reason
        return True, ""

    @abstractmethod
    def available(self) -> tuple[bool, str]:
        """(True, "") when the toolchain is usable here, else (False, why not)."""

    @abstractmethod
    def compile_kernel(self, spec: KernelSpec) -> Kernel:
        """Compile a fused elementwise (+ optional reduction) region."""

    @abstractmethod
    def compile_matmul(self, spec: MatmulSpec) -> Kernel:
        """Compile a product with its fused elementwise epilogue."""

    def __repr__(self) -> str:
        ok, why = self.available()
        return f"<{type(self).__name__} {self.name!r} {'available' if ok else 'unavailable: ' + why}>"


def check_inputs(spec: KernelSpec, inputs: tuple[Any, ...]) -> None:
    """Raise a clear error when ``inputs`` do not match ``spec.inputs`` (slow path, for messages)."""
    if len(inputs) != len(spec.inputs):
        raise ShapeError(f"kernel expects {len(spec.inputs)} inputs, got {len(inputs)}")
    for i, ((dtype, shape), x) in enumerate(zip(spec.inputs, inputs, strict=True)):
        arr = np.asarray(x)
        if arr.shape != tuple(shape) and not (arr.size == 1 and int(np.prod(shape)) == 1):
            raise ShapeError(
                f"kernel input {i} has shape {arr.shape}, but the kernel was compiled for {tuple(shape)}; "
                "compile a kernel for this shape (the JIT does this per signature)"
            )
        if arr.dtype != np.dtype(dtype):
            raise DTypeError(
                f"kernel input {i} has dtype {arr.dtype}, but the kernel was compiled for {dtype}; "
                f"pass .astype({dtype!r}) or compile a kernel for this dtype"
            )


def refuse_swapped(spec: KernelSpec, inputs: tuple[Any, ...]) -> None:
    """Raise :func:`check_inputs`'s ``DTypeError`` for an input array in the other byte order.

    Why a check of its own: compiled kernels read bytes as native, and Numba's dispatcher does not
    reliably refuse a big-endian float64 array (its type cache keys arrays by type number, not byte
    order; once a misaligned float64 array has been typed, a big-endian one is read swapped)."""
    for x in inputs:
        if type(x) is np.ndarray and not x.dtype.isnative:
            check_inputs(spec, inputs)


__all__ = ["Backend", "Kernel", "Unsupported", "check_inputs", "refuse_swapped", "table_ops"]
