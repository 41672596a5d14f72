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


def run_chunk(fn: Callable[[Any], Any], items: Sequence[Any]) -> tuple[str, list[Any]]:
    """Apply ``fn`` to each item of one chunk; returns (worker address, results in order)."""
    return _worker_address(), [fn(item) for item in items]


def reduce_chunk(fn: Callable[[Any], Any], items: Sequence[Any],
                 combine: Callable[[Any, Any], Any]) -> tuple[str, Any]:
    """Map then fold one chunk on the worker, left to right, so only one value travels back."""
    return _worker_address(), functools.reduce(combine, (fn(item) for item in items))


def combine_partials(combine: Callable[[Any, Any], Any], partials: Sequence[tuple[str, Any]]) -> tuple[str, Any]:
    """Fold adjacent partial results (order kept: ``combine`` need not be commutative)."""
    return _worker_address(), functools.reduce(combine, (value for _, value in partials))
