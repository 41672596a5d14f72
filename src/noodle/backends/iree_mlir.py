"""The MLIR backend: each fused region as MLIR (linalg/arith/math), compiled and run by IREE.

Why IREE: its ``llvm-cpu`` code generator vectorizes ``exp`` and ``log`` (PyPI's llvmlite does
not), so an exp-heavy float32 chain runs several times faster than NumPy; the same MLIR
compiles for CUDA (sm_80 PTX) where a GPU exists. ``pip install 'noodle[mlir]'`` brings the
compiler and runtime (~400 MB), so this backend is optional and reports itself unavailable
without them.

What it guarantees (tests/backends/test_iree.py checks it against NumPy): bit-exact results for
arithmetic, comparisons, ``where``, casts, ``sqrt``, ``maximum``/``minimum``, integer and
bool ops, integer sums and ``max``/``min`` reductions; ``exp``/``log`` within 2 ulp; float
sums and means in the one defined order of :mod:`noodle.ir.reduction` (the kernel writes the
values, the defined-order sum reduces them). Ops IREE cannot do exactly (``power``, ``sin``,
``cos``, ``tanh``) are :class:`~noodle.backends.base.Unsupported` in the op table, so such a
region runs elsewhere. Subnormals: IREE's CPU runtime flushes subnormal floats to zero in
every dispatch (no switch exists in 3.13), so each kernel also returns a flag, computed in the
same dispatch, that is set when any subnormal input was read or any float op may have
underflowed to zero (:meth:`noodle.backends.iree_ops.Body.hazard`); such a call is recomputed
by the reference evaluation and counted in ``noodle_iree_subnormal_fallbacks_total``. A float
matmul falls back when its operands could make a product term underflow.

Example::

    from noodle.backends import get_backend
    backend = get_backend("iree")
    kernel = backend.compile_kernel(spec)      # ~0.5 s, or a file read when cached
    (out,) = kernel(a, b)
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import importlib
import logging
import math
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from noodle import metrics
from noodle.backends.base import Backend, Kernel, check_inputs
from noodle.backends.iree_compile import compile_cached
from noodle.backends.iree_emit import (
    Emitted,
    input_padding,
    kernel_module,
    matmul_module,
    reads_input,
    squeezed,
)
from noodle.backends.iree_ops import OP_TABLE, ReduceRule
from noodle.backends.reference import evaluate, evaluate_matmul
from noodle.backends.spec import KernelSpec, MatmulSpec
from noodle.backends.split_reduce import SplitReduceKernel, values_spec
from noodle.errors import CompileError, DTypeError, ShapeError
from noodle.ir.reduction import canonical_nan
from noodle.memory.outputs import out_buffer
from noodle.memory.pool import default_pool

log = logging.getLogger("noodle.backends.iree")
_KERNELS = metrics.counter("noodle_iree_kernels_total", "IREE kernels made ready", ["target", "source"])
_FALLBACKS = metrics.counter("noodle_iree_subnormal_fallbacks_total",
                             "IREE kernel calls recomputed exactly because flush-to-zero may have changed "
                             "a subnormal result", ["kind"])

_DRIVERS = {"llvm-cpu": "local-task", "cuda": "cuda"}
_ALIGN = 64          # IREE imports host memory aligned to 64 bytes
_configs: dict[str, Any] = {}
_config_lock = threading.Lock()

#: a NumPy dtype as the signless MLIR tensor holds it (bools as bytes, unsigned as signed)
_VIEW = {"bool": np.int8, "uint8": np.int8, "uint16": np.int16, "uint32": np.int32, "uint64": np.int64}


def _runtime() -> Any:
    import iree.runtime as rt  # noqa: PLC0415 - optional dependency

    return rt


def runtime_config(target: str = "llvm-cpu") -> Any:
    """One IREE runtime config (instance + device) per process and target: devices are heavy,
    and kernels sharing one device share its thread pool."""
    cfg = _configs.get(target)
    if cfg is None:
        with _config_lock:
            cfg = _configs.get(target)
            if cfg is None:
                cfg = _configs[target] = _runtime().Config(_DRIVERS[target])
    return cfg


_live: weakref.WeakSet[_Module] = weakref.WeakSet()


@atexit.register
def _release_all() -> None:
    for module in list(_live):
        module.release()
    _configs.clear()


def _as_storage(x: np.ndarray) -> np.ndarray:
    view = _VIEW.get(x.dtype.name)
    return x.view(view) if view is not None else x


def _padded(x: np.ndarray, pad: int) -> tuple[np.ndarray, int]:
    """``x`` (C-contiguous) as a flat array that starts at the 64-byte-aligned address at or below
    it and runs ``pad`` elements past its end, and the element offset where ``x`` starts in it.

    The kernel reads only ``x``'s own elements (``iree_emit.kernel_module(offset_inputs=True)``);
    the few bytes around them are named, never touched. An array not aligned to its element size
    (a view into raw bytes) is copied."""
    addr = x.ctypes.data
    skew = addr % _ALIGN
    if skew % x.itemsize:
        x = np.copy(x, order="C")         # rare: np.copy gives an element-aligned allocation
        addr = x.ctypes.data
        skew = addr % _ALIGN
        if skew % x.itemsize:
            raise DTypeError(f"could not place a {x.dtype} array on an element boundary for IREE")
    nbytes = (x.size + pad) * x.itemsize
    raw = (ctypes.c_byte * nbytes).from_address(addr - skew)
    raw.owner = x         # the view keeps x (perhaps a temporary copy) alive through the call
    return np.frombuffer(raw, dtype=x.dtype), skew // x.itemsize


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + _ALIGN, np.uint8)
    off = (-raw.ctypes.data) % _ALIGN
    return raw[off:off + nbytes].view(dtype).reshape(shape)


class _Module:
    """A loaded VM module's ``main``, called with NumPy arrays, returning NumPy arrays.

    Inputs reach IREE without its own copy: a 64-byte aligned contiguous array is imported as
    is (DLPack; the array stays alive until IREE releases it), any other is copied into a
    staging buffer this module keeps (IREE's own host-to-device path was ~8x slower than a
    plain copy, measured on the fused chain at 1e7 float32). On the CPU the results are
    written into aligned NumPy arrays passed as ``iree.abi.output`` arguments: each call's
    results are the caller's own arrays (IREE's own result buffers are reused by later calls),
    taken from the buffer pool (:func:`noodle.memory.outputs.out_buffer`), which hands one out
    again only after every reference to it is gone."""

    def __init__(self, vmfb: bytes, target: str) -> None:
        rt = _runtime()
        cfg = runtime_config(target)
        self.context = rt.SystemContext(config=cfg)
        self.context.add_vm_module(rt.VmModule.copy_buffer(self.context.instance, vmfb))
        self.main = self.context.modules.module["main"]
        self._device = cfg.device
        self._staging: dict[int, np.ndarray] = {}
        self._stage_lock = threading.Lock()
        _live.add(self)

    def release(self) -> None:
        """Drop the IREE objects (at exit: nanobind reports runtime objects alive at shutdown as leaks)."""
        self.main = self.context = self._device = None

    def _imported(self, arrays: list[Any], staging: dict[int, np.ndarray] | None) -> list[Any]:
        out = []
        for k, x in enumerate(arrays):
            if isinstance(x, int):              # a scalar argument (an input's element offset)
                out.append(x)
                continue
            if x.ctypes.data % _ALIGN or not x.flags.c_contiguous:
                buf = staging.get(k) if staging is not None else None
                if buf is None or buf.shape != x.shape or buf.dtype != x.dtype:
                    buf = _aligned_empty(x.shape, x.dtype)
                    if staging is not None:
                        staging[k] = buf
                np.copyto(buf, x)
                x = buf
            out.append(self._device.from_dlpack_capsule(x.__dlpack__()))
        return out

    def __call__(self, arrays: list[Any], emitted: Emitted) -> list[np.ndarray]:
        if not emitted.outputs_as_args:
            res = self.main(*arrays)
            if not isinstance(res, tuple | list):
                res = (res,)
            return [np.array(r.to_host() if hasattr(r, "to_host") else r) for r in res]   # copies
        # the caller's own arrays, reused from the pool once dropped (fresh pages: a third of the call)
        outs = [out_buffer(default_pool(), shape, np.dtype(dt), align=_ALIGN) for shape, dt in emitted.results]
        args = arrays + [_as_storage(o) for o in outs]
        try:
            if self._stage_lock.acquire(blocking=False):
                try:     # the staging buffers are reused: the call is synchronous
                    self.main(*self._imported(args, self._staging))
                finally:
                    self._stage_lock.release()
            else:        # another thread is in this kernel: stage into fresh buffers
                self.main(*self._imported(args, None))
        except RuntimeError as exc:
            if "DISCARD_WRITE" in str(exc):
                raise _FoldedToCopy(str(exc)) from exc
            raise
        return outs


class _FoldedToCopy(Exception):
    """IREE folded a result to a copy or a fill (``x + 0``, ``x * 1``, ``x - x``, ...), which needs
    discard-write access to its output; a caller-owned (DLPack-imported) array has only read and
    write, so the call failed before writing anything. The kernel switches, once, to the module
    variant that returns IREE's own results (copied), as ``iree_emit._has_trivial_result`` makes
    it from the start for the foldings it can see in the spec."""


def _call_folding_safe(kernel: Any, args: list[Any]) -> list[np.ndarray]:
    """The kernel's module called on ``args``; on :class:`_FoldedToCopy` the kernel's
    ``(emitted, module)`` pair becomes its own-results variant (``kernel._own_results()``, made
    once) and the call runs again (inputs are only read, and the failed call's outputs were never
    handed out). The pair is read and replaced as one object, so a thread calling meanwhile
    never pairs one variant's module with the other's calling convention."""
    emitted, module = kernel._active
    try:
        return module(args, emitted)
    except _FoldedToCopy as exc:
        with kernel._swap_lock:
            if kernel._active[0].outputs_as_args:
                if kernel._own_results is None:
                    raise CompileError(f"IREE kernel {kernel.spec.key()[:12]} cannot write into caller-owned "
                                       f"arrays and has no other variant: {exc}") from exc
                log.info("noodle.iree: kernel %s folded a result to a copy; it now returns IREE's own "
                         "results (one copy each): %s", kernel.spec.key()[:12], exc)
                kernel._active = kernel._own_results()     # raises CompileError where it cannot be made
                kernel.switched = True
        emitted, module = kernel._active
        return module(args, emitted)


class _Variants:
    """``emitted`` and ``module`` of the kernel's current variant (see :func:`_call_folding_safe`)."""

    _active: tuple[Emitted, _Module]

    @property
    def emitted(self) -> Emitted:
        return self._active[0]

    @property
    def module(self) -> _Module:
        return self._active[1]


