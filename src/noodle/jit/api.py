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
from collections.abc import Callable
from typing import Any

import numpy as np

from noodle.errors import ConfigError, TraceError
from noodle.exec.state import ProgramState, parse_hot_threshold
from noodle.passes import optimize
from noodle.trace import is_array, trace

_BACKENDS = (None, "numba", "cuda", "interpret")
_DEVICES = ("auto", "cpu", "cuda", "gpu")
_ndarray = np.ndarray


def _signature(args: tuple) -> tuple:
    """Cache key of a call: shape and dtype per NumPy array (flattened: hashing is the per-call
    cost); type+shape+dtype for other arrays (CuPy); type+value for static arguments."""
    key: list[Any] = []
    for a in args:
        if type(a) is _ndarray:
            key.append(a.shape)
            key.append(a.dtype)
        elif is_array(a):
            key.append((type(a), a.shape, a.dtype))
        else:
            key.append((type(a), a))
    return tuple(key)


class JitFunction:
    """A jitted function: call it like the original; see the module docstring."""

    def __init__(self, fn: Callable[..., Any], device: str = "auto", backend: str | None = None,
                 hot_threshold: Any = None) -> None:
        if backend not in _BACKENDS:
            raise ConfigError("backend", backend, "None, 'numba', 'cuda' or 'interpret'")
        if device not in _DEVICES:
            raise ConfigError("device", device, "'auto', 'cpu' or 'cuda'")
        self.fn = fn
        self.device = device
        self.backend = backend
        self.hot_calls, self.hot_seconds = parse_hot_threshold(hot_threshold)
        self._states: dict[tuple, tuple[ProgramState, tuple[int, ...] | None]] = {}
        functools.update_wrapper(self, fn)
        if backend in (None, "numba") and device != "cuda":
            # Overlap Numba's import and set-up (most of a warm-cache first compile) with the
            # caller's own work between decoration and the first hot call.
            from noodle.backends.numba_cpu import prewarm

            prewarm()

    # ---- the hot path
    def __call__(self, *args: Any) -> Any:
        try:
            entry = self._states.get(_signature(args))
        except TypeError:
            raise TraceError(f"{self.fn.__name__}: a non-array argument is not hashable; pass arrays or "
                             "hashable constants (numbers, strings, tuples)") from None
        if entry is None:
            entry = self._prepare(args)
        state, positions = entry
        arrays = args if positions is None else [args[i] for i in positions]
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
        else:
            out = state.run(arrays)
        return out[0] if state.single_output else out

    # ---- tracing and the per-signature cache
    def _prepare(self, args: tuple) -> tuple[ProgramState, tuple[int, ...] | None]:
        key = _signature(args)
        entry = self._states.get(key)
        if entry is not None:
            return entry
        positions = tuple(i for i, a in enumerate(args) if is_array(a))
        program = optimize(trace(self.fn, args))
        state = ProgramState(program, hot_calls=self.hot_calls, hot_seconds=self.hot_seconds,
                             backend=self.backend, device=self.device, name=self.fn.__name__)
        if any(type(args[i]).__module__.startswith("cupy") for i in positions):
            state.array_module = "cupy"
        entry = (state, None if len(positions) == len(args) else positions)
        self._states[key] = entry
        return entry

    def state(self, *args: Any) -> ProgramState:
        """The run state for this signature (traced now if new)."""
        return self._prepare(args)[0]

    def compile(self, *args: Any) -> str:
        """Compile for the signature of ``args`` now; returns the backend used ("interpret" if none)."""
        from noodle.jit.manager import default_manager

        state = self.state(*args)
        if state.runner is not None and state.backend:
            return state.backend
        if state.status == "disabled":
            return "interpret"
        with state.lock:
            if state.status in ("interpreted", "failed"):
                state.status = "queued"
        return default_manager().compile_now(state)

    def nir(self, *args: Any) -> str:
        """Readable text of the optimized NIR for this signature."""
        from noodle.ir.printer import format_program

        return format_program(self.state(*args).program)

    def bytecode(self, *args: Any) -> bytes:
        """NBC bytes of the optimized program for this signature."""
        return self.state(*args).nbc()

    def memory_plan(self, *args: Any) -> dict[str, Any]:
        """Buffer plan and peak working bytes of the fused program for this signature."""
        from noodle.passes import plan_memory

        return plan_memory(self.state(*args).program)

    def stats(self) -> dict[str, Any]:
        """Totals over every signature, plus per-signature detail under ``signatures``."""
        per = []
        for st, _ in self._states.values():
            st.flush_metrics()
            per.append(st.stats())
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


def jit(fn: Callable[..., Any] | None = None, *, device: str = "auto", backend: str | None = None,
        hot_threshold: Any = None) -> Any:
    """Decorate ``fn`` for tracing and JIT compilation (usable as ``@jit`` or ``@jit(...)``).

    ``backend``: None picks from where inputs live (NumPy -> "numba", CuPy -> "cuda");
    "interpret" never compiles. ``hot_threshold``: int calls, float seconds, or both as a
    tuple; default 10 calls or 50 ms of interpreted time, whichever comes first.
    """
    if fn is None:
        return lambda f: JitFunction(f, device=device, backend=backend, hot_threshold=hot_threshold)
    return JitFunction(fn, device=device, backend=backend, hot_threshold=hot_threshold)


__all__ = ["JitFunction", "jit"]
