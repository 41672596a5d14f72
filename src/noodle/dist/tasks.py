"""Functions that run ON the workers: one chunk of a map, one step of a reduction.

They live in a real module (not closures) so Dask sends them by reference:
the worker imports ``noodle.dist.tasks`` instead of unpickling code. Each
chunk reports the worker it ran on so the client can count tasks per worker
without asking the scheduler.

Per-task regions (``Processor.map(..., region=True)``): a chunk runs inside
``noodle.region(scope)``, so its temporaries (eager op outputs, ``alloc.*``
arrays, registered cyclic objects) go back to the scope's warm chunks when it
ends and the worker's memory returns to where it was between chunks. The
region arrays in the results (also inside lists, tuples, dicts and Matrix
objects) are copied to the heap before the region ends. Why copy rather than
let them escape: a result waits on the worker until the client fetches it, and
an escaped one would pin its whole chunk (8 MiB for a shared one) that long,
out of reach of the next chunk; one copy of the result is cheap next to the
pickling and transfer that follow. Anything the copy cannot reach (a region
array inside your own object) stays valid by the region's escape rule, and
counts as escaped. Such a chunk returns its region's figures as a third
element, which the client folds into its metrics.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from noodle.metrics.process import rss_bytes


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


def call_in_region(scope: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``call_checked`` inside a region of ``scope`` (``Processor.submit(..., region=True)``)."""
    value, _ = in_region(scope, lambda: fn(*args, **kwargs))
    check_picklable([value], "the result of the task")
    return value


def run_chunk(fn: Callable[[Any], Any], items: Sequence[Any], region: str | None = None) -> tuple[Any, ...]:
    """Apply ``fn`` to each item of one chunk; returns (worker address, results in order), plus the
    region's figures when the chunk ran in a region of scope ``region``."""
    if region is not None:
        values, stats = in_region(region, lambda: [fn(item) for item in items])
        check_picklable(values, "the result of the chunk's item")
        return _worker_address(), values, stats
    values = [fn(item) for item in items]
    check_picklable(values, "the result of the chunk's item")
    return _worker_address(), values


def reduce_chunk(fn: Callable[[Any], Any], items: Sequence[Any],
                 combine: Callable[[Any, Any], Any], region: str | None = None) -> tuple[Any, ...]:
    """Map then fold one chunk on the worker, left to right, so only one value travels back."""
    if region is not None:
        value, stats = in_region(region, lambda: functools.reduce(combine, (fn(item) for item in items)))
        check_picklable([value], "the partial reduction of the chunk")
        return _worker_address(), value, stats
    value = functools.reduce(combine, (fn(item) for item in items))
    check_picklable([value], "the partial reduction of the chunk")
    return _worker_address(), value


def combine_partials(combine: Callable[[Any, Any], Any], partials: Sequence[tuple[Any, ...]]) -> tuple[str, Any]:
    """Fold adjacent partial results (order kept: ``combine`` need not be commutative)."""
    value = functools.reduce(combine, (part[1] for part in partials))
    check_picklable([value], "the combined reduction")
    return _worker_address(), value


# --- per-task regions ---------------------------------------------------------------------------
_COPY_DEPTH = 16   # container levels searched for region arrays in a result


def in_region(scope: str, compute: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """``compute()`` inside ``noodle.region(scope)``, its region arrays copied out before the region
    ends; returns (value, the region's figures and this process's RSS after the exit)."""
    from noodle.memory import region

    with region(scope) as alloc:
        try:
            value = compute()
        except BaseException as exc:
            # the failed task's frames (kept by the traceback as long as Dask keeps the error) would hold
            # its region arrays: clear their locals, so the memory goes back and is not reported as escaped
            traceback.clear_frames(exc.__traceback__)
            raise
        value, copied = _copy_out(value, alloc, 0)
    stats = alloc.stats()
    return value, {"scope": scope, "bytes_allocated": stats["bytes_allocated"], "peak": stats["peak"],
                   "chunks": stats["chunks"], "chunks_reused": stats["chunks_reused"],
                   "escaped_bytes": stats["escaped_bytes"], "objects_cleared": stats["objects_cleared"],
                   "copied_bytes": copied, "rss": rss_bytes()}


def _copy_out(value: Any, alloc: Any, depth: int) -> tuple[Any, int]:
    """``value`` with every region array it holds (directly, or in lists, tuples, dicts and Matrix
    objects) replaced by a heap copy; containers are rebuilt only when something inside was copied.
    Returns (value, bytes copied)."""
    t = type(value)
    if t in _LEAVES:
        return value, 0
    if hasattr(t, "_noodle_data") or hasattr(value, "__array_interface__") \
            or hasattr(value, "__cuda_array_interface__"):
        if alloc.owns(value):
            out = alloc.export(value)
            return out, int(getattr(getattr(out, "_noodle_data", out), "nbytes", 0))
        return value, 0
    if depth >= _COPY_DEPTH:
        return value, 0
    if t is list or t is tuple:
        copied = 0
        parts = []
        for item in value:
            new, n = _copy_out(item, alloc, depth + 1)
            parts.append(new)
            copied += n
        return (value if not copied else parts if t is list else tuple(parts)), copied
    if t is dict:
        copied = 0
        out = {}
        for k, v in value.items():
            out[k], n = _copy_out(v, alloc, depth + 1)
            copied += n
        return (out if copied else value), copied
    return value, 0


_LEAVES = (type(None), bool, int, float, complex, str, bytes)




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


def run_program_chunk(nbc: bytes, items: Sequence[tuple[Any, ...]], compile_first: bool,
                      region: str | None = None) -> tuple[Any, ...]:
    """Run an NBC program on each item (a tuple of arrays) of one chunk, on this worker's Executor
    (inside a region of scope ``region`` if given, as :func:`run_chunk`)."""
    executor = _executor()
    state = executor.state(bytes(nbc))  # decodes and verifies on first sight; raises NBCFormatError
    if compile_first and state.runner is None and state.status in ("interpreted", "failed"):
        from noodle.jit.manager import default_manager

        with state.lock:
            if state.status in ("interpreted", "failed"):
                state.status = "queued"
        default_manager().compile_now(state)  # failure keeps it interpreted (same answers, slower)
    if region is not None:
        values, stats = in_region(region, lambda: [executor.execute(nbc, *args) for args in items])
        return _worker_address(), values, stats
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
