"""Numba's disk cache of the backends' own ``@njit(cache=True)`` functions, keyed by every backend
source file, not only the function's own.

Why: Numba reuses a cached compiled function while its own file is unchanged, but an intrinsic
(the row sums' lanes, the row max, NumPy's float32 ``exp``, the counted-loop helper) is compiled
into its callers from another file. After such a file alone changed (a ``git pull`` into an
editable install, or a mutation test here), the callers came back from the cache with the old
code inside: a row max that missed a NaN. The locators registered here are Numba's own (user
directory, ``__pycache__``, per-user) for files in this package, with
:func:`~noodle.backends.cache_dir.backends_digest` (and a digest of ``noodle/ir``, whose constants
they freeze) added to the source stamp Numba compares, so a change to any of those files
recompiles them. ``NUMBA_CACHE_LOCATOR_CLASSES`` replaces Numba's list, and these with it. Generated kernels carry the same digest in their
source text (:mod:`noodle.backends.numba_cache`).

Example::

    stamp_backend_caches()   # before the module's @njit(cache=True) decorators run
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

from numba.core import caching

from noodle.backends.cache_dir import backends_digest

_HERE = os.path.dirname(os.path.abspath(__file__))


@functools.lru_cache(maxsize=1)
def _digest() -> str:
    # and noodle/ir: the functions freeze its constants (the sums' CHUNK) as globals
    ir = hashlib.sha256()
    try:
        for path in sorted((Path(_HERE).parent / "ir").glob("*.py")):
            ir.update(path.name.encode() + path.read_bytes())
    except OSError:
        return backends_digest() + "-ir-unreadable"
    return backends_digest() + "-" + ir.hexdigest()[:12]


class _Stamped:
    """Mixin for a source-file-backed Numba locator: only this package's files, digest in the stamp."""

    noodle_stamped = True

    def get_source_stamp(self) -> Any:
        return (super().get_source_stamp(), _digest())   # type: ignore[misc]

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> Any:
        if os.path.dirname(os.path.abspath(py_file)) != _HERE:
            return None
        return super().from_function(py_func, py_file)   # type: ignore[misc]


def stamp_backend_caches() -> None:
    """Put the stamped locators first in Numba's list (once per process)."""
    def named(name: str) -> Any:   # Numba before 0.61 spelled these with a leading underscore
        return getattr(caching, name, None) or getattr(caching, "_" + name)

    classes = named("CacheImpl")._locator_classes
    if any(getattr(c, "noodle_stamped", False) for c in classes):
        return
    bases = [named("UserProvidedCacheLocator"), named("InTreeCacheLocator"), named("UserWideCacheLocator")]
    classes[:0] = [type(f"Noodle{b.__name__}", (_Stamped, b), {}) for b in bases]


__all__ = ["stamp_backend_caches"]
