"""Cache directories of the backends (Numba kernels, IREE modules): written where configured, or,
when that directory cannot be written (a read-only or missing home), in a per-user directory under
the temporary directory, so that compiling goes on.

Example::

    directory = writable_dir(kernel_dir(), f".probe.{os.getpid()}", "noodle-kernels", warn)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


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
