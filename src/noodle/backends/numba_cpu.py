"""The CPU backend: one generated Numba kernel per fused region, cached on disk.

Why this shape (measured on this machine, see ANCHORS.md):

* outputs go into buffers from :mod:`noodle.memory.pool` (tracked, so last
  call's dropped result is reused): fresh memory costs page faults, ~2x;
* ``exp``/``log``/``sin``/``cos``/``tanh`` on varying values run as NumPy
  SIMD ufuncs on 32 Ki-element blocks between serial ``nogil`` Numba stages,
  two Python threads splitting the blocks: Numba's ``exp`` is a scalar libm
  call (NumPy's was ~5x faster here), and a block stays in L2 between stages;
* never two threads below :func:`~noodle.backends.numba_threads.parallel_min`
  elements (thread start-up is microseconds and unbounded under contention);
* one compiled module per layout class, not per shape
  (:func:`~noodle.backends.numba_plan.generic_key`): a :class:`NumbaKernel` is the
  module plus this spec's sizes (its collapsed extents, passed as ``dims`` where
  the code needs them), so a function called with 50 lengths compiles once;
* Numba's default ``workqueue`` threading layer aborts when two threads launch
  parallel kernels at once: a lock guards parallel launches, and a caller that
  finds it busy runs the serial variant (same result: the chunking of
  reductions does not depend on the variant);
* the generated source is written to ``<cache_dir>/kernels/<key>.py`` and its
  functions use ``@njit(cache=True)`` with explicit signatures, so a second
  process imports the file and Numba loads the machine code from its cache
  instead of compiling.

Float sums: chunk partials (64 chunks, four accumulators each, float64
accumulators even for float32 inputs) combined by NumPy's pairwise sum. The
result differs from ``np.sum`` by rounding only: within ``rtol=1e-12`` of
``sum(|x|)`` for float64 inputs and ``1e-6`` for float32 (where ours is the
more accurate, accumulating in float64).

Example::

    from noodle.backends import get_backend
    kernel = get_backend("numba").compile_kernel(spec)
    (out,) = kernel(a, b)
"""

from __future__ import annotations

import importlib
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from noodle import metrics
from noodle.backends import numba_threads
from noodle.backends.base import Backend, Kernel, check_inputs, refuse_swapped
from noodle.backends.numba_cache import from_cache, kernel_dir, load_module
from noodle.backends.numba_codegen import generate
from noodle.backends.numba_emit import NUMBA_OPS
from noodle.backends.numba_plan import (
    BLOCK,
    PARALLEL_MIN,
    NumbaStep,
    Plan,
    UfuncStep,
    generic_key,
    n_partials,
    plan,
    unstaged_inputs,
)
from noodle.backends.numpy_loops import resolve
from noodle.backends.reference import evaluate
from noodle.backends.spec import KernelSpec, MatmulSpec, RowSpec
from noodle.backends.split_reduce import SplitReduceKernel, values_spec
from noodle.devices.detect import cpu_threads as n_threads
from noodle.errors import CompileError, DTypeError, ShapeError
from noodle.ir.reduction import canonical_extreme, canonical_nan, combine_chunks
from noodle.memory.outputs import out_buffer
from noodle.memory.pool import BufferPool, default_pool

_COMPILES = metrics.counter("noodle_jit_kernel_compiles_total", "fused kernels built by a backend",
                            ["backend", "source"])
_COMPILE_SECONDS = metrics.histogram("noodle_jit_kernel_compile_seconds", "time to build a fused kernel",
                                     ["backend"])
_SERIAL_FALLBACK = metrics.counter("noodle_jit_parallel_busy_total",
                                   "parallel launches run serially because another thread held the lock")

MAX_KERNELS = 4096      # exact-shape kernels remembered per backend (each is a module plus its sizes)
_local = threading.local()   # per-thread scratch buffers of the staged kernels


