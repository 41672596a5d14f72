"""The on-disk kernel cache of the Numba backend: generated sources and Numba's machine code.

Why files: the generated module source is written to ``<cache_dir>/kernels/k_<key>.py`` and its
functions use ``@njit(cache=True)`` with explicit signatures, so a second process imports the
file and Numba loads the machine code from its cache (next to it) instead of compiling. Keys are
spec content hashes; nothing here is unpickled by noodle (Numba's own index is Numba's business,
in a directory only this user writes). A cache directory that cannot be written falls back to a
per-user one in the temporary directory, once, with a warning.

Example::

    mod = load_module(spec.key(), source)     # written atomically if changed, then imported
    from_cache(mod)                           # True when no dispatcher had to compile
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

from noodle.backends.cache_dir import writable_dir
from noodle.config import get_settings
from noodle.errors import CompileError

_import_lock = threading.Lock()
_warned_dirs: dict[str, bool] = {}
log = logging.getLogger("noodle.backends.numba")


def kernel_dir() -> Path:
    """Where generated kernel sources (and Numba's cache next to them) live."""
    return Path(get_settings().cache_dir) / "kernels"


def _warn_once(directory: Path, exc: OSError, fallback: Path) -> None:
    if not _warned_dirs.get(str(directory)):
        _warned_dirs[str(directory)] = True
        log.warning("kernel cache %s is not writable (%s); using %s", directory, exc, fallback)


def _writable(directory: Path) -> Path:
    # read-only or missing home: keep compiling, cache per machine in /tmp
    return writable_dir(directory, f".probe.{os.getpid()}", "noodle-kernels", _warn_once)


def load_module(key: str, source: str, directory: Path | None = None) -> Any:
    """Write ``source`` to the kernel cache (atomically, if changed) and import it."""
    directory = _writable(kernel_dir() if directory is None else directory)
    path = directory / f"k_{key}.py"
    try:
        current = path.read_text(encoding="utf-8") if path.exists() else None
    except OSError:
        current = None
    if current != source:
        tmp = directory / f".k_{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_text(source, encoding="utf-8")
        os.replace(tmp, path)
    name = f"noodle_kernel_{key}"  # importable by this name while loaded: Numba's cache re-imports it
    with _import_lock:
        mod = sys.modules.get(name)
        if mod is not None:
            return mod
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise CompileError(f"cannot import generated kernel {path}")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            sys.modules.pop(name, None)
            raise
    return mod


def from_cache(mod: Any) -> bool:
    """True when every dispatcher of ``mod`` was loaded from Numba's disk cache (no compile)."""
    found = False
    for value in vars(mod).values():
        stats = getattr(value, "stats", None)
        if stats is None or not hasattr(stats, "cache_hits") or not getattr(value, "signatures", None):
            continue  # not a dispatcher, or one compiled lazily on first use
        found = True
        if not stats.cache_hits or stats.cache_misses:
            return False
    return found


__all__ = ["from_cache", "kernel_dir", "load_module"]
