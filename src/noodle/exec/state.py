"""Per-program run state: counters, hot-path detection, the switch to compiled code.

Why one object shared by the executor and ``@noodle.jit``: both run a program
interpreted, count calls and time (per program and per instruction), notice
when it gets hot, hand it to the background compile manager, and switch to the
compiled runner the moment it is ready, without ever waiting for it.

Example::

    >>> import numpy as np
    >>> from noodle.trace import trace
    >>> st = ProgramState(trace(lambda a: a + 1.0, (np.ones(2),)), hot_calls=0)
    >>> st.run((np.ones(2),), use_jit=False)[0]
    array([2., 2.])
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from noodle import metrics
from noodle.errors import NBCResourceError
from noodle.ir.graph import Program

_CALLS = metrics.counter("noodle_jit_calls_total", "Calls of JIT programs, by how they ran", ["mode"])
CALLS_INTERPRETED = _CALLS.labels("interpreted")
CALLS_COMPILED = _CALLS.labels("compiled")
FALLBACKS = metrics.counter("noodle_jit_fallbacks_total", "JIT programs left interpreted, by reason", ["reason"])

_LIVE: weakref.WeakSet[ProgramState] = weakref.WeakSet()

DEFAULT_HOT_CALLS = 10
DEFAULT_HOT_SECONDS = 0.05


def parse_hot_threshold(value: Any) -> tuple[int | None, float | None]:
    """``int`` -> calls, ``float`` -> cumulative seconds, ``(calls, seconds)`` -> either; None: defaults."""
    from noodle.errors import ConfigError

    if value is None:
        return DEFAULT_HOT_CALLS, DEFAULT_HOT_SECONDS
    if isinstance(value, bool):
        raise ConfigError("hot_threshold", value, "an int (calls), a float (seconds) or (calls, seconds)")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError("hot_threshold", value, "a non-negative number of calls")
        return value, None
    if isinstance(value, float):
        if value < 0:
            raise ConfigError("hot_threshold", value, "a non-negative number of seconds")
        return None, value
    if isinstance(value, tuple) and len(value) == 2:
        calls, secs = value
        # each half is checked as what it must be: a float count of calls (10.0) or a string
        # would otherwise be read as "no call threshold" or escape as a bare ValueError
        if calls is not None and (isinstance(calls, bool) or not isinstance(calls, int)):
            raise ConfigError("hot_threshold", value, "(calls, seconds) with calls an int or None")
        if secs is not None and (isinstance(secs, bool) or not isinstance(secs, int | float)):
            raise ConfigError("hot_threshold", value, "(calls, seconds) with seconds a number or None")
        return (parse_hot_threshold(calls)[0] if calls is not None else None,
                parse_hot_threshold(float(secs))[1] if secs is not None else None)
    raise ConfigError("hot_threshold", value, "an int (calls), a float (seconds) or (calls, seconds)")


class ProgramState:
    """One program (one traced signature) and everything known about running it."""

    def __init__(self, program: Program, *, hot_calls: int | None = DEFAULT_HOT_CALLS,
                 hot_seconds: float | None = DEFAULT_HOT_SECONDS, backend: str | None = None,
                 device: str = "auto", name: str = "program") -> None:
        self.program = program
        self.name = name
        self.hot_calls = hot_calls
        self.hot_seconds = hot_seconds
        self.backend_request = backend
        self.device = device
        self.single_output = bool(program.meta.get("single_output", False))
        # what turns the outputs' tuple into the container the function returned: ``list``, a
        # namedtuple's ``_make`` (set by nd.jit: the class is not part of the program), or None
        self.make_output: Any = list if program.meta.get("list_output", False) else None
        # (shape, dtype) per argument, once: Executor.execute checks every call against it, and
        # Program.input_types() walks every node
        self.input_types = program.input_types()
        self.array_module = "numpy"   # "cupy" when traced from CuPy arrays: picks the cuda backend
        self.interpreted_calls = 0
        self.compiled_calls = 0
        # a jitted call's native entry (noodle.backends.numba_native_call) counts its calls here,
        # without a Python frame; it runs only while self.runner is the runner it was built from
        self.native_calls = np.zeros(1, np.int64)
        self._published_compiled = 0   # compiled calls already added to the metrics counter
        self.interpreted_seconds = 0.0
        self.node_calls = [0] * len(self.program.nodes)
        self.node_seconds = [0.0] * len(self.program.nodes)
        self.status = "interpreted"   # interpreted | queued | compiling | compiled | failed | disabled
        self.backend: str | None = None
        self.compile_seconds = 0.0
        self.error: str | None = None
        self.runner: Callable[[Sequence[Any]], tuple[Any, ...]] | None = None
        self.submit: Callable[[ProgramState], None] | None = None
        self.lock = threading.Lock()
        self._nbc: bytes | None = None
        self._key: str | None = None
        if backend == "interpret":
            self.status = "disabled"
        _LIVE.add(self)

    # ---- identity
    def nbc(self) -> bytes:
        """NBC bytes of the optimized program."""
        if self._nbc is None:
            from noodle.nbc import dumps

            self._nbc = dumps(self.program)
        return self._nbc

    def key(self) -> str:
        """Content hash of the optimized program (the compiled-program cache key)."""
        if self._key is None:
            from noodle.nbc import program_hash

            self._key = program_hash(self.nbc())
        return self._key

    # ---- running
    def _on_node(self, i: int, seconds: float) -> None:
        self.node_calls[i] += 1
        self.node_seconds[i] += seconds

    def interpret(self, args: Sequence[Any]) -> tuple[Any, ...]:
        """Run interpreted, counting per instruction."""
        from noodle.exec.interpreter import run_program

        t0 = time.perf_counter()
        out = run_program(self.program, args, on_node=self._on_node)
        self.interpreted_seconds += time.perf_counter() - t0
        self.interpreted_calls += 1
        CALLS_INTERPRETED.inc()
        return out

    def run(self, args: Sequence[Any], use_jit: bool = True) -> tuple[Any, ...]:
        """Compiled when ready, else interpreted (and queue a compile once hot)."""
        runner = self.runner
        if runner is not None and use_jit:
            try:
                out = runner(args)
            except NBCResourceError:
                raise   # over the limits of an untrusted run (a loop that never ends): not a backend bug
            except Exception as exc:  # noqa: BLE001 - a backend bug must not cost the caller a result
                self.runtime_failure(exc)
            else:
                self.compiled_calls += 1
                self.flush_metrics()
                return out
        out = self.interpret(args)
        if use_jit and self.status == "interpreted" and self.is_hot():
            self.request_compile()
        return out

    def runtime_failure(self, exc: BaseException) -> None:
        """A compiled runner raised: drop it for good, log once, count; the caller re-runs interpreted."""
        import logging

        with self.lock:
            if self.runner is None:
                return
            self.runner = None
            self.status = "failed"
            self.error = f"compiled run failed: {type(exc).__name__}: {exc}"
        FALLBACKS.labels("runtime_error").inc()
        metrics.emit("jit_compile", program=self.name, backend=self.backend, status="failed", error=self.error)
        logging.getLogger("noodle.jit").warning(
            "noodle.jit: the compiled %s raised, it runs interpreted from now on (results are unaffected): %s",
            self.name, self.error)

    @property
    def calls(self) -> int:
        """Every call, interpreted or compiled."""
        return self.interpreted_calls + self.all_compiled_calls()

    def all_compiled_calls(self) -> int:
        """Compiled calls, those of a native entry included."""
        return self.compiled_calls + int(self.native_calls[0])

    def flush_metrics(self) -> None:
        """Add compiled calls not yet published to ``noodle_jit_calls_total{mode="compiled"}``."""
        with self.lock:
            delta = self.all_compiled_calls() - self._published_compiled
            self._published_compiled += max(delta, 0)
        if delta > 0:
            CALLS_COMPILED.inc(delta)

    def is_hot(self) -> bool:
        """Crossed ``hot_calls`` calls or ``hot_seconds`` cumulative interpreted time."""
        if self.hot_calls is not None and self.calls >= self.hot_calls:
            return True
        return self.hot_seconds is not None and self.interpreted_seconds >= self.hot_seconds

    def request_compile(self) -> None:
        """Hand this program to the background compile manager (once)."""
        with self.lock:
            if self.status != "interpreted":
                return
            self.status = "queued"
        submit = self.submit or compile_hook()
        if submit is None:
            with self.lock:
                self.status = "failed"
                self.error = "no compiler is installed (noodle.jit could not be loaded)"
            return
        submit(self)

    def stats(self) -> dict[str, Any]:
        """Counters of this program, and the hottest instructions."""
        from noodle.ir.printer import format_node

        per_node = [
            {"node": i, "text": format_node(i, self.program.nodes[i], self.program).strip(),
             "calls": self.node_calls[i], "seconds": self.node_seconds[i]}
            for i in range(len(self.program.nodes)) if self.node_calls[i]
        ]
        per_node.sort(key=lambda d: -d["seconds"])
        return {
            "name": self.name, "calls": self.calls, "interpreted_calls": self.interpreted_calls,
            "compiled_calls": self.all_compiled_calls(), "interpreted_seconds": self.interpreted_seconds,
            "compile_seconds": self.compile_seconds, "backend": self.backend, "status": self.status,
            "error": self.error, "instructions": per_node,
        }


# Dependency inversion: exec detects hot programs, jit (a higher layer) compiles them. jit
# registers its manager's ``submit`` here when imported; until then the hook is resolved from
# this plugin pointer on first need, the same lazy "module:attr" table pattern the backends
# registry uses, so exec never imports jit at module level.
_COMPILER_PLUGIN = "noodle.jit.manager:install"
_compile_hook: list[Callable[[ProgramState], None]] = []


def set_compile_hook(submit: Callable[[ProgramState], None]) -> None:
    """Install the function that queues a hot program for compilation (noodle.jit does this)."""
    _compile_hook[:] = [submit]


def compile_hook() -> Callable[[ProgramState], None] | None:
    """The installed compile hook, loading the JIT plugin on first use; None if it cannot load."""
    if not _compile_hook:
        import importlib

        module_name, _, attr = _COMPILER_PLUGIN.partition(":")
        try:
            getattr(importlib.import_module(module_name), attr)()
        except ImportError:
            return None
    return _compile_hook[0] if _compile_hook else None


def flush_all() -> None:
    """Publish every live program's pending compiled-call count (reports call this first)."""
    for state in list(_LIVE):
        state.flush_metrics()


__all__ = ["ProgramState", "compile_hook", "flush_all", "parse_hot_threshold", "set_compile_hook"]