def __getattr__(name: str) -> Any:
    # ``numba_cpu._par_lock`` (read by the modular-arithmetic kernels): the lock now lives in
    # noodle.backends.numba_threads, shared by every parallel Numba launch
    if name == "_par_lock":
        return numba_threads.parallel_lock()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class NumbaKernel(Kernel):
    """A compiled fused elementwise region (optionally ending in a reduction)."""

    backend = "numba"

    def __init__(self, spec: KernelSpec, module: Any, p: Plan, pool: BufferPool, from_cache: bool) -> None:
        self.spec = spec
        self.plan = p
        self.module = module    # None for an empty space (NumPy defines its results)
        self.pool = pool
        self.from_cache = from_cache
        self.source_path = Path(module.__file__) if module is not None else None
        self._n = n = int(p.n)
        # this spec's collapsed extents: the generic module reads its sizes from them (or from
        # the arrays themselves); a kernel built later reads a changed threshold
        self._dims = np.array(p.shape, np.int64)
        self._dims_arg = (self._dims,) if getattr(module, "DIMS", False) else ()
        self._parallel = n * numba_threads.work_weight(spec) >= numba_threads.parallel_min() and n_threads() > 1
        self._in_dtypes = [np.dtype(d) for d, _ in spec.inputs]
        self._in_shapes = [tuple(s) for _, s in spec.inputs]
        self._out_dtypes = [np.dtype(spec.dtype_of(v)) for v in spec.outputs]
        self._shape = tuple(spec.shape)
        self._all_1d = all(len(s) == 1 for s in self._in_shapes) and len(self._shape) == 1
        # only small kernels: their k_ser has an explicit signature, so a wrong dtype is a
        # TypeError; a large kernel's lazily compiled k_ser would compile for any dtype
        # 0-d inputs (a CG step's alpha) go to the direct path as one-element views: without
        # them an 800-element update took the general path, 2.5 µs against NumPy's 1
        self._scalars = tuple(k for k, s in enumerate(self._in_shapes) if s == ())
        flat = all(len(s) <= 1 for s in self._in_shapes) and len(self._shape) == 1
        self._direct = flat and p.mode != "stages" and 0 < n and not self._parallel
        # the serial kernel taking the 0-d inputs as scalars (see numba_codegen.scalar_entry)
        self._ksc = getattr(module, "k_sc", None) if self._direct and self._scalars else None
        self._sc_types = tuple((k, np.dtype(spec.inputs[k][0]).type) for k in self._scalars)
        self._n_part = n_partials(p) if spec.reduce is not None and p.n > 0 else 0
        self._small_out = all(p.n * dt.itemsize < pool.min_bytes for dt in self._out_dtypes)
        self._par = getattr(module, "k_par", None) if self._parallel else None
        self._ser = getattr(module, "k_ser", None)
        red = spec.reduce
        self._acc = np.dtype(p.acc_dtype) if red is not None else None
        # elements a mean divides by: the reduced dims of the shared collapsed layout (size-1
        # dims dropped, neighbours merged: the product is the same), computed once, not per call
        self._mean_count = math.prod(s for s, r in zip(p.shape, p.reduced, strict=True) if r)
        if p.mode == "stages" and module is not None:
            step_args = module.STEP_ARGS
            for step in p.stages:
                if isinstance(step, NumbaStep):
                    step.args = list(step_args[step.index])
            self._steps = [_runnable(step, module) for step in p.stages]
            self._scratch_dtypes = [np.dtype(d) for d in p.scratch_dtypes]
            self._block = BLOCK  # fixed per kernel: the per-thread scratch is sized by it
        # the generated one-block driver (spaces of at most one block): no per-step lookups
        one_block = p.mode == "stages" and 0 < n <= BLOCK
        self._run1 = getattr(module, "run1", None) if one_block else None
        self._unstaged_inputs = unstaged_inputs(p, len(spec.inputs)) if p.mode == "stages" else ()
        self._run1a = (getattr(module, "run1a", None) if one_block and self._all_1d and self._small_out
                       else None)
        # the compiled one-block drivers, where NumPy gives a loop of its own for every ufunc step
        self._loop_args: tuple[Any, ...] = ()
        self._runb = None
        found = resolve(module.LOOPS) if p.mode == "stages" and hasattr(module, "runb") else None
        if found is not None:
            self._loops, lp = found   # the handles' capsules own what the addresses point to
            self._loop_args = (lp,)
            self._runb = module.runb
            if one_block:
                self._run1 = module.run1n
                if self._run1a is not None:
                    self._run1a = module.run1an

    # ----------------------------------------------------------------- inputs
    def _prepare(self, inputs: tuple[Any, ...]) -> list[np.ndarray]:
        if len(inputs) != len(self._in_dtypes):
            check_inputs(self.spec, inputs)
        flat = []
        for x, dt, shp in zip(inputs, self._in_dtypes, self._in_shapes, strict=True):
            if type(x) is not np.ndarray or x.dtype != dt or x.shape != shp:
                arr = np.asarray(x)
                if arr.dtype != dt or (arr.shape != shp and not (arr.size == 1 and int(np.prod(shp)) == 1)):
                    check_inputs(self.spec, inputs)
                    raise ShapeError(f"kernel inputs do not match the compiled spec (input shape {arr.shape})")
                x = arr
            if not x.flags.c_contiguous:
                x = np.ascontiguousarray(x)
            elif not x.flags.writeable:
                # a read-only array (np.frombuffer, a read-only memmap) is another type to Numba's
                # compiled signatures: a copy is read instead, where before the signature fell
                # back to the interpreter for good
                x = x.copy()
            flat.append(x.reshape(-1))
        return flat

    # ------------------------------------------------------------------- call
    def __call__(self, *inputs: Any) -> tuple[Any, ...]:
        refuse_swapped(self.spec, inputs)   # the public call: arrays from anywhere
        return self._run_inputs(*inputs)

    def _run_inputs(self, *inputs: Any) -> tuple[Any, ...]:
        """:meth:`__call__` without the byte-order check (0.6 µs on five inputs): what a JIT runner
        calls (:meth:`entry`), whose arrays the JIT has already put in native order."""
        run1a = self._run1a
        if run1a is not None:
            # a small 1-D staged kernel: the generated driver checks sizes and allocates outputs;
            # a wrong dtype or layout is a TypeError from Numba's dispatcher before anything runs
            try:
                res = run1a(self._n, self._dims, *inputs, *self._loop_args)
            except (TypeError, AttributeError, ValueError, IndexError):
                # the slow path converts what it can (a one-element input of another shape) and
                # names what does not fit; never the unchecked one-block driver
                outs = [np.empty(self._shape, dt) for dt in self._out_dtypes]
                return self.run(self._prepare(inputs), outs)
            return res if self._acc is None else (*res[:-1], self._finish(res[-1]))
        if self._small_out:  # a few KiB: malloc's free lists serve it without page faults
            outs = [np.empty(self._shape, dt) for dt in self._out_dtypes]
        else:
            outs = [out_buffer(self.pool, self._shape, dt) for dt in self._out_dtypes]
        if self._direct:
            # fast path: the generated kernel checks the operand sizes itself and returns False
            # when they do not fit; Numba's dispatcher raises TypeError for a wrong dtype or a
            # non-contiguous array before running anything. Either way the slow path names why.
            part = np.empty(self._n_part, self._acc) if self._acc is not None else None
            try:
                if self._scalars:   # (a runner calls entry(), which passes them as scalars to k_sc)
                    flat_in = list(inputs)
                    for k in self._scalars:
                        flat_in[k] = flat_in[k].reshape(1)   # a NumPy scalar has reshape too
                    inputs = tuple(flat_in)
                args = (*inputs, *outs) if part is None else (*inputs, *outs, part)
                ok = self._launch(args + self._dims_arg)
            except (TypeError, AttributeError, ValueError, IndexError):
                ok = False   # the slow path below names what does not fit
            if ok:
                return tuple(outs) if part is None else (*outs, self._finish(part))
        elif self._all_1d and self.plan.mode == "stages":
            # fast path (~1 µs saved on small calls): 1-D arrays of the right shape go straight to
            # Numba, whose dispatcher rejects a wrong dtype or a non-contiguous array with a
            # TypeError before running anything; then the slow path below names the problem.
            try:
                for x, shp in zip(inputs, self._in_shapes, strict=True):
                    if x.shape != shp:
                        raise TypeError
                for k in self._unstaged_inputs:   # read only by ufuncs: no dispatcher checks them
                    if inputs[k].dtype != self._in_dtypes[k]:
                        raise TypeError
                if self._run1 is None:
                    return self.run(inputs, outs)  # type: ignore[arg-type]
                if self._acc is None:
                    self._run1(self._n, self._dims, *inputs, *outs, *self._loop_args)
                    return tuple(outs)
                part = np.empty(self._n_part, self._acc)
                self._run1(self._n, self._dims, *inputs, *outs, part, *self._loop_args)
                return (*outs, self._finish(part))
            except (TypeError, AttributeError, ValueError):
                pass
        return self.run(self._prepare(inputs), outs)

    def entry(self) -> Callable[..., tuple[Any, ...]]:
        """The function a runner calls for this kernel: for a small serial 1-D kernel, a generated
        one of fixed arity that does only what the checked path must (exact scalar types, fresh
        outputs) and lets Numba's dispatcher check the arrays against the explicit signature;
        anything it does not take (a TypeError from the dispatcher, a size the kernel refuses)
        goes to :meth:`__call__`, which names the problem. Else :meth:`_run_inputs`, the kernel's
        call without the byte-order check a public call makes (the JIT hands over native arrays).

        Why: a CG iteration calls three such kernels on 800 elements; the general ``__call__``
        (lists of inputs and outputs, a loop over the scalars, the tuples) cost about as much as
        the kernel's work and the dispatch together (2.0 µs against NumPy's 1.1 for the two ops
        it fuses)."""
        if not (self._direct and self._small_out and self._run1a is None) or self.module is None:
            return self._run_inputs
        ker = self._ksc if self._scalars else self._ser
        if ker is None:   # (no k_sc: float32 0-d inputs keep the one-element arrays of __call__)
            return self._run_inputs
        n_in = len(self._in_dtypes)
        args = [f"a{k}" for k in range(n_in)]
        env: dict[str, Any] = {"ker": ker, "slow": self.__call__, "empty": np.empty, "shape": self._shape,
                               "finish": self._finish, "npart": self._n_part, "acc": self._acc}
        # each 0-d input as a NumPy scalar of its exact type (a 0-d array of it is read as one);
        # anything else, a Python float included, goes to the checked path
        checks = []
        env["ndarray"] = np.ndarray
        for k, t in self._sc_types:
            env[f"T{k}"] = t
            checks += [f"if type(a{k}) is not T{k}:",
                       f"    if type(a{k}) is not ndarray or a{k}.shape != () or a{k}.dtype.type is not T{k}:",
                       f"        return slow({', '.join(args)})",
                       f"    a{k} = a{k}[()]"]
        outs = []
        for j, dt in enumerate(self._out_dtypes):
            env[f"D{j}"] = dt
            outs.append(f"o{j}")
        call = args + outs
        lines = [f"def call({', '.join(args)}):"]
        body = [f"o{j} = empty(shape, D{j})" for j in range(len(outs))]
        if self._acc is not None:
            body.append("part = empty(npart, acc)")
            call.append("part")
        if self._dims_arg:
            env["dims"] = self._dims_arg[0]
            call.append("dims")
        result = "(" + "".join(f"{o}, " for o in outs) + ("finish(part)," if self._acc is not None else "") + ")"
        body += ["try:", f"    ok = ker({', '.join(call)})",
                 "except (TypeError, ValueError, AttributeError, IndexError):",
                 "    ok = False", "if ok:", f"    return {result}"]
        lines += ["    " + b for b in checks + body]
        lines.append(f"    return slow({', '.join(args)})")
        exec(compile("\n".join(lines) + "\n", f"<noodle kernel entry {self.spec.key()[:12]}>", "exec"), env)  # noqa: S102
        fn: Callable[..., tuple[Any, ...]] = env.pop("call")   # (no cycle through its globals)
        fn.kernel = self  # type: ignore[attr-defined]   # whose entry it is (a native entry calls ker)
        return fn

    def native_target(self) -> Any:
        """For a small serial 1-D kernel with no reduction, the compiled function :meth:`__call__`
        (or :meth:`entry`) calls for this shape and its arguments: the one-block driver ``run1n``
        of a staged kernel, or ``k_ser``; None otherwise (a reduction's partials are finished in
        Python, scalar inputs are converted, large outputs come from the pool or a region)."""
        from noodle.backends.numba_native_call import NativeTarget

        if self.module is None or self._acc is not None or not self._small_out:
            return None
        n_in, n_out = len(self._in_dtypes), len(self._out_dtypes)
        ins = tuple(("scalar" if k in self._scalars else "in", k) for k in range(n_in))
        outs = tuple(("out", j) for j in range(n_out))
        common = {"out_dtypes": tuple(self._out_dtypes), "out_shape": self._shape}
        if self._run1a is not None and not self._scalars and hasattr(self._run1, "overloads") \
                and len(self._loop_args) == 1:
            lp = self._loop_args[0]
            return NativeTarget(self._run1, (("int", self._n), ("const", self._dims), *ins, *outs, ("const", lp)),
                                returns_ok=False, keep=(self._dims, lp, self._loops), **common)
        ker = self._ksc if self._scalars else self._ser   # (as entry() picks it)
        if self._direct and self._run1a is None and hasattr(ker, "overloads"):
            dims = (("const", self._dims),) if self._dims_arg else ()
            return NativeTarget(ker, (*ins, *outs, *dims), returns_ok=True, keep=(self._dims,), **common)
        return None

    def run(self, ins: list[np.ndarray], outs: list[np.ndarray]) -> tuple[Any, ...]:
        """Run on prepared flat inputs into given full-shape outputs (used for in-place epilogues)."""
        if self._n == 0:
            return self._empty(ins, outs)
        flat_outs = outs if len(self._shape) == 1 else [o.reshape(-1) for o in outs]
        red = self.spec.reduce
        mode = self.plan.mode
        if mode == "stages":
            partial = self._run_stages(ins, flat_outs)
        else:
            part = None
            if red is not None:
                part = np.empty(self._n_part, self._acc)
                args = (*ins, *flat_outs, part, *self._dims_arg)
            else:
                args = (*ins, *flat_outs, *self._dims_arg)
            if not self._launch(args):
                raise ShapeError(f"kernel {self.spec.key()}: operand sizes do not match the compiled spec")
            partial = part
        result = tuple(outs)
        if red is not None:
            result += (self._finish(partial),)
        return result

    def _launch(self, args: tuple[Any, ...]) -> bool:
        lock = numba_threads.parallel_lock()
        if self._par is not None and lock.acquire(blocking=False):
            try:
                if not self._par.signatures:   # compiled on first use (or loaded from disk): count it
                    return _first_parallel(self._par, args)
                return self._par(*args)
            finally:
                lock.release()
        if self._par is not None:
            _SERIAL_FALLBACK.inc()
        return self._ser(*args)

    def _finish(self, partial: np.ndarray) -> Any:
        """The chunk values of a 1-D full reduction combined in the defined order."""
        red = self.spec.reduce
        assert red is not None
        if red.op in ("sum", "mean"):
            combined = (canonical_nan(combine_chunks(partial)) if partial.dtype.kind == "f"
                        else partial.sum(dtype=partial.dtype))
        else:
            combined = canonical_extreme(red.op, partial.max() if red.op == "max" else partial.min(), partial, None)
        if red.op == "mean":
            with np.errstate(all="ignore"):
                combined = np.asarray(combined, dtype=np.float64) / self._mean_count
        res = np.asarray(combined).astype(red.dtype, copy=False).reshape(red.shape)
        return res[()] if res.shape == () else res

    def _empty(self, ins: list[np.ndarray], outs: list[np.ndarray]) -> tuple[Any, ...]:
        """Zero-size iteration space: NumPy defines the (empty or identity) results."""
        shaped = [x.reshape(s) for x, s in zip(ins, self._in_shapes, strict=True)]
        ref = evaluate(self.spec, *shaped)
        for o, r in zip(outs, ref, strict=False):
            o[...] = r
        return tuple(outs) + tuple(ref[len(outs):])

    # ------------------------------------------------------------ stages mode
    def _scratch(self) -> list[np.ndarray]:
        cache = getattr(_local, "scratch", None)
        if cache is None:
            cache = _local.scratch = {}
        key = (self._block, *self._scratch_dtypes)
        bufs = cache.get(key)
        if bufs is None:
            bufs = cache[key] = [np.empty(self._block, d) for d in self._scratch_dtypes]
        return bufs

    def _blocks(self, ins: list[np.ndarray], outs: list[np.ndarray], blocks: Any,
                partials: np.ndarray | None) -> None:
        """Process block indices drawn from ``blocks`` (a shared iterator: dynamic scheduling, so a
        descheduled thread on a busy machine does not hold the others up)."""
        t = self._scratch()
        n = self._n
        block = self._block
        if self._runb is not None:   # compiled: its stages and NumPy's loops, block after block
            args = (self._dims, *ins, *outs, *(() if partials is None else (partials,)), *t, *self._loop_args)
            if isinstance(blocks, range):   # this thread alone: every block in one call
                self._runb(blocks.start * block, min(n, blocks.stop * block), *args)
                return
            for blk in blocks:
                lo = blk * block
                self._runb(lo, min(n, lo + block), *args)
            return
        for blk in blocks:
            lo = blk * block
            hi = min(n, lo + block)
            m = hi - lo
            for step in self._steps:
                if step["kind"] == "ufunc":
                    srcs = [_ufunc_operand(src, ins, t, lo, hi, m) for src in step["srcs"]]
                    if step["cast"]:
                        step["fn"](*srcs, out=t[step["dst"]][:m], dtype=step["dtype"])
                    else:
                        step["fn"](*srcs, out=t[step["dst"]][:m])
                else:
                    arrays = {"i": ins, "t": t, "o": outs, "p": (partials,), "d": (self._dims,)}
                    step["fn"](lo, hi, *[arrays[kind][k] for kind, k in step["args"]])

    def _run_stages(self, ins: list[np.ndarray], outs: list[np.ndarray]) -> np.ndarray | None:
        n = self._n
        if self._run1 is not None:
            part = np.empty(self._n_part, self._acc) if self._acc is not None else None
            self._run1(n, self._dims, *ins, *outs, *(() if part is None else (part,)), *self._loop_args)
            return part
        nb = (n + self._block - 1) // self._block
        partials = np.empty(self._n_part, self._acc) if self.spec.reduce is not None else None
        workers = min(n_threads(), nb) if self._parallel else 1
        if workers == 1:
            self._blocks(ins, outs, range(nb), partials)
            return partials
        shared = iter(range(nb))  # next() on a range iterator is atomic under the GIL
        pool = numba_threads.workers()
        futures = [pool.submit(self._blocks, ins, outs, shared, partials) for _ in range(1, workers)]
        self._blocks(ins, outs, shared, partials)
        for f in futures:
            f.result()
        return partials


