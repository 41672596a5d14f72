"""The GPU backend: generated CUDA C kernels compiled by CuPy (NVRTC), matmul through cuBLAS.

Why CuPy's ``RawModule`` rather than ``ElementwiseKernel``: the generated
source handles broadcasting by index arithmetic with literal strides and
writes full-shape outputs and reduction partials in one kernel, which is one
function either way; a raw kernel keeps the text identical to what the tests
compile with ``nvcc`` on machines without a GPU.

Inputs may be NumPy or CuPy arrays (NumPy ones are copied to the device);
outputs are CuPy arrays (they stay on the device: the caller decides when to
copy back). Reduction partials are combined by CuPy on the device.

Example::

    from noodle.backends import get_backend
    gpu = get_backend("cuda")
    if gpu.available()[0]:
        (out,) = gpu.compile_kernel(spec)(a, b)
"""

from __future__ import annotations

import importlib
import threading
import time
from typing import Any

import numpy as np

from noodle import metrics
from noodle.backends.base import Backend, Kernel
from noodle.backends.cuda_codegen import CUDA_OPS, cuda_source, kernel_name, launch_shape
from noodle.backends.spec import KernelSpec, MatmulSpec
from noodle.backends.split_reduce import SplitReduceKernel, values_spec
from noodle.config import get_settings
from noodle.errors import CompileError, DeviceUnavailableError, ShapeError
from noodle.ir.reduction import acc_dtype

_COMPILES = metrics.counter("noodle_jit_kernel_compiles_total", "fused kernels built by a backend",
                            ["backend", "source"])


def _cupy() -> Any:
    return importlib.import_module("cupy")


class CudaKernel(Kernel):
    """A generated CUDA kernel for one fused region."""

    backend = "cuda"

    def __init__(self, spec: KernelSpec, inplace: bool = False) -> None:
        cp = _cupy()
        self.spec = spec
        self.source = cuda_source(spec, inplace=inplace)
        try:
            module = cp.RawModule(code=self.source, options=("-std=c++14",))
            self._fn = module.get_function(kernel_name(spec))
        except Exception as exc:
            raise CompileError(f"NVRTC failed to compile kernel {spec.key()}: {exc}") from exc
        sm = cp.cuda.Device().attributes.get("MultiProcessorCount", 132)
        self._blocks, self._threads, self._n_partials = launch_shape(spec, sm)
        self._shape = tuple(spec.shape)
        self._in = [(np.dtype(d), tuple(s)) for d, s in spec.inputs]
        self._out = [np.dtype(spec.dtype_of(v)) for v in spec.outputs]
        red = spec.reduce
        self._acc = np.dtype(acc_dtype(red.op, spec.dtype_of(red.value))) if red is not None else None

    def prepare(self, inputs: tuple[Any, ...]) -> list[Any]:
        cp = _cupy()
        if len(inputs) != len(self._in):
            raise ShapeError(f"kernel expects {len(self._in)} inputs, got {len(inputs)}")
        ready = []
        for i, (x, (dt, shp)) in enumerate(zip(inputs, self._in, strict=True)):
            arr = cp.asarray(x)
            if arr.dtype != dt or (arr.shape != shp and not (arr.size == 1 and int(np.prod(shp)) == 1)):
                raise ShapeError(f"kernel input {i} is {arr.dtype}{arr.shape}, compiled for {dt}{shp}; "
                                 "compile a kernel for this signature")
            ready.append(cp.ascontiguousarray(arr))
        return ready

    def __call__(self, *inputs: Any) -> tuple[Any, ...]:
        cp = _cupy()
        ins = self.prepare(inputs)
        outs = [cp.empty(self._shape, dt) for dt in self._out]
        return self.run(ins, outs)

    def run(self, ins: list[Any], outs: list[Any]) -> tuple[Any, ...]:
        cp = _cupy()
        red = self.spec.reduce
        args = [*ins, *outs]
        partials = None
        if red is not None:
            partials = cp.empty(self._n_partials, self._acc)
            args.append(partials)
        n = int(np.prod(self._shape)) if self._shape else 1
        if n > 0:
            self._fn((self._blocks,), (self._threads,), tuple(args))
        result = tuple(outs)
        if red is None:
            return result
        if n == 0:
            raise ShapeError("reduction over an empty iteration space; NumPy defines it, the GPU kernel does not")
        nd = len(self._shape)
        axes = tuple(range(nd)) if red.axes is None else tuple(a % nd for a in red.axes)
        kept = int(np.prod([self._shape[d] for d in range(nd) if d not in axes])) if nd else 1
        if kept == 1:
            combined = {"sum": cp.sum, "mean": cp.sum, "max": cp.max, "min": cp.min}[red.op](partials)
        else:
            combined = partials
        if red.op == "mean":
            combined = combined / float(np.prod([self._shape[d] for d in axes]) if axes else 1)
        return result + (combined.astype(red.dtype).reshape(red.shape),)


