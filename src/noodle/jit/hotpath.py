"""The seed's names for the MLIR pipeline, as thin aliases over the JIT with the IREE backend.

Why aliases and not a second pipeline: the seed (§1, option 1) asks for
``jit_compile_hotpath(nir_module, target='gpu')`` and ``JITCompiler.compile(path,
hot_threshold) -> CompiledKernel``; the JIT already traces, fuses and lowers each region
(:mod:`noodle.jit.lower`), so these only pick the IREE backend (``llvm-cpu`` or ``cuda``) and
keep the seed's promise: when MLIR compilation fails the program runs in the interpreter,
never with a wrong answer; the failure is logged once per reason and counted in
``noodle_jit_hotpath_fallbacks_total``.

Example::

    import numpy as np, noodle as nd
    from noodle.jit.hotpath import JITCompiler, jit_compile_hotpath

    chain = JITCompiler(hot_threshold=1).compile(lambda a, b: a * b + 1.0)
    chain(np.ones(8), np.ones(8))                 # an nd.jit function on the IREE backend

    from noodle.trace import trace
    program = trace(lambda a: a * 2.0, [np.ones(4)])
    kernel = jit_compile_hotpath(program, target="cpu")
    kernel(np.arange(4.0))                         # array([0., 2., 4., 6.])
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from noodle import metrics
from noodle.errors import ConfigError
from noodle.ir.graph import Program

log = logging.getLogger("noodle.jit.hotpath")
_FALLBACKS = metrics.counter("noodle_jit_hotpath_fallbacks_total",
                             "hot paths left to the interpreter because MLIR compilation failed", ["target"])
_TARGETS = {"cpu": "llvm-cpu", "gpu": "cuda", "cuda": "cuda", "llvm-cpu": "llvm-cpu"}
_warned: set[str] = set()
_warned_lock = threading.Lock()


class CompiledKernel:
    """A program made callable: ``kernel(*arrays)`` returns what the traced function returned
    (one array, or a tuple). ``backend`` is "iree" or, after a failed compile, "interpret"
    with the reason in ``fallback_reason``."""

    def __init__(self, program: Program, runner: Callable[[Sequence[Any]], tuple[Any, ...]], backend: str,
                 fallback_reason: str | None = None) -> None:
        self.program = program
        self.backend = backend
        self.fallback_reason = fallback_reason
        self._runner = runner
        self._single = len(program.outputs) == 1

    def __call__(self, *args: Any) -> Any:
        out = self._runner(args)
        return out[0] if self._single else out

    def __repr__(self) -> str:
        why = f" ({self.fallback_reason})" if self.fallback_reason else ""
        return f"<CompiledKernel backend={self.backend!r}{why}>"


def _load(nir: Program | bytes | str | Path) -> Program:
    from noodle.nbc import loads  # noqa: PLC0415 - only for bytecode input

    if isinstance(nir, Program):
        return nir
    if isinstance(nir, bytes | bytearray):
        return loads(bytes(nir))
    if isinstance(nir, str | Path):
        return loads(Path(nir).read_bytes())
    raise ConfigError("nir_program", type(nir).__name__, "a noodle Program, NBC bytes or a path to an .nbc file")


def _interpreter(program: Program) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    from noodle.exec.interpreter import run_program  # noqa: PLC0415

    return lambda args: run_program(program, args)


def jit_compile_hotpath(nir_program: Program | bytes | str | Path, target: str = "cpu") -> CompiledKernel:
    """Compile a NIR program (a :class:`Program`, NBC bytes or an ``.nbc`` path) through MLIR
    for ``target`` ("cpu": IREE ``llvm-cpu``; "gpu": IREE ``cuda``). Falls back to the
    interpreter when compilation fails (logged once per reason, counted)."""
    from noodle.backends.iree_mlir import IreeBackend  # noqa: PLC0415 - lazy like every backend
    from noodle.backends.registry import get_backend  # noqa: PLC0415
    from noodle.jit.lower import build_runner  # noqa: PLC0415
    from noodle.passes import optimize  # noqa: PLC0415

    iree_target = _TARGETS.get(target)
    if iree_target is None:
        raise ConfigError("target", target, "'cpu' or 'gpu'")
    program = optimize(_load(nir_program))
    backend = get_backend("iree") if iree_target == "llvm-cpu" else IreeBackend(target="cuda")
    ok, why = backend.available()
    try:
        if not ok:
            raise RuntimeError(why)
        runner = build_runner(program, backend)
    except Exception as exc:  # noqa: BLE001 - any compiler failure: the interpreter is always right
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        _FALLBACKS.labels(target).inc()
        with _warned_lock:
            first = reason not in _warned
            _warned.add(reason)
        if first:
            log.warning("MLIR compilation for %s failed, the program runs in the interpreter: %s", target, reason)
        return CompiledKernel(program, _interpreter(program), "interpret", reason)
    return CompiledKernel(program, runner, "iree")


class JITCompiler:
    """The seed's compiler object: ``compile`` turns a function (or a NIR program) into a kernel
    that runs interpreted until hot, then through MLIR/IREE.

    ``hot_threshold``: calls (int), interpreted seconds (float) or both, as for ``nd.jit``."""

    def __init__(self, hot_threshold: Any = None, target: str = "cpu") -> None:
        if target not in _TARGETS:
            raise ConfigError("target", target, "'cpu' or 'gpu'")
        self.hot_threshold = hot_threshold
        self.target = target

    def compile(self, fn_or_program: Any, hot_threshold: Any = None) -> Any:
        """A Python function -> an ``nd.jit`` function on the IREE backend; a NIR program (or NBC
        bytes, or an ``.nbc`` path) -> a :class:`CompiledKernel` compiled now."""
        if callable(fn_or_program) and hasattr(fn_or_program, "__code__"):
            from noodle.jit.api import jit  # noqa: PLC0415

            if _TARGETS[self.target] == "cuda":
                raise ConfigError("target", self.target, "'cpu' for a function (the JIT's 'iree' backend is "
                                  "IREE's llvm-cpu); for the GPU, trace it and call "
                                  "jit_compile_hotpath(program, target='gpu')")
            threshold = self.hot_threshold if hot_threshold is None else hot_threshold
            return jit(fn_or_program, backend="iree", device="cpu", hot_threshold=threshold)
        return jit_compile_hotpath(fn_or_program, self.target)


__all__ = ["CompiledKernel", "JITCompiler", "jit_compile_hotpath"]
