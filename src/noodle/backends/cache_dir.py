"""Cache directories of the backends (Numba kernels, IREE modules): written where configured, or,
when that directory cannot be written (a read-only or missing home), in a per-user directory under
the temporary directory, so that compiling goes on.

Example::

    directory = writable_dir(kernel_dir(), f".probe.{os.getpid()}", "noodle-kernels", warn)
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


@functools.lru_cache(maxsize=1)
def backends_digest() -> str:
    """A digest of the backends' own sources (``noodle/backends/*.py``).

    Why: a generated kernel calls helpers from these files (row sums, NumPy's loop callers), and
    Numba's disk cache keys a kernel by its own file alone; the generated source carries this
    digest, so a changed helper changes the source and the cached machine code is not reused."""
    digest = hashlib.sha256()
    try:
        for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    except OSError:   # sources not readable: every kernel is compiled afresh per source change only
        return "sources unreadable"
    return digest.hexdigest()[:12]


def writable_dir(directory: Path, probe: str, fallback_name: str,
                 warn: Callable[[Path, OSError, Path], None]) -> Path:
    """``directory`` (created) when a file named ``probe`` can be made in it; otherwise
    ``<tmp>/<fallback_name>-<uid>`` (created), after ``warn(directory, error, fallback)``."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / probe
        path.touch()
        path.unlink()
        return directory
    except OSError as exc:
        fallback = Path(tempfile.gettempdir()) / f"{fallback_name}-{os.getuid() if hasattr(os, 'getuid') else 0}"
        warn(directory, exc, fallback)
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


__all__ = ["writable_dir"]
