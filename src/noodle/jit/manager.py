"""The compile manager: one background worker that turns hot programs into kernels.

Why one thread and a queue: compiles are slow (Numba: hundreds of ms) and must
never block a caller; callers keep running interpreted and pick up the runner
when the worker publishes it (one attribute write). A compile that fails is
logged once, counted (``noodle_jit_compiles_total{status="failed"}`` and
``noodle_jit_fallbacks_total{reason}``) and the program stays interpreted.

Example::

    manager = default_manager()
    manager.compile_now(state)      # synchronous, what f.compile() uses
    manager.submit(state)           # background, what hot-path detection uses
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from typing import Any

from noodle import metrics
from noodle.config import get_settings
from noodle.errors import CompileError, ConfigError
from noodle.exec.state import FALLBACKS, ProgramState, set_compile_hook

log = logging.getLogger("noodle.jit")

COMPILES = metrics.counter("noodle_jit_compiles_total", "JIT program compiles, by backend and status",
                           ["backend", "status"])
COMPILE_SECONDS = metrics.histogram("noodle_jit_compile_seconds", "Seconds to compile one JIT program",
                                    ["backend"])
REGIONS = metrics.counter("noodle_jit_region_backend_total",
                          "Fused regions of compiled JIT programs, by the backend that runs them", ["backend"])


def choose_backend(state: ProgramState) -> str:
    """Backend name for a program: the explicit request ("auto": placement picks per region),
    else from where its inputs live (CuPy arrays -> "cuda"; ``device="cuda"`` forces it;
    everything else -> "numba")."""
    if state.backend_request == "auto" and state.device in ("cuda", "gpu"):
        return "cuda"
    if state.backend_request:
        return state.backend_request
    if state.device in ("cuda", "gpu") or (state.device == "auto" and state.array_module == "cupy"):
        return "cuda"
    return "numba"


class CompileManager:
    """Compiles :class:`ProgramState` objects on one worker thread.

    ``cache_size``: compiled runners kept for reuse (default: the ``jit_cache_size`` setting,
    ``NOODLE_JIT_CACHE_SIZE``, read once here). Why bounded: a long-running process that
    compiles a stream of distinct programs would otherwise keep every runner (and its kernels)
    alive; the least recently used goes, and a program that needs it again compiles afresh
    (from the backend's kernel caches where it has them). A runner in use by a program stays
    alive through that program's state, evicted or not.
    """

    def __init__(self, cache_size: int | None = None) -> None:
        if cache_size is None:
            cache_size = get_settings().jit_cache_size
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 1:
            raise ConfigError("cache_size", cache_size, "an integer >= 1 (compiled runners kept), or None for "
                              "the NOODLE_JIT_CACHE_SIZE setting")
        self.cache_size = cache_size
        self.evictions = 0
        self._queue: queue.Queue[ProgramState | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # (program key, backend) -> runner, least recently used first
        self._runners: OrderedDict[tuple[str, str], Any] = OrderedDict()

    def cached_runner(self, key: tuple[str, str]) -> Any:
        """The runner compiled for ``(program key, backend)``, None if not kept (marks it recently used)."""
        with self._lock:
            runner = self._runners.get(key)
            if runner is not None:
                self._runners.move_to_end(key)
            return runner

    def keep_runner(self, key: tuple[str, str], runner: Any) -> None:
        """Keep ``runner`` for reuse, dropping the least recently used beyond ``cache_size``."""
        with self._lock:
            self._runners[key] = runner
            self._runners.move_to_end(key)
            while len(self._runners) > self.cache_size:
                self._runners.popitem(last=False)
                self.evictions += 1

    def submit(self, state: ProgramState) -> None:
        """Queue ``state`` for a background compile (its status is already "queued")."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="noodle-jit-compiler", daemon=True)
                self._thread.start()
        self._queue.put(state)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until every queued compile finished (tests and benchmarks use it)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def _work(self) -> None:
        while True:
            state = self._queue.get()
            try:
                if state is not None:
                    self.compile_now(state)
            except Exception:  # noqa: BLE001 - compile_now already records failures
                pass
            finally:
                self._queue.task_done()

    def compile_now(self, state: ProgramState) -> str:
        """Compile ``state`` now; returns the backend used, or "interpret" when it stays interpreted."""
        if state.runner is not None and state.backend:
            return state.backend
        if state.status == "disabled":
            return "interpret"
        name = choose_backend(state)
        state.status = "compiling"
        t0 = time.perf_counter()
        reason = "compile_error"
        try:
            from noodle.backends.registry import get_backend
            from noodle.jit.lower import build_runner
            from noodle.passes import optimize

            key = (state.key(), name)
            runner = self.cached_runner(key)
            if runner is None:
                program = state.program
                if not program.meta.get("optimized"):
                    program = optimize(program)   # NBC from elsewhere may be unfused
                if name == "auto":
                    from noodle.jit.placing import chooser, plan_program

                    reason = "placement_error"
                    plan = plan_program(program, state.name, "auto", on_gpu=state.array_module == "cupy",
                                        measure=True)
                    reason = "compile_error"
                    runner = build_runner(program, chooser(plan))
                else:
                    backend = get_backend(name)
                    ok, why = backend.available()
                    if not ok:
                        reason = "backend_unavailable"
                        raise CompileError(f"backend {name!r} is not available here: {why}")
                    runner = build_runner(program, backend)
                self.keep_runner(key, runner)
        except Exception as exc:  # noqa: BLE001 - any failure means: stay interpreted
            seconds = time.perf_counter() - t0
            state.status = "failed"
            state.error = f"{type(exc).__name__}: {exc}"
            state.compile_seconds += seconds
            COMPILES.labels(name, "failed").inc()
            FALLBACKS.labels(reason).inc()
            metrics.emit("jit_compile", program=state.name, key=state.key(), backend=name, status="failed",
                         seconds=seconds, error=state.error)
            log.warning("noodle.jit: compiling %s with %s failed, it stays interpreted (results are "
                        "unaffected): %s", state.name, name, state.error)
            return "interpret"
        seconds = time.perf_counter() - t0
        state.compile_seconds += seconds
        state.backend = name
        state.status = "compiled"
        state.runner = runner
        COMPILES.labels(name, "ok").inc()
        for used in getattr(runner, "region_backends", ()):   # per compiled program, cache hit or not
            REGIONS.labels(used).inc()
        COMPILE_SECONDS.labels(name).observe(seconds)
        metrics.emit("jit_compile", program=state.name, key=state.key(), backend=name, status="ok",
                     seconds=seconds, regions=list(getattr(runner, "region_backends", ())))
        return name


_default: CompileManager | None = None
_default_lock = threading.Lock()


def default_manager() -> CompileManager:
    """The process-wide compile manager."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = CompileManager()
    return _default


def install() -> None:
    """Make the default manager the compile hook of :mod:`noodle.exec` (done on import)."""
    set_compile_hook(default_manager().submit)


install()

__all__ = ["CompileManager", "choose_backend", "default_manager", "install"]
