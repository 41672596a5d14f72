"""Functions the dist tests run on real worker processes.

Kept in a module (sent by value to the workers, see conftest) so that the
tests read like ordinary code and the workers never need the tests on their path.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def square(x: int) -> int:
    return x * x


def slow_square(x: int, seconds: float = 0.05) -> int:
    time.sleep(seconds)
    return x * x


def started_at(tag: str, seconds: float) -> tuple[str, float, int]:
    """Sleep, returning when the task started (wall clock, comparable across processes)."""
    t0 = time.time()
    time.sleep(seconds)
    return tag, t0, os.getpid()


def where(_x: object) -> int:
    return os.getpid()


def flaky(counter_file: str, fail_times: int) -> str:
    """Raise the first ``fail_times`` calls (state in a file, so it survives across processes)."""
    path = Path(counter_file)
    calls = int(path.read_text()) if path.exists() else 0
    path.write_text(str(calls + 1))
    if calls < fail_times:
        raise ConnectionError(f"flaky failure {calls + 1} of {fail_times}")
    return f"ok after {calls} failures"


def crash(_x: object = None) -> None:
    """Kill the worker process outright (no exception, no cleanup), like a segfault would."""
    os._exit(1)


def bad_item(x: int) -> int:
    if x == 7:
        raise ValueError(f"item {x} is bad")
    return x


def concat(a: str, b: str) -> str:
    return a + b


def flaky_item(args: tuple[str, int]) -> str:
    return flaky(*args)


def square_and_pid(x: int, seconds: float = 0.1) -> tuple[int, int]:
    time.sleep(seconds)
    return x * x, os.getpid()


def crash_on(x: int) -> int:
    if x == 3:
        os._exit(1)
    return x


def counted(path: str, x: int, seconds: float = 0.004) -> int:
    """Square ``x``, appending one line per execution to ``path`` (O_APPEND: whole lines from any process)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{x}\n".encode())
    finally:
        os.close(fd)
    time.sleep(seconds)
    return x * x


def make_lock(_x: object = None) -> object:
    """A result that cannot be pickled."""
    import threading

    return threading.Lock()
