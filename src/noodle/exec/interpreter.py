"""Reference semantics: run a NIR program node by node with NumPy (or CuPy).

Why an interpreter at all: it is the *definition* every backend is tested
against (tinygrad's ``ops_python``), it runs every program whatever backends
are installed, and it is what a program runs on until it is hot enough to be
worth compiling. Each op calls the NumPy function named in the op table's
``numpy`` column, on the array module of the inputs.

Example::

    >>> import numpy as np
    >>> from noodle.ir.graph import Builder
    >>> from noodle.exec.interpreter import run_program
    >>> b = Builder(); x = b.input(0, (3,), "float64")
    >>> run_program(b.finish([b.add("negative", x)]), (np.ones(3),))[0]
    array([-1., -1., -1.])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from noodle.errors import ExecutionError, NBCResourceError, NoodleError, OpValueError
from noodle.ir.graph import Program
from noodle.ir.semantics import eval_node


def array_module(args: Sequence[Any]) -> Any:
    """``cupy`` when any argument is a CuPy array, else ``numpy``."""
    for a in args:
        mod = type(a).__module__
        if mod.startswith("cupy"):
            import cupy  # noqa: PLC0415  (optional, only when CuPy arrays are passed)

            return cupy
    return np


def run_program(program: Program, args: Sequence[Any], xp: Any = None,
                on_node: Callable[[int, float], None] | None = None) -> tuple[Any, ...]:
    """Evaluate ``program`` on ``args``; returns the outputs in order.

    ``on_node(index, seconds)`` (optional) is called after each computing node:
    the per-instruction counters of the executor hang off it.
    """
    if xp is None:
        xp = array_module(args)
    nodes = program.nodes
    consts = program.consts
    values: list[Any] = [None] * len(nodes)
    users_left = _use_counts(program)
    outputs = set(program.outputs)
    with np.errstate(all="ignore"):
        for i, node in enumerate(nodes):
            op = node.op
            if op == "input":
                values[i] = args[node.attrs[0][1]]
                continue
            if op == "const":
                c = consts[node.attrs[0][1]]
                values[i] = c if xp is np else xp.asarray(c)
                continue
            operands = [values[a] for a in node.args]
            try:
                if on_node is not None:
                    t0 = time.perf_counter()
                    values[i] = eval_node(node, operands, xp)
                    on_node(i, time.perf_counter() - t0)
                else:
                    values[i] = eval_node(node, operands, xp)
            except NoodleError:
                raise
            except Exception as exc:  # noqa: BLE001 - translated to a noodle error, never swallowed
                raise _translate(exc, i, program) from exc
            for a in node.args:  # free temporaries as soon as their last user ran
                users_left[a] -= 1
                if users_left[a] == 0 and a not in outputs:
                    values[a] = None
    return tuple(values[o] for o in program.outputs)


def _translate(exc: Exception, i: int, program: Program) -> Exception:
    """The noodle error to raise for ``exc`` raised while running node ``i``.

    Why: callers (and a server running untrusted NBC) catch ``NoodleError``; NumPy's bare
    ``MemoryError`` (``numpy._ArrayMemoryError``), a CuPy out-of-memory error or any other
    low-level exception would otherwise escape unnamed. Memory becomes
    :class:`NBCResourceError`, a refused value :class:`OpValueError` (a ``ValueError``, as
    NumPy's), anything else :class:`ExecutionError`, each naming the
    instruction (noodle's own errors are re-raised unchanged before this is called).
    """
    from noodle.ir.printer import format_node

    text = format_node(i, program.nodes[i], program).strip()
    if isinstance(exc, MemoryError):
        return NBCResourceError(
            f"instruction {text} ran out of memory ({type(exc).__name__}: {exc}). Free memory, use "
            "smaller inputs, or lower NOODLE_EXEC_MAX_BYTES so such programs are refused before they run.")
    if isinstance(exc, ValueError):
        # NumPy refused the values (an integer to a negative power): a ValueError, as NumPy's
        return OpValueError(f"instruction {text} failed: {exc}")
    return ExecutionError(f"instruction {text} failed: {type(exc).__name__}: {exc}")


def _use_counts(program: Program) -> list[int]:
    cached = program.meta.get("_use_counts")
    if cached is None:
        cached = [0] * len(program.nodes)
        for node in program.nodes:
            for a in node.args:
                cached[a] += 1
        program.meta["_use_counts"] = cached
    return list(cached)


__all__ = ["array_module", "eval_node", "run_program"]