def _first_parallel(par: Any, args: tuple[Any, ...]) -> bool:
    """The first launch of a module's parallel variant: Numba compiles it (or loads it from its
    disk cache) now; counted like a module build."""
    t0 = time.perf_counter()
    ok = par(*args)
    hit = bool(getattr(par.stats, "cache_hits", None))
    _COMPILES.labels("numba", "disk" if hit else "compiled").inc()
    _COMPILE_SECONDS.labels("numba").observe(time.perf_counter() - t0)
    return ok


def _runnable(step: UfuncStep | NumbaStep, module: Any) -> dict[str, Any]:
    """A planned stage bound to what runs it: NumPy's ufunc (constants made once, not per block)
    or the generated Numba function."""
    if isinstance(step, UfuncStep):
        srcs = [("k", np.asarray(src[2], dtype=src[1])) if src[0] == "c" else src for src in step.srcs]
        return {"kind": "ufunc", "fn": getattr(np, step.fn), "srcs": srcs, "dst": step.dst, "cast": step.cast,
                "dtype": step.dtype}
    return {"kind": "numba", "fn": getattr(module, f"s{step.index}"), "args": step.args}


def _ufunc_operand(src: tuple, ins: list[np.ndarray], t: list[np.ndarray], lo: int, hi: int, m: int) -> Any:
    """A ufunc step's operand for block ``[lo, hi)``: an input slice, a scratch buffer, a
    one-element input (broadcast by NumPy) or a constant."""
    kind = src[0]
    if kind == "in":
        return ins[src[1]][lo:hi]
    if kind == "t":
        return t[src[1]][:m]
    if kind == "u":
        return ins[src[1]][:1]
    return src[1]   # "k": a constant, as a 0-d array of its dtype


