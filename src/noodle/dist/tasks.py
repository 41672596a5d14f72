"""Functions that run ON the workers: one chunk of a map, one step of a reduction.

They live in a real module (not closures) so Dask sends them by reference:
the worker imports ``noodle.dist.tasks`` instead of unpickling code. Each
chunk reports the worker it ran on so the client can count tasks per worker
without asking the scheduler.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except Exception:  # not inside a worker (a direct call in a test)
        return "local"


def _fails_to_pickle(value: Any) -> BaseException | None:
    """The error pickling ``value`` raises, or None. Array buffers go out of band (no copy)."""
    import cloudpickle

    buffers: list[Any] = []
    try:
        cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception as exc:  # pickling raises TypeError, PicklingError, AttributeError...
        return exc
    return None


def check_picklable(values: Sequence[Any], what: str) -> None:
    """Raise DistTypeError naming the first value that cannot travel back to the client.

    Why on the worker: a result that cannot be pickled is only found when the
    client asks for it, and Dask then retries the transfer forever (the map
    hung, ignoring its timeout). Checked here, the chunk fails at once with
    the type to fix. Pickling twice costs little: array data is not copied.
    """
    if _fails_to_pickle(values) is None:
        return
    from noodle.errors import DistTypeError

    for i, value in enumerate(values):
        exc = _fails_to_pickle(value)
        if exc is not None:
            which = f"{what} {i}" if len(values) > 1 else what
            raise DistTypeError(
                f"{which} is a {type(value).__module__}.{type(value).__qualname__}, which cannot be pickled "
                f"({exc}), so it cannot travel back from the worker; return plain data (numbers, strings, "
                f"arrays, lists, dicts) or an object that defines __reduce__"
            )
    raise DistTypeError(f"{what} cannot be pickled, so they cannot travel back from the worker")


def call_checked(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` for ``Processor.submit``, with the result checked to be picklable."""
    value = fn(*args, **kwargs)
    check_picklable([value], "the result of the task")
    return value


def run_chunk(fn: Callable[[Any], Any], items: Sequence[Any]) -> tuple[str, list[Any]]:
    """Apply ``fn`` to each item of one chunk; returns (worker address, results in order)."""
    values = [fn(item) for item in items]
    check_picklable(values, "the result of the chunk's item")
    return _worker_address(), values


def reduce_chunk(fn: Callable[[Any], Any], items: Sequence[Any],
                 combine: Callable[[Any, Any], Any]) -> tuple[str, Any]:
    """Map then fold one chunk on the worker, left to right, so only one value travels back."""
    value = functools.reduce(combine, (fn(item) for item in items))
    check_picklable([value], "the partial reduction of the chunk")
    return _worker_address(), value


def combine_partials(combine: Callable[[Any, Any], Any], partials: Sequence[tuple[str, Any]]) -> tuple[str, Any]:
    """Fold adjacent partial results (order kept: ``combine`` need not be commutative)."""
    value = functools.reduce(combine, (value for _, value in partials))
    check_picklable([value], "the combined reduction")
    return _worker_address(), value


# --- noodle programs on workers ---------------------------------------------------------------
# One Executor per worker process: it decodes and verifies each NBC program once (noodle.nbc.loads
# checks every field; nothing in it is unpickled) and keeps its run state, so a program that gets
# hot is compiled once per worker, through the kernel cache under NOODLE_CACHE_DIR.
_EXECUTOR: Any = None


def _executor() -> Any:
    global _EXECUTOR
    if _EXECUTOR is None:
        from noodle.exec import Executor

        _EXECUTOR = Executor()
    return _EXECUTOR


def run_program_chunk(nbc: bytes, items: Sequence[tuple[Any, ...]], compile_first: bool) -> tuple[str, list[Any]]:
    """Run an NBC program on each item (a tuple of arrays) of one chunk, on this worker's Executor."""
    executor = _executor()
    state = executor.state(bytes(nbc))  # decodes and verifies on first sight; raises NBCFormatError
    if compile_first and state.runner is None and state.status in ("interpreted", "failed"):
        from noodle.jit.manager import default_manager

        with state.lock:
            if state.status in ("interpreted", "failed"):
                state.status = "queued"
        default_manager().compile_now(state)  # failure keeps it interpreted (same answers, slower)
    return _worker_address(), [executor.execute(nbc, *args) for args in items]


def program_stats() -> dict[str, Any]:
    """This worker's program run state and kernel builds (from disk cache vs compiled), for reports and tests."""
    from noodle import metrics

    builds = metrics.registry.get("noodle_jit_kernel_compiles_total")
    by_source: dict[str, float] = {}
    if builds is not None:
        for key, child in builds.children():
            by_source[key[1]] = by_source.get(key[1], 0.0) + child.value
    programs = _EXECUTOR.stats() if _EXECUTOR is not None else {}
    return {"kernel_builds": by_source, "programs": programs}