class CudaMatmulKernel(Kernel):
    """``a @ b`` with cuBLAS (``cupy.matmul``), then the epilogue kernel in place on the product."""

    backend = "cuda"

    def __init__(self, spec: MatmulSpec) -> None:
        self.spec = spec
        self.epilogue = CudaKernel(spec.epilogue, inplace=True) if spec.epilogue is not None else None

    def __call__(self, *inputs: Any) -> tuple[Any, ...]:
        cp = _cupy()
        a, b = cp.asarray(inputs[0]), cp.asarray(inputs[1])
        for name, x, (dt, shp) in (("a", a, self.spec.a), ("b", b, self.spec.b)):
            if x.shape != tuple(shp) or x.dtype != np.dtype(dt):
                raise ShapeError(f"matmul operand {name} is {x.dtype}{x.shape}, compiled for {dt}{tuple(shp)}")
        dt = np.dtype(self.spec.out_dtype)
        out = cp.matmul(a.astype(dt, copy=False), b.astype(dt, copy=False))
        if self.epilogue is not None:
            ins = self.epilogue.prepare((out, *inputs[2:]))
            self.epilogue.run(ins, [out])
        return (out,)


class CudaBackend(Backend):
    """CUDA code generation through CuPy (see the module docstring)."""

    name = "cuda"
    op_table = CUDA_OPS

    def __init__(self) -> None:
        self._kernels: dict[str, Kernel] = {}
        self._lock = threading.Lock()

    def available(self) -> tuple[bool, str]:
        if not get_settings().gpu_allowed:
            return False, "GPU use is turned off by the settings (NOODLE_DISABLE_GPU / GPU_ACCELERATION)"
        try:
            cp = _cupy()
        except Exception as exc:
            return False, f"cupy cannot be imported ({exc}); install noodle[gpu]"
        try:
            count = int(cp.cuda.runtime.getDeviceCount())
        except Exception as exc:
            return False, f"no usable CUDA device: {exc}"
        if count < 1:
            return False, "no CUDA device on this machine"
        return True, ""

    def _require(self) -> None:
        ok, why = self.available()
        if not ok:
            raise DeviceUnavailableError(f"the cuda backend is unavailable: {why}")

    def source(self, spec: KernelSpec) -> str:
        """The CUDA C source that :meth:`compile_kernel` would compile."""
        return cuda_source(spec)

    def compile_kernel(self, spec: KernelSpec) -> Kernel:
        key = spec.key()
        kernel = self._kernels.get(key)
        if kernel is None:
            self._require()
            t0 = time.perf_counter()
            red = spec.reduce
            if red is not None and np.dtype(acc_dtype(red.op, spec.dtype_of(red.value))).kind == "f":
                # float reductions in the defined order (noodle.ir.reduction, on CuPy arrays), so a
                # GPU result is the interpreter's bit for bit; integer ones are exact in-kernel
                kernel = SplitReduceKernel(spec, CudaKernel(values_spec(spec)))
            else:
                kernel = CudaKernel(spec)
            _COMPILES.labels("cuda", "compiled").inc()
            metrics.emit("jit.compile", backend="cuda", key=key, seconds=time.perf_counter() - t0)
            with self._lock:
                kernel = self._kernels.setdefault(key, kernel)
        return kernel  # type: ignore[return-value]

    def compile_matmul(self, spec: MatmulSpec) -> CudaMatmulKernel:
        self._require()
        return CudaMatmulKernel(spec)


__all__ = ["CudaBackend", "CudaKernel", "CudaMatmulKernel", "cuda_source"]