class IreeKernel(_Variants, Kernel):
    """A compiled fused elementwise region, optionally ending in an exact (integer/extreme) reduction."""

    backend = "iree"
    folded_reduce_exact = False      # see _reduce_folded (set by the CPU backend)
    switched = False                 # set by _call_folding_safe when it swaps the variant

    def __init__(self, spec: KernelSpec, emitted: Emitted, module: _Module, from_cache: bool,
                 own_results: Any = None) -> None:
        self.spec = spec
        self._active = (emitted, module)       # swapped as one by _call_folding_safe
        self.from_cache = from_cache
        self._own_results = own_results       # () -> (Emitted, _Module) returning IREE's own results
        self._swap_lock = threading.Lock()
        self._in = [(np.dtype(d), tuple(s)) for d, s in spec.inputs]
        self._squeezed = list(emitted.in_shapes)
        self._out_dtypes = [np.dtype(spec.dtype_of(v)) for v in spec.outputs]
        self._shape = tuple(spec.shape)
        self._fences = emitted.fence_arrays()
        self._n_out = len(spec.outputs)
        red = spec.reduce                     # (what _reduce_folded asks on every call, made once)
        self._sum = red is not None and red.op in ("sum", "mean")
        self._sum_of_constants = red is not None and not reads_input(spec)[red.value]

    def _reduce_folded(self) -> bool:
        """A sum over values IREE folded to one value: IREE 3.x sums a folded (splat) tensor
        wrongly on the CPU (100 ones summed to 13), so such a kernel, whose work is a fill
        anyway, is computed by the reference evaluation. Folded: the values read no input, or
        the kernel had to switch to IREE's own results (:class:`_FoldedToCopy`)."""
        return self.folded_reduce_exact and self._sum and (self.switched or self._sum_of_constants)

    def _reference(self, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
        check_inputs(self.spec, inputs)
        with np.errstate(all="ignore"):              # as the kernel: NumPy's warnings are not raised
            return tuple(evaluate(self.spec, *inputs))

    def _prepare(self, inputs: tuple[Any, ...]) -> list[np.ndarray]:
        if len(inputs) != len(self._in):
            check_inputs(self.spec, inputs)
        out = []
        for x, (dt, shp), sq in zip(inputs, self._in, self._squeezed, strict=True):
            if type(x) is not np.ndarray or x.dtype != dt or x.shape != shp:
                check_inputs(self.spec, inputs)      # names the problem, or passes a size-1 scalar
                x = np.asarray(x, dtype=dt).reshape(shp)
            if not x.flags.c_contiguous:
                x = np.ascontiguousarray(x)
            x = _as_storage(x.reshape(sq))
            out.append(x)
        if self.emitted.offset_inputs:
            views, offsets = zip(*(_padded(x, input_padding(dt.name)) for x, (dt, _) in zip(out, self._in,
                                                                                             strict=True)),
                                 strict=True)
            return [*views, *offsets, *self._fences]
        return out + self._fences

    def __call__(self, *inputs: Any) -> tuple[Any, ...]:
        if self._reduce_folded():
            return self._reference(inputs)
        res = _call_folding_safe(self, self._prepare(inputs))
        if self._reduce_folded():        # this call switched it to IREE's own results
            return self._reference(inputs)
        if self.emitted.guarded and _any_set(res.pop()):
            _FALLBACKS.labels("elementwise").inc()
            with np.errstate(all="ignore"):          # as the kernel: NumPy's warnings are not raised
                return tuple(evaluate(self.spec, *inputs))
        outs: list[Any] = [r.view(dt).reshape(self._shape) for r, dt in zip(res, self._out_dtypes, strict=False)]
        red = self.spec.reduce
        if red is not None:
            r = res[self._n_out]
            acc = OP_TABLE[red.op].acc_dtype(self.spec.dtype_of(red.value))
            r = r.view(acc)
            if r.dtype.kind == "f":
                r = canonical_nan(r)
            r = np.asarray(r).astype(red.dtype, copy=False).reshape(red.shape)
            outs.append(r[()] if r.shape == () else r)
        return tuple(outs)


class IreeMatmulKernel(_Variants, Kernel):
    """``a @ b`` (``linalg.matmul``) with its epilogue fused into the same module."""

    backend = "iree"

    def __init__(self, spec: MatmulSpec, emitted: Emitted, module: _Module, from_cache: bool,
                 own_results: Any = None) -> None:
        self.spec = spec
        self._active = (emitted, module)       # swapped as one by _call_folding_safe
        self.from_cache = from_cache
        self._own_results = own_results       # () -> (Emitted, _Module) returning IREE's own results
        self._swap_lock = threading.Lock()
        ep = spec.epilogue
        self._extra = [(np.dtype(d), tuple(s)) for d, s in ep.inputs[1:]] if ep is not None else []
        self._out_dtype = np.dtype(ep.dtype_of(ep.outputs[0]) if ep is not None else spec.out_dtype)
        self._product_dtype = np.dtype(spec.out_dtype)
        self._float = self._product_dtype.kind == "f"

    def __call__(self, *inputs: Any) -> tuple[Any, ...]:
        spec = self.spec
        if len(inputs) != 2 + len(self._extra):
            raise ShapeError(f"this matmul kernel takes a, b and {len(self._extra)} epilogue operand(s); "
                             f"got {len(inputs)} inputs")
        arrays = []
        for k, (name, x, (dt, shp)) in enumerate((("a", inputs[0], spec.a), ("b", inputs[1], spec.b))):
            x = np.asarray(x)
            if x.shape != tuple(shp) or x.dtype != np.dtype(dt):
                cls = ShapeError if x.shape != tuple(shp) else DTypeError
                raise cls(f"matmul operand {name} is {x.dtype}{x.shape}, but the kernel was compiled for "
                          f"{dt}{tuple(shp)}; compile a kernel for this signature")
            arrays.append(_as_storage(np.ascontiguousarray(x).reshape(self.emitted.in_shapes[k])))
        if self._extra:
            assert spec.epilogue is not None
            for i, (x, (dt, shp)) in enumerate(zip(inputs[2:], self._extra, strict=True)):
                arr = np.asarray(x)
                if arr.shape != shp and not (arr.size == 1 and math.prod(shp) == 1):
                    raise ShapeError(f"matmul epilogue operand {i} has shape {arr.shape}, but the kernel was "
                                     f"compiled for {shp}; compile a kernel for this signature")
                if arr.dtype != dt:
                    raise DTypeError(f"matmul epilogue operand {i} has dtype {arr.dtype}, but the kernel was "
                                     f"compiled for {dt}; pass .astype({dt.name!r})")
                arr = np.ascontiguousarray(np.asarray(arr, dtype=dt).reshape(shp))
                arrays.append(_as_storage(arr.reshape(squeezed(shp))))
        if math.prod(spec.out_shape) == 0 or math.prod(spec.a[1]) == 0 or math.prod(spec.b[1]) == 0:
            return evaluate_matmul(spec, *inputs)
        if self._float and not _products_stay_normal(arrays[0], arrays[1], self._product_dtype):
            _FALLBACKS.labels("matmul").inc()
            return _exact_matmul(spec, inputs)
        res = _call_folding_safe(self, arrays + self.emitted.fence_arrays())
        if self.emitted.guarded and _any_set(res.pop()):
            _FALLBACKS.labels("matmul").inc()
            return _exact_matmul(spec, inputs)
        return (res[0].view(self._out_dtype).reshape(spec.out_shape),)


def _any_set(flags: np.ndarray) -> bool:
    """Whether any per-element hazard flag (0 or 1 bytes) is set.

    Why here and not an OR-reduction in the module: IREE fuses that reduction with the kernel's
    generic and then allocates the whole flag tensor on the stack (refused past 32 KiB);
    counting bytes in NumPy reads 1 byte per element, a few percent of the kernel's traffic."""
    return bool(np.count_nonzero(flags.view(np.bool_)))


def _exact_matmul(spec: MatmulSpec, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    with np.errstate(all="ignore"):
        return tuple(evaluate_matmul(spec, *inputs))


def _min_nonzero_magnitude(x: np.ndarray) -> float:
    """The smallest nonzero ``|x|`` (inf when all are zero; NaN sorts above inf), from the bit
    patterns: positive floats order as their bits, and ``bits - 1`` sends zero to the top."""
    if x.dtype.kind != "f":
        return 1.0            # a nonzero integer is at least 1
    bits = 32 if x.dtype.itemsize == 4 else 64
    uint = np.uint32 if bits == 32 else np.uint64
    mag = (x.view(uint) & uint((1 << (bits - 1)) - 1)) - uint(1)
    lowest = int(mag.min())
    if lowest == (1 << bits) - 1:             # every element is a zero
        return math.inf
    return float(np.array(lowest + 1, uint).view(x.dtype))


def _products_stay_normal(a: np.ndarray, b: np.ndarray, dtype: np.dtype) -> bool:
    """Whether flush-to-zero cannot move ``a @ b`` beyond a dot product's own rounding error.

    With every nonzero ``|a_ik * b_kj| >= tiny / eps``, no product underflows, and a partial sum
    flushed to zero loses less than ``tiny <= eps * sum |a_ik * b_kj|``: within the error bound
    any summation order already has. Otherwise (subnormal operands, tiny products) the call is
    recomputed exactly. One pass over each operand: cheap beside the O(m*k*n) product."""
    info = np.finfo(dtype)
    lo_a, lo_b = _min_nonzero_magnitude(a), _min_nonzero_magnitude(b)
    if math.isinf(lo_a) or math.isinf(lo_b):
        return True                           # an all-zero operand: every product is an exact zero
    # lo_a * lo_b >= tiny / eps, compared as mantissas and exponents: the float64 product of two
    # small float64s would underflow itself
    (ma, ea), (mb, eb) = math.frexp(lo_a), math.frexp(lo_b)
    mc, ec = math.frexp(float(info.tiny) / float(info.eps))
    shift = ea + eb - ec
    if shift > 2 or shift < -2:
        return shift > 0
    return math.ldexp(ma * mb, shift) >= mc


class IreeBackend(Backend):
    """MLIR via IREE for one target: "llvm-cpu" (this CPU) or "cuda" (sm_80 PTX)."""

    name = "iree"
    op_table = OP_TABLE

    def __init__(self, target: str = "llvm-cpu", cache_dir: str | Path | None = None) -> None:
        if target not in _DRIVERS:
            raise CompileError(f"unknown IREE target {target!r}; expected one of {', '.join(_DRIVERS)}")
        self.target = target
        self._outputs_as_args = target == "llvm-cpu"      # host memory is device memory there
        # None: <settings.cache_dir>/iree, read at each compile (settings may be reloaded)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._kernels: dict[str, Kernel] = {}
        self._lock = threading.Lock()

    def available(self) -> tuple[bool, str]:
        return _available(self.target)

    def _require(self) -> None:
        ok, why = self.available()
        if not ok:
            raise CompileError(f"the IREE backend is unavailable: {why}")

    def _load(self, emitted: Emitted, key: str) -> tuple[_Module, bool]:
        t0 = time.perf_counter()
        vmfb, hit = compile_cached(emitted.text, self.target, self.cache_dir)
        try:
            module = _Module(vmfb, self.target)
        except Exception as exc:
            raise CompileError(f"the IREE runtime could not load kernel {key}: {type(exc).__name__}: {exc}") from exc
        _KERNELS.labels(self.target, "disk" if hit else "compiled").inc()
        metrics.emit("jit.compile", backend="iree", key=key, seconds=time.perf_counter() - t0, from_cache=hit)
        return module, hit

    def _own_results(self, emit: Any, key: str) -> tuple[Emitted, _Module]:
        """The module variant whose results are IREE's own (see :class:`_FoldedToCopy`); ``emit()``
        gives its MLIR, emitted only when a kernel needs it."""
        emitted = emit()
        return emitted, self._load(emitted, key)[0]

    def compile_kernel(self, spec: KernelSpec) -> Kernel:
        key = spec.key()
        cached = self._kernels.get(key)
        if cached is not None:
            return cached
        self._require()
        _validate(self, spec)
        red = spec.reduce
        kernel: Kernel
        if red is not None and not _rule(red.op).exact_in_mlir(spec.dtype_of(red.value)):
            # a float sum/mean: the kernel writes the values, the defined-order sum reduces them
            kernel = SplitReduceKernel(spec, self.compile_kernel(values_spec(spec)))
        elif math.prod(spec.shape) == 0:
            kernel = _EmptyKernel(spec)
        else:
            emitted = kernel_module(spec, outputs_as_args=self._outputs_as_args, offset_inputs=self._outputs_as_args)
            module, hit = self._load(emitted, key)
            kernel = IreeKernel(spec, emitted, module, hit, functools.partial(
                self._own_results, functools.partial(kernel_module, spec, outputs_as_args=False,
                                                     offset_inputs=self._outputs_as_args), key))
            # on the CPU a kernel returns IREE's own results only where IREE folded them
            kernel.folded_reduce_exact = self._outputs_as_args
        with self._lock:
            return self._kernels.setdefault(key, kernel)

    def compile_matmul(self, spec: MatmulSpec) -> Kernel:
        key = spec.key()
        cached = self._kernels.get(key)
        if cached is not None:
            return cached
        self._require()
        if spec.epilogue is not None:
            _validate(self, spec.epilogue)
        emitted = matmul_module(spec, outputs_as_args=self._outputs_as_args)
        module, hit = self._load(emitted, key)
        kernel = IreeMatmulKernel(spec, emitted, module, hit, functools.partial(
            self._own_results, functools.partial(matmul_module, spec, outputs_as_args=False), key))
        with self._lock:
            return self._kernels.setdefault(key, kernel)

    def mlir(self, spec: KernelSpec | MatmulSpec) -> str:
        """The MLIR text this backend compiles for ``spec`` (what the cache's ``.mlir`` file holds)."""
        if isinstance(spec, MatmulSpec):
            return matmul_module(spec, outputs_as_args=self._outputs_as_args).text
        return kernel_module(spec, outputs_as_args=self._outputs_as_args, offset_inputs=self._outputs_as_args).text


class _EmptyKernel(Kernel):
    """A zero-size iteration space: NumPy defines the (empty or identity) results."""

    backend = "iree"

    def __init__(self, spec: KernelSpec) -> None:
        self.spec = spec

    def __call__(self, *inputs: Any) -> tuple[Any, ...]:
        check_inputs(self.spec, inputs)
        return evaluate(self.spec, *inputs)


def _rule(op: str) -> ReduceRule:
    rule = OP_TABLE.get(op)
    if not isinstance(rule, ReduceRule):
        raise CompileError(f"{op!r} is not a reduction the IREE backend knows")
    return rule


def _validate(backend: Backend, spec: KernelSpec) -> None:
    n_in, n_c = len(spec.inputs), len(spec.consts)
    for i, ins in enumerate(spec.body):
        for a in ins.args:
            if not 0 <= a < n_in + n_c + i:
                raise CompileError(f"spec instruction {i} ({ins.op}) reads value {a}, which is not defined before it")
        ok, why = backend.supports(ins.op)
        if not ok:
            raise CompileError(f"the IREE backend cannot compile {ins.op}: {why}")
    for v in spec.outputs:
        if not 0 <= v < spec.n_values:
            raise CompileError(f"spec output {v} is not a value of the spec (0..{spec.n_values - 1})")


@functools.lru_cache(maxsize=4)
def _available(target: str) -> tuple[bool, str]:
    try:
        importlib.import_module("iree.compiler")
        rt = importlib.import_module("iree.runtime")
    except Exception as exc:  # ImportError, or a broken native library
        return False, f"IREE is not installed ({exc}); pip install 'noodle[mlir]'"
    if target == "cuda":
        try:
            drivers = rt.query_available_drivers()
        except Exception as exc:  # noqa: BLE001 - a runtime without drivers
            return False, f"the IREE runtime lists no drivers: {exc}"
        if "cuda" not in drivers:
            return False, "this IREE runtime has no CUDA driver"
        try:
            runtime_config("cuda")
        except Exception as exc:  # noqa: BLE001 - no GPU, no libcuda
            return False, f"no CUDA device for IREE: {exc}"
    return True, ""


__all__ = ["IreeBackend", "IreeKernel", "IreeMatmulKernel", "runtime_config"]