class NumbaMatmulKernel(Kernel):
    """``a @ b`` through BLAS into a pooled buffer, then the epilogue in place in one pass."""

    backend = "numba"

    def __init__(self, spec: MatmulSpec, epilogue: NumbaKernel | None, pool: BufferPool) -> None:
        self.spec = spec
        self.epilogue = epilogue
        self.pool = pool
        self._dtype = np.dtype(spec.out_dtype)
        self._shape = tuple(spec.out_shape)
        # checked on every call: kept as NumPy's own objects so the check is a few comparisons
        # (a loop's body calls small products thousands of times: a CG step's dots)
        self._a = (tuple(spec.a[1]), np.dtype(spec.a[0]))
        self._b = (tuple(spec.b[1]), np.dtype(spec.b[0]))
        # a dot product (a CG step has two): NumPy's own result, no pooled buffer
        self._plain_dot = not self._shape and epilogue is None and self._a[1] == self._b[1] == self._dtype

    def entry(self) -> Callable[..., tuple[Any, ...]]:
        """The function a runner calls: for a dot product (two 1-D operands, no epilogue), one that
        checks the operands' exact type, shape and dtype and calls NumPy's ``matmul``; anything
        else goes to :meth:`__call__` (which names what does not fit). Else the kernel itself.
        Why: a CG iteration takes two dots of 800 elements, 0.7 µs each in NumPy; the general
        ``__call__`` added 0.6 µs to each."""
        if not self._plain_dot or len(self._a[0]) != 1 or len(self._b[0]) != 1:
            return self
        (sa, da), (sb, db) = self._a, self._b
        ndarray, matmul, asarray, slow = np.ndarray, np.matmul, np.asarray, self.__call__

        def dot(a: Any, b: Any) -> tuple[Any, ...]:
            if (type(a) is ndarray and type(b) is ndarray and a.shape == sa and b.shape == sb
                    and a.dtype == da and b.dtype == db):
                return (asarray(matmul(a, b)),)
            return slow(a, b)

        return dot

    def __call__(self, *inputs: Any) -> tuple[Any, ...]:
        if len(inputs) < 2:
            raise ShapeError(f"a matmul kernel takes a, b and the epilogue's extra operands; got {len(inputs)}")
        a, b = inputs[0], inputs[1]
        if type(a) is not np.ndarray or type(b) is not np.ndarray:
            a, b = np.asarray(a), np.asarray(b)
        (a_shape, a_dtype), (b_shape, b_dtype) = self._a, self._b
        if a.shape != a_shape or a.dtype != a_dtype or b.shape != b_shape or b.dtype != b_dtype:
            for name, x, (shp, dt) in (("a", a, self._a), ("b", b, self._b)):
                if x.shape != shp or x.dtype != dt:
                    # the same error classes as check_inputs gives a fused kernel's inputs
                    cls = ShapeError if x.shape != tuple(shp) else DTypeError
                    raise cls(f"matmul operand {name} is {x.dtype}{x.shape}, but the kernel was compiled for "
                              f"{dt}{shp}; compile a kernel for this signature")
        if self._plain_dot:
            return (np.asarray(np.matmul(a, b)),)
        out = out_buffer(self.pool, self._shape, self._dtype)
        if a.dtype != self._dtype or b.dtype != self._dtype:
            # as NumPy's matmul casts an operand: into a C-ordered copy (its BLAS call, so its
            # bits, follow the layout: passes/layout); an operand of the right dtype is read as it is
            cast = self._dtype
            np.matmul(a if a.dtype == cast else np.ascontiguousarray(a, cast),
                      b if b.dtype == cast else np.ascontiguousarray(b, cast), out=out)
        else:
            np.matmul(a, b, out=out)
        if self.epilogue is not None:
            ep = self.epilogue
            ins = ep._prepare((out, *inputs[2:]))
            ep.run(ins, [out])
        return (out,)


