"""Which region is current on each thread, and how many regions are active at all.

Why a module of its own: the eager ops and the Numba backend ask "is a region
active here?" on every call. ``ACTIVE_REGIONS`` answers "no" with one global
load; only when it is not zero do they look at this thread's stack. The stack
is thread-local, so one thread's region never receives another thread's
outputs.

Example::

    from noodle.memory import state
    if state.ACTIVE_REGIONS and state.current() is not None:
        ...   # allocate the output in the current region
"""

from __future__ import annotations

import os
import threading
from typing import Any

ACTIVE_REGIONS = 0
"""Regions entered and not yet ended, on all threads. Read it; only :func:`push` and :func:`pop` write it."""

_lock = threading.Lock()


class _Local(threading.local):
    def __init__(self) -> None:
        self.stack: list[Any] = []


_local = _Local()


def current() -> Any:
    """The innermost region entered on this thread (a ``RegionAllocator``), or None.

    Example::

        with noodle.region() as r:
            assert noodle.memory.current_region() is r
    """
    stack = _local.stack
    return stack[-1] if stack else None


def push(region: Any) -> None:
    """Make ``region`` this thread's current region."""
    global ACTIVE_REGIONS
    _local.stack.append(region)
    with _lock:
        ACTIVE_REGIONS += 1


def pop(region: Any) -> bool:
    """Undo :func:`push` for ``region``; False (nothing changed) when it is not the innermost one."""
    global ACTIVE_REGIONS
    stack = _local.stack
    if not stack or stack[-1] is not region:
        return False
    stack.pop()
    with _lock:
        ACTIVE_REGIONS -= 1
    return True


def _after_fork_in_child() -> None:
    """Only the forking thread lives on in a child: a lock another thread held is new again, and the
    count is this thread's regions."""
    global _lock, ACTIVE_REGIONS
    _lock = threading.Lock()
    ACTIVE_REGIONS = len(_local.stack)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


__all__ = ["ACTIVE_REGIONS", "current", "pop", "push"]
