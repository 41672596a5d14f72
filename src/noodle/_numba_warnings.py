"""Numba's compiler must not change the warnings state the rest of the process sees.

Why: ``warnings.catch_warnings`` saves the module-wide filters and
``showwarning`` on entry and puts them back on exit; it is not thread-safe
before CPython 3.14. Numba enters it several times per compile (type
inference, rewrite retries, ufunc building), and noodle compiles on
background threads (eager kernels, the JIT's compile thread, native entries,
calibration). A compile that entered while a user thread was inside its own
``with warnings.catch_warnings():`` puts the user's temporary state back when
it leaves: warnings the user records are lost (a ``pytest.warns`` block sees
none), or a temporary ``"ignore"`` stays for the rest of the process.

So Numba's modules that do this get a ``warnings`` of their own: everything is
the standard module except that ``catch_warnings`` changes nothing
process-wide, and filters set inside it are dropped. Warnings raised while
compiling go through the filters the program set, as they are; Numba's own
deduplication of its warnings is what is given up.

:func:`install` runs when ``noodle`` is imported: it patches Numba's modules
now if Numba is loaded, otherwise right after Numba loads them.

Example::

    import noodle._numba_warnings as nw
    nw.install()          # idempotent; ``import noodle`` already did it
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import sys
import threading
import types
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

# the modules of Numba that enter catch_warnings while compiling
PATCHED = ("numba.core.errors", "numba.core.compiler", "numba.np.ufunc.ufuncbuilder")


class _LocalWarnings(types.ModuleType):
    """``warnings`` as Numba's modules see it: ``catch_warnings`` is a scope of this thread only."""

    def __init__(self) -> None:
        super().__init__("warnings", warnings.__doc__)
        self._inside = threading.local()

    def __getattr__(self, name: str) -> Any:
        return getattr(warnings, name)

    def _depth(self) -> int:
        return getattr(self._inside, "depth", 0)

    @contextlib.contextmanager
    def catch_warnings(self, *, record: bool = False, **_: Any) -> Iterator[list[Any] | None]:
        self._inside.depth = self._depth() + 1
        try:
            yield [] if record else None
        finally:
            self._inside.depth -= 1

    def simplefilter(self, *args: Any, **kwargs: Any) -> None:
        if self._depth() == 0:
            warnings.simplefilter(*args, **kwargs)

    def filterwarnings(self, *args: Any, **kwargs: Any) -> None:
        if self._depth() == 0:
            warnings.filterwarnings(*args, **kwargs)

    def resetwarnings(self) -> None:
        if self._depth() == 0:
            warnings.resetwarnings()


LOCAL_WARNINGS = _LocalWarnings()
_lock = threading.Lock()


def _patch(module: types.ModuleType) -> None:
    if getattr(module, "warnings", None) is warnings:
        module.warnings = LOCAL_WARNINGS  # type: ignore[attr-defined]


class _PatchingLoader(importlib.abc.Loader):
    """The loader found for one of :data:`PATCHED`, patching the module once it ran."""

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self._inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._inner.exec_module(module)
        _patch(module)

    def __getattr__(self, name: str) -> Any:   # get_source, get_filename, is_package, ...
        return getattr(self._inner, name)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader the other finders give for :data:`PATCHED`."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in PATCHED:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


_FINDER = _Finder()


def install() -> None:
    """Patch Numba's modules now where loaded, and the rest as they load (idempotent)."""
    with _lock:
        for name in PATCHED:
            module = sys.modules.get(name)
            if module is not None:
                _patch(module)
        if not all(name in sys.modules for name in PATCHED) and _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)


__all__ = ["LOCAL_WARNINGS", "PATCHED", "install"]
