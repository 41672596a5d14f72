"""``@noodle.jit``: trace once per signature, interpret until hot, then run fused kernels.

Example::

    import numpy as np, noodle as nd

    @nd.jit
    def chain(a, b, c, d, e):
        return a * b + c * d - 0.5 * nd.exp(-e)

    x = np.random.rand(1_000_000)
    chain.compile(x, x, x, x, x)     # -> "numba" (or "interpret" where no backend works)
    y = chain(x, x, x, x, x)         # one fused, parallel kernel
    print(chain.nir(x, x, x, x, x))  # the optimized NIR, fused groups marked [gN]
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import types
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from noodle.backends.numba_native_call import native_entries
from noodle.config import get_settings
from noodle.errors import ConfigError, TraceError
from noodle.exec.state import ProgramState, parse_hot_threshold
from noodle.ir.graph import DTYPE_SET
from noodle.jit.fastpath import (
    MISS,
    NATIVE_AFTER,
    arg_specs,
    build_fast_path,
    build_native_fast_path,
    no_fast_path,
)
from noodle.jit.fperrors import fp_traps
from noodle.passes import optimize
from noodle.trace import is_array, native_byte_order
from noodle.trace.tracer import Concretize, Tracer, trace_with_context

_BACKENDS = (None, "auto", "numba", "iree", "cuda", "interpret")
_DEVICES = ("auto", "cpu", "cuda", "gpu")
_ndarray = np.ndarray
_SCALAR_TYPES = (float, int, bool)
MAX_VARIANTS = 8        # guard variants kept per signature (captured values seen)
#: ops whose result may be a view of their first operand's memory when run
_VIEW_OPS = frozenset({"reshape", "transpose", "broadcast_to", "slice"})
log = logging.getLogger("noodle.jit")


class _Entry:
    """One traced program for one signature and one set of captured values."""

    __slots__ = ("__weakref__", "check", "fast", "key", "out_actions", "params", "positions", "specs", "state")

    def __init__(self, state: ProgramState, positions: tuple[int, ...] | None, params: frozenset[int],
                 check: Callable[[tuple], tuple | None] | None, actions: tuple[Any, ...] = ()) -> None:
        self.state = state
        self.key: tuple = ()            # the signature key it is cached under
        self.specs: tuple | None = None  # per argument what the fast path checks (None: no fast path)
        self.fast: Callable[[tuple], Any] | None = None   # built once, at its first compiled call
        self.positions = positions      # argument positions of the program's inputs (None: all)
        self.params = params            # those of them that are scalar parameters (0-d inputs)
        self.check = check              # guards; returns the implicit inputs, None when stale
        # per output what to do before returning it (None when nothing: the common case); see
        # _output_actions: a NumPy scalar, a copy, the same object as an earlier output, a value
        self.out_actions = actions if any(a is not None for a in actions) else None


#: held while a native entry replaces an entry's fast path, and while an entry is forgotten
_SWAP = threading.Lock()
_builder: ThreadPoolExecutor | None = None


def _native_builds() -> ThreadPoolExecutor:
    """One background thread that builds native entries, one at a time, started on first need."""
    global _builder
    with _SWAP:
        if _builder is None:
            _builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="noodle-native-entry")
        return _builder


def _install_native(fn_ref: Any, entry_ref: Any) -> None:
    """Build ``entry``'s native entry and put it in place of its Python fast path, if the entry is
    still cached (and as the function's current fast path if it still is that)."""
    entry = entry_ref()
    if entry is None or entry.fast is None:
        return
    try:
        native = build_native_fast_path(entry)
    except Exception as exc:  # noqa: BLE001 - the Python fast path stays; results are unaffected
        log.debug("noodle.jit: no native entry: %s: %s", type(exc).__name__, exc)
        return
    if native is None:
        return
    with _SWAP:
        f = fn_ref()
        if entry.fast is None:      # forgotten meanwhile
            return
        if f is not None and f._fast is entry.fast:
            f._fast = native
        entry.fast = native


class JitFunction:
    """A jitted function: call it like the original; see the module docstring.

    What the function reads from outside its arguments is guarded, not frozen (see
    :mod:`noodle.trace.guards`); Python scalars are runtime parameters unless static.
    """

    def __init__(self, fn: Callable[..., Any], device: str = "auto", backend: str | None = None,
                 hot_threshold: Any = None, static_argnums: Sequence[int] | int = (),
                 static_argnames: Sequence[str] | str = ()) -> None:
        if backend not in _BACKENDS:
            raise ConfigError("backend", backend, "None, 'auto', 'numba', 'iree', 'cuda' or 'interpret'")
        if device not in _DEVICES:
            raise ConfigError("device", device, "'auto', 'cpu' or 'cuda'")
        if not callable(fn) or not hasattr(fn, "__code__"):
            raise TraceError(f"@noodle.jit needs a Python function, got {type(fn).__name__}")
        self.fn = fn
        self.device = device
        self.backend = backend
        self.hot_calls, self.hot_seconds = parse_hot_threshold(hot_threshold)
        native_entries()   # a bad NOODLE_NATIVE_CALLS is an error here, not in the middle of a hot loop
        self._sig = inspect.signature(fn)
        params = list(self._sig.parameters.values())
        kinds = {p.kind for p in params}
        self._nparams = len(params)
        positional = {inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD}
        self._simple = kinds <= positional | {inspect.Parameter.VAR_POSITIONAL}
        self._varargs = inspect.Parameter.VAR_POSITIONAL in kinds
        self._npositional = sum(p.kind in positional for p in params)
        self._names = [p.name for p in params if p.kind in positional]
        # defaults filled from ``fn.__defaults__`` without inspect's bind (13 µs a call) where that
        # tuple is what the signature shows: a plain function, all parameters positional
        self._plain_defaults = (self._simple and not self._varargs and not hasattr(fn, "__wrapped__")
                                and isinstance(fn, types.FunctionType)
                                and len(fn.__defaults__ or ()) == sum(p.default is not p.empty for p in params))
        self._sig_defaults = getattr(fn, "__defaults__", None)
        self._static = self._static_positions(static_argnums, static_argnames)
        # signature key -> guard variants; least recently used first, at most ``cache_size`` keys
        # (the NOODLE_JIT_CACHE_SIZE setting, read once here, never per call)
        self.cache_size: int = get_settings().jit_cache_size
        self.evictions = 0
        self._states: dict[tuple, list[_Entry]] = {}
        # the compiled entry the last general call ran: its generated check-and-run function
        # (see noodle.jit.fastpath); one that always misses until a signature is compiled
        self._fast: Callable[[tuple], Any] = no_fast_path
        functools.update_wrapper(self, fn)
        if backend in (None, "numba", "auto") and device not in ("cuda", "gpu"):
            # Overlap Numba's import and set-up (most of a warm-cache first compile) with the
            # caller's own work between decoration and the first hot call.
            from noodle.backends.numba_prewarm import prewarm

            prewarm()

    def _static_positions(self, nums: Sequence[int] | int, names: Sequence[str] | str) -> frozenset[int]:
        nums = (nums,) if isinstance(nums, int) else tuple(nums)
        names = (names,) if isinstance(names, str) else tuple(names)
        out = set()
        for n in nums:
            if isinstance(n, bool) or not isinstance(n, int) or not -self._nparams <= n < self._nparams:
                raise ConfigError("static_argnums", n, f"parameter positions of {self.fn.__name__} "
                                  f"(0..{self._nparams - 1})")
            out.add(n % self._nparams)
        for name in names:
            if name not in self._names:
                raise ConfigError("static_argnames", name, f"parameter names of {self.fn.__name__}: "
                                  f"{', '.join(self._names)}")
            out.add(self._names.index(name))
        return frozenset(out)

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        """Support ``@nd.jit`` on methods: ``self`` is a static argument (guarded by identity,
        its attributes read by the function guarded like any captured state)."""
        if obj is None:
            return self
        return functools.partial(self, obj)

    # ---- the hot path
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if fp_traps():
            # the caller's np.errstate raises (or calls) on floating-point errors, which compiled
            # kernels cannot see: the plain function does exactly what NumPy does
            return self.fn(*args, **kwargs)
        if not kwargs:
            if len(args) != self._nparams and self._plain_defaults:
                args = self._bind(args, kwargs)
            # the last compiled signature: one generated function checks the arguments' types,
            # dtypes and shapes and the guards, then runs the kernel (MISS: anything else)
            out = self._fast(args)
            if out is not MISS:
                return out
        return self._call(args, kwargs)

    def _call(self, args: tuple, kwargs: dict) -> Any:
        """The general call: bind, key, look up (trace if new or stale), run, switch the fast path."""
        if kwargs or (len(args) != self._nparams):
            args = self._bind(args, kwargs)
        if self._static:
            key: Any = self._key(args)
            if key is None:
                return self.fn(*args)   # called from inside another traced function: inline it
        else:
            key = []
            for a in args:
                t = type(a)
                if t is _ndarray:
                    key.append(a.shape)
                    key.append(a.dtype)
                elif t in _SCALAR_TYPES:
                    key.append(t)
                elif isinstance(a, Tracer):
                    return self.fn(*args)   # called from inside another traced function: inline it
                elif is_array(a):
                    key.append((t, a.shape, a.dtype))
                elif isinstance(a, np.generic):
                    key.append((t, a.dtype))
                else:
                    key.append((t, a))
        key = tuple(key)
        try:
            bucket = self._states.pop(key, None)
        except TypeError:
            raise TraceError(f"{self.fn.__name__}: a non-array argument is not hashable; pass arrays or "
                             "hashable constants (numbers, strings, tuples)") from None
        if bucket is not None:
            self._states[key] = bucket   # most recently used last
        entry = None
        implicit: tuple = ()
        if bucket is not None:
            for e in bucket:
                if e.check is None:
                    entry = e
                    break
                got = e.check(args)
                if got is not None:
                    entry, implicit = e, got
                    break
        if entry is None:
            entry, implicit = self._prepare(args, key)
        state = entry.state
        positions = entry.positions
        if positions is None:
            arrays: Sequence[Any] = args + implicit if implicit else args
        else:
            if entry.params:
                ps = entry.params
                arrays = [np.asarray(args[i]) if i in ps else args[i] for i in positions]
            else:
                arrays = [args[i] for i in positions]
            arrays += implicit
        for a in arrays:   # compiled code reads bytes as native: a swapped array goes as a native copy
            if type(a) is _ndarray and not a.dtype.isnative:
                arrays = [native_byte_order(x) for x in arrays]
                break
        runner = state.runner
        if runner is not None:
            try:
                out = runner(arrays)
            except Exception as exc:  # noqa: BLE001 - a backend bug must not cost the caller a result
                state.runtime_failure(exc)
                out = state.run(arrays)
            else:
                n = state.compiled_calls = state.compiled_calls + 1
                if not n & 255:  # publish to the metrics registry in batches: a locked inc costs
                    state.flush_metrics()
                if entry.specs is not None:
                    fast = entry.fast
                    if fast is None:
                        fast = entry.fast = build_fast_path(entry, self.fn.__name__, _finish_outputs,
                                                            self._hot_hook(entry))
                    self._fast = fast
        else:
            out = state.run(arrays)
        if entry.out_actions is not None:
            out = _finish_outputs(out, entry.out_actions, args, arrays)
        if state.single_output:
            return out[0]
        make = state.make_output
        return out if make is None else make(out)

    def _hot_hook(self, entry: _Entry) -> Callable[[], None]:
        """What the Python fast path runs every 256th compiled call: publish the count, and once the
        signature is hot (:data:`NATIVE_AFTER` calls), have a native entry built where one can be, on
        a background thread (it takes ~25 ms, and Numba's compiler lock may be held by a compile):
        the caller never waits for it. The hook holds the function and the entry weakly (no cycle
        keeps an evicted entry, or the function, alive)."""
        state = entry.state
        me, ref = weakref.ref(self), weakref.ref(entry)
        tried = False

        def hot() -> None:
            nonlocal tried
            state.flush_metrics()
            if tried or state.compiled_calls < NATIVE_AFTER:
                return
            tried = True
            if native_entries():
                try:
                    _native_builds().submit(_install_native, me, ref)
                except RuntimeError:   # the interpreter is shutting down: the Python fast path serves
                    pass

        return hot

    def _bind(self, args: tuple, kwargs: dict) -> tuple:
        """Positional arguments in parameter order, defaults filled in (read now, not at decoration:
        a default array mutated since is seen)."""
        if self._varargs and not kwargs and len(args) >= self._npositional:
            return args
        if self._plain_defaults:
            defaults = self.fn.__defaults__          # read now: a reassigned tuple is seen
            need = self._nparams - len(args)
            if not kwargs and 0 < need <= len(defaults or ()):
                return args + defaults[-need:]   # type: ignore[index]
            if defaults is not self._sig_defaults:   # the signature inspect binds with, made again
                self._sig = inspect.signature(self.fn)
                self._sig_defaults = defaults
        if not self._simple:
            raise TraceError(f"{self.fn.__name__}: @noodle.jit supports functions whose parameters are all "
                             "positional-or-keyword (and *args; no keyword-only or **kwargs parameters); "
                             "wrap the function in one with explicit parameters")
        try:
            bound = self._sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise TraceError(f"{self.fn.__name__}() called with arguments that do not fit its signature "
                             f"{self._sig}: {exc}") from None
        bound.apply_defaults()
        return tuple(bound.args)

    # ---- tracing and the per-signature cache
    def _kinds(self, args: tuple) -> list[str]:
        out = []
        for i, a in enumerate(args):
            if i in self._static:
                out.append("static")
            elif is_array(a):
                out.append("array")
            elif isinstance(a, _SCALAR_TYPES) and not (type(a) is int and not -2**63 <= a < 2**63):
                out.append("param")
            elif isinstance(a, np.generic) and np.dtype(a.dtype).name in DTYPE_SET:
                out.append("param")
            else:
                out.append("static")
        return out

    def _check_device(self) -> None:
        """An explicit GPU request with no usable GPU is an error, as for the eager ops (never a
        silent run on the CPU)."""
        if self.device in ("cuda", "gpu") or self.backend == "cuda":
            from noodle.devices.spec import parse_device

            parse_device("cuda" if self.device == "auto" else self.device)

    def _prepare(self, args: tuple, key: tuple) -> tuple[_Entry, tuple]:
        from noodle.trace.guards import Capture

        self._check_device()
        kinds = self._kinds(args)
        for _ in range(len(args) + 2):
            try:
                capture = Capture(self.fn, args, kinds)
                program, ctx = trace_with_context(self.fn, args, kinds=kinds, env=capture)
                break
            except Concretize as c:
                # a scalar was used where its value matters (``if s:``, a shape): make it static
                for i in c.params:
                    kinds[i] = "static"
            except TraceError:
                if "param" not in kinds:
                    raise
                kinds = ["static" if k == "param" else k for k in kinds]
        else:  # pragma: no cover - each round makes at least one parameter static
            raise TraceError(f"{self.fn.__name__}: could not trace with its scalar arguments")
        traced_roots = _output_roots(program, ctx.view_values)
        program = optimize(program)
        check, _labels = capture.guard(ctx, self.fn.__name__)
        state = ProgramState(program, hot_calls=self.hot_calls, hot_seconds=self.hot_seconds,
                             backend=self.backend, device=self.device, name=self.fn.__name__)
        if ctx.output_type is not None:
            state.make_output = ctx.output_type._make
        positions = tuple(i for i, k in enumerate(kinds) if k in ("array", "param"))   # input order
        params = frozenset(i for i, k in enumerate(kinds) if k == "param")
        actions = _output_actions(traced_roots, _output_roots(program), program, ctx.raw_outputs,
                                  {k: i for k, i in enumerate(positions) if i in params}, ctx.scalar_outputs)
        if any(type(args[i]).__module__.startswith("cupy") for i in positions if i not in params):
            state.array_module = "cupy"
        simple = len(positions) == len(args) and not params
        entry = _Entry(state, None if simple else positions, params, check, actions)
        made_static = [(i, type(args[i]), args[i]) for i, k in enumerate(kinds)
                       if k == "static" and i not in self._static and isinstance(args[i], (*_SCALAR_TYPES, np.generic))]
        if made_static:   # the key has only their types: this program holds for these values only
            entry.check = _with_values(check, made_static)
        entry.key = key
        entry.specs = arg_specs(args, self._static)
        bucket = self._states.pop(key, None) or []
        bucket.insert(0, entry)
        for dropped in bucket[MAX_VARIANTS:]:
            self._forget(dropped)
        del bucket[MAX_VARIANTS:]
        self._states[key] = bucket
        while len(self._states) > self.cache_size:   # the least recently used signature goes
            for dropped in self._states.pop(next(iter(self._states))):
                self._forget(dropped)
            self.evictions += 1
        implicit = check(args) if check is not None else ()
        if implicit is None:  # pragma: no cover - the guards were just built from these values
            raise TraceError(f"{self.fn.__name__}: captured state changed while it was traced; call again")
        return entry, implicit

    def _forget(self, entry: _Entry) -> None:
        """An entry left the cache: the fast path must not keep running it (nor keep it alive)."""
        with _SWAP:
            if entry.fast is not None and self._fast is entry.fast:
                self._fast = no_fast_path
            entry.fast = None

    def _key(self, args: tuple) -> list[Any] | None:
        """The signature key of a call (what ``__call__`` builds inline when nothing is static):
        shape and dtype per array, the type per scalar parameter, type and value otherwise.
        None when an argument is a traced value (the call is inlined into the outer trace)."""
        key: list[Any] = []
        static = self._static
        for i, a in enumerate(args):
            t = type(a)
            if isinstance(a, Tracer):
                return None
            if i in static or not (is_array(a) or isinstance(a, (*_SCALAR_TYPES, np.generic))):
                key.append((t, a))
            elif t is _ndarray:
                key += [a.shape, a.dtype]
            elif t in _SCALAR_TYPES:
                key.append(t)
            elif isinstance(a, np.generic):
                key.append((t, a.dtype))
            else:
                key.append((t, a.shape, a.dtype))
        return key

    def _lookup(self, args: tuple, kwargs: dict) -> tuple[_Entry, tuple]:
        """The entry and implicit inputs for a call (traced now if new or stale)."""
        if kwargs or len(args) != self._nparams:
            args = self._bind(args, kwargs)
        key = self._key(args)
        if key is None:
            raise TraceError(f"{self.fn.__name__}: called with a traced value outside a trace")
        key = tuple(key)
        bucket = self._states.pop(key, None)
        if bucket is not None:
            self._states[key] = bucket   # most recently used last
            for e in bucket:
                got = () if e.check is None else e.check(args)
                if got is not None:
                    return e, got
        return self._prepare(args, key)

    def state(self, *args: Any, **kwargs: Any) -> ProgramState:
        """The run state for this signature (traced now if new)."""
        return self._lookup(args, kwargs)[0].state

    def compile(self, *args: Any, **kwargs: Any) -> str:
        """Compile for the signature of ``args`` now; returns the backend used ("interpret" if none)."""
        from noodle.jit.manager import default_manager

        state = self.state(*args, **kwargs)
        if state.runner is not None and state.backend:
            return state.backend
        if state.status == "disabled":
            return "interpret"
        with state.lock:
            if state.status in ("interpreted", "failed"):
                state.status = "queued"
        return default_manager().compile_now(state)

    def program_inputs(self, *args: Any, **kwargs: Any) -> tuple[bytes, tuple[Any, ...]]:
        """The NBC bytes for this call and the arrays to run them on: the array arguments, scalar
        parameters as 0-d arrays, then the captured arrays (read now). What ``noodle.dist`` sends."""
        entry, implicit = self._lookup(args, kwargs)
        if kwargs or len(args) != self._nparams:
            args = self._bind(args, kwargs)
        positions = entry.positions if entry.positions is not None else range(len(args))
        arrays = [np.asarray(args[i]) if i in entry.params else args[i] for i in positions]
        return entry.state.nbc(), (*arrays, *implicit)

    def explain(self, *args: Any, **kwargs: Any) -> Any:
        """Where each fused region of this signature runs (or would run, once hot), and why.

        A :class:`~noodle.placement.regions.Plan`: per region its ops, size and dtype, every
        candidate backend with its estimated seconds (or why it was excluded) and the choice
        with the reason; ``print()`` it. Under ``backend="auto"`` the first explain of a
        machine may probe the backends (about a second each, then cached on disk).
        """
        from noodle.jit.manager import choose_backend
        from noodle.jit.placing import plan_program

        state = self.state(*args, **kwargs)
        backend = "interpret" if state.status == "disabled" else choose_backend(state)
        plan = plan_program(state.program, self.fn.__name__, backend, on_gpu=state.array_module == "cupy")
        loops = getattr(state.runner, "loop_notes", ())
        if loops:
            from dataclasses import replace

            plan = replace(plan, notes=(*plan.notes, *loops))
        used = getattr(state.runner, "region_backends", None)
        if used is not None and tuple(used) != tuple(r.backend for r in plan.regions):
            from dataclasses import replace

            plan = replace(plan, notes=(*plan.notes, f"compiled with: {', '.join(used)} (a choice that "
                                        "failed to compile fell back to the next cheapest)"))
        return plan

    def nir(self, *args: Any) -> str:
        """Readable text of the optimized NIR for this signature."""
        from noodle.ir.printer import format_program

        return format_program(self.state(*args).program)

    def bytecode(self, *args: Any) -> bytes:
        """NBC bytes of the optimized program for this signature (its inputs: see ``program_inputs``)."""
        return self.state(*args).nbc()

    def memory_plan(self, *args: Any) -> dict[str, Any]:
        """Buffer plan and peak working bytes of the fused program for this signature."""
        from noodle.passes import plan_memory

        return plan_memory(self.state(*args).program)

    def stats(self) -> dict[str, Any]:
        """Totals over every signature, plus per-signature detail under ``signatures``."""
        per = []
        for bucket in self._states.values():
            for entry in bucket:
                entry.state.flush_metrics()
                per.append(entry.state.stats())
        backends = sorted({s["backend"] for s in per if s["backend"]})
        return {
            "calls": sum(s["calls"] for s in per),
            "interpreted_calls": sum(s["interpreted_calls"] for s in per),
            "compiled_calls": sum(s["compiled_calls"] for s in per),
            "compile_seconds": sum(s["compile_seconds"] for s in per),
            "backend": backends[0] if len(backends) == 1 else (backends or None),
            "signatures": per,
        }

    def __repr__(self) -> str:
        return f"<noodle.jit {self.fn.__name__} ({len(self._states)} signatures)>"


def _output_roots(program: Any, views: set[int] | None = None) -> list[tuple[str, int | None]]:
    """Per output: what memory it is (``"input"``: an argument or a view of one, ``"const"``: the
    program's own constant or a view of it, ``"loop"``: a loop's result or a view of it, which may
    be its initial value as it came in, ``"new"``) and the earlier output it is the very same value
    as (None if none). ``views``: for the traced program, the values that are views in NumPy's
    model (``x[2].reshape(1)`` is not: ``x[2]`` is a new scalar); otherwise every view op is one."""
    nodes = program.nodes
    first: dict[int, int] = {}
    out = []
    kinds = {"input": "input", "const": "const", "loop_result": "loop"}
    for i, v in enumerate(program.outputs):
        root = v
        while nodes[root].op in _VIEW_OPS and (views is None or root in views):
            root = nodes[root].args[0]
        out.append((kinds.get(nodes[root].op, "new"), first.get(v)))
        first.setdefault(v, i)
    return out


def _output_actions(traced: list[tuple[str, int | None]], optimized: list[tuple[str, int | None]],
                    program: Any, raw: dict[int, Any], param_inputs: dict[int, int],
                    scalars: frozenset[int]) -> tuple[Any, ...]:
    """What to do with each output so the caller gets what the plain function returns: a value the
    function computed in plain Python is returned as is; a 0-d array becomes a NumPy scalar;
    the same object twice where Python returned one object twice; and a copy wherever the
    optimized program would hand back memory the plain function would have made new (an
    argument or a view of one after ``x * 1`` or ``x.copy()`` was simplified away, the program's
    constant pool, or one buffer for two outputs that were two arrays). A loop's result is copied
    when it shares memory with an input array (``"fresh"``): whether the loop hands back its
    initial value depends on the trip count, known only when it runs."""
    nodes = program.nodes
    actions: list[Any] = []
    for i, ((kind_t, dup_t), (kind_o, dup_o)) in enumerate(zip(traced, optimized, strict=True)):
        node = nodes[program.outputs[i]]
        if i in raw:
            actions.append(("value", raw[i]))
        elif node.op == "input" and node.attr("index") in param_inputs:
            actions.append(("arg", param_inputs[node.attr("index")]))   # the scalar passed in
        elif dup_t is not None:
            actions.append(("same", dup_t))
        elif i in scalars:   # (the trace's verdict: x[2] is a scalar, np.where(c, a, b) a 0-d array)
            actions.append("scalar")
        elif kind_o == "const" or (kind_o == "input" and kind_t != "input") or dup_o is not None:
            actions.append("copy")
        elif kind_o == "loop" and kind_t != "input":
            actions.append(("fresh", tuple(c for c in program.consts if isinstance(c, np.ndarray) and c.ndim)))
        else:
            actions.append(None)
    return tuple(actions)


def _finish_outputs(out: tuple, actions: tuple, args: tuple, arrays: Sequence[Any]) -> tuple:
    """Apply :func:`_output_actions`; ``arrays`` are the program's inputs (arguments and captured
    arrays) that a ``"fresh"`` output must not share memory with."""
    done: list[Any] = []
    for o, a in zip(out, actions, strict=True):
        if a is None:
            done.append(o)
        elif a == "scalar":
            done.append(o[()])
        elif a == "copy":
            done.append(o.copy())
        elif a[0] == "fresh":   # (a[1]: the program's constant arrays, which a loop may start from)
            shared = isinstance(o, np.ndarray) and any(
                isinstance(x, np.ndarray) and np.may_share_memory(o, x) for x in (*arrays, *a[1]))
            done.append(o.copy() if shared else o)
        elif a[0] == "same":
            done.append(done[a[1]])
        elif a[0] == "arg":
            done.append(args[a[1]])
        else:
            done.append(a[1])
    return tuple(done)


def _with_values(check: Callable[[tuple], tuple | None] | None,
                 values: list[tuple[int, type, Any]]) -> Callable[[tuple], tuple | None]:
    """``check`` plus: the scalars made static (used where their value matters) are unchanged."""
    def checked(args: tuple) -> tuple | None:
        for i, t, v in values:
            a = args[i]
            if type(a) is not t or not (a == v or (a != a and v != v)):
                return None
        return () if check is None else check(args)
    return checked



def jit(fn: Callable[..., Any] | None = None, *, device: str = "auto", backend: str | None = None,
        hot_threshold: Any = None, static_argnums: Sequence[int] | int = (),
        static_argnames: Sequence[str] | str = ()) -> Any:
    """Decorate ``fn`` for tracing and JIT compilation (usable as ``@jit`` or ``@jit(...)``).

    ``backend``: None picks from where inputs live (NumPy -> "numba", CuPy -> "cuda");
    "auto" asks placement for each fused region (interpreter, Numba, IREE or CUDA, from the
    calibrated cost model; ``f.explain(*args)`` shows the choices). "auto" is opt-in, not
    the default: its first use on a machine probes every backend (seconds, then cached on
    disk), which a fresh process with an empty cache would pay on its first compile.
    "iree" compiles through MLIR/IREE (the ``noodle[mlir]`` extra); "interpret" never compiles. ``hot_threshold``: int calls, float seconds, or both as a
    tuple; default 10 calls or 50 ms of interpreted time, whichever comes first.
    ``static_argnums`` / ``static_argnames``: arguments whose *value* is part of the trace (as
    in JAX); other Python and NumPy scalars are runtime parameters, so a new value per call
    does not retrace.
    """
    opts = dict(device=device, backend=backend, hot_threshold=hot_threshold,
                static_argnums=static_argnums, static_argnames=static_argnames)
    if fn is None:
        return lambda f: JitFunction(f, **opts)
    return JitFunction(fn, **opts)


__all__ = ["JitFunction", "jit"]