class NumbaBackend(Backend):
    """Numba CPU code generation (see the module docstring)."""

    name = "numba"
    op_table = NUMBA_OPS

    def __init__(self, pool: BufferPool | None = None, cache_dir: str | Path | None = None) -> None:
        self.pool = pool if pool is not None else default_pool()
        # None: <settings.cache_dir>/kernels, read at each compile (settings may be reloaded)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._kernels: dict[str, Kernel] = {}     # spec key -> kernel (cheap: sizes + a module)
        self._modules: dict[str, tuple[Any, bool]] = {}   # generic key -> (module, from disk)
        self._lock = threading.Lock()

    def available(self) -> tuple[bool, str]:
        try:
            importlib.import_module("numba")
        except Exception as exc:  # ImportError, or a broken llvmlite
            return False, f"numba cannot be imported: {exc}"
        return True, ""

    def source(self, spec: KernelSpec) -> str:
        """The generated module source for ``spec``'s layout class (what the cache file holds)."""
        return generate(spec, plan(spec))

    def module_count(self) -> int:
        """Generated modules built or loaded by this backend (one per layout class)."""
        return len(self._modules)

    def compile_kernel(self, spec: KernelSpec) -> NumbaKernel:
        key = spec.key()
        cached = self._kernels.get(key)
        if cached is not None:
            return cached  # type: ignore[return-value]
        ok, why = self.available()
        if not ok:
            raise CompileError(f"the numba backend is unavailable: {why}")
        _validate(spec)
        t0 = time.perf_counter()
        p = plan(spec)
        if p.mode == "split":
            kernel: Kernel = SplitReduceKernel(spec, self.compile_kernel(values_spec(spec)), float_sum=_ordered_sum)
            with self._lock:
                self._kernels.setdefault(key, kernel)
            return self._kernels[key]  # type: ignore[return-value]
        if p.n == 0:   # nothing to run: NumPy defines the (empty or identity) results
            return self._keep(key, NumbaKernel(spec, None, p, self.pool, False))
        gkey = generic_key(spec, p)
        built = self._modules.get(gkey)
        if built is None:
            source = generate(spec, p)
            try:
                module = load_module(gkey, source, self.cache_dir)
            except (DTypeError, ShapeError):
                raise
            except Exception as exc:
                raise CompileError(f"numba failed to compile kernel {key}: {type(exc).__name__}: {exc}") from exc
            built = (module, from_cache(module))
            dt = time.perf_counter() - t0
            _COMPILES.labels("numba", "disk" if built[1] else "compiled").inc()
            _COMPILE_SECONDS.labels("numba").observe(dt)
            metrics.emit("jit.compile", backend="numba", key=gkey, mode=p.mode, seconds=dt, from_cache=built[1])
            with self._lock:
                built = self._modules.setdefault(gkey, built)
        return self._keep(key, NumbaKernel(spec, built[0], p, self.pool, built[1]))

    def _keep(self, key: str, kernel: Kernel) -> Any:
        """Remember ``kernel`` for its exact spec (bounded: a kernel is cheap to rebuild from its
        module, and a process that sees many shapes must not grow without limit)."""
        with self._lock:
            if len(self._kernels) >= MAX_KERNELS:
                self._kernels.pop(next(iter(self._kernels)))
            return self._kernels.setdefault(key, kernel)

    def compile_rowwise(self, spec: RowSpec) -> Kernel:
        """A row-wise region (softmax, layernorm) as one kernel (:mod:`noodle.backends.numba_rowwise`)."""
        key = "row_" + spec.key()
        cached = self._kernels.get(key)
        if cached is not None:
            return cached
        ok, why = self.available()
        if not ok:
            raise CompileError(f"the numba backend is unavailable: {why}")
        from noodle.backends.numba_rowwise import compile_rowwise  # noqa: PLC0415 - compiles Numba code

        kernel = compile_rowwise(spec, self.cache_dir)
        with self._lock:
            self._kernels.setdefault(key, kernel)
        return self._kernels[key]

    def compile_matmul(self, spec: MatmulSpec) -> NumbaMatmulKernel:
        if len(spec.a[1]) < 1 or len(spec.b[1]) < 1:
            raise ShapeError("matmul operands must have at least one dimension")
        ep = None
        if spec.epilogue is not None:
            e = spec.epilogue
            if tuple(e.inputs[0][1]) != tuple(spec.out_shape) or e.inputs[0][0] != spec.out_dtype:
                raise ShapeError("the epilogue's input 0 must be the product (out_dtype, out_shape)")
            if len(e.outputs) != 1 or e.reduce is not None or tuple(e.shape) != tuple(spec.out_shape) \
                    or e.dtype_of(e.outputs[0]) != spec.out_dtype:
                raise ShapeError("a matmul epilogue must write one output of the product's dtype and shape")
            ep = self.compile_kernel(e)
        return NumbaMatmulKernel(spec, ep, self.pool)


def _ordered_sum(x: np.ndarray, axes: tuple[int, ...]) -> Any:
    """The Numba kernels of the defined-order sum (imported at first use: they compile on import)."""
    from noodle.backends.numba_reduce import ordered_sum_fast  # noqa: PLC0415 - compiles Numba code

    return ordered_sum_fast(x, axes)


def _validate(spec: KernelSpec) -> None:
    n_values = spec.n_values
    n_in, n_c = len(spec.inputs), len(spec.consts)
    for i, ins in enumerate(spec.body):
        for a in ins.args:
            if not 0 <= a < n_in + n_c + i:
                raise CompileError(f"spec instruction {i} ({ins.op}) reads value {a}, which is not defined before it")
    for v in spec.outputs:
        if not 0 <= v < n_values:
            raise CompileError(f"spec output {v} is not a value of the spec (0..{n_values - 1})")
    if spec.reduce is not None and not 0 <= spec.reduce.value < n_values:
        raise CompileError(f"spec reduction reads value {spec.reduce.value}, not a value of the spec")


__all__ = ["NumbaBackend", "NumbaKernel", "NumbaMatmulKernel", "PARALLEL_MIN", "kernel_dir"]
