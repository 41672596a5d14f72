"""Backends by name, imported lazily.

Why lazy: importing Numba costs ~0.3 s and CuPy more; ``import noodle`` must
not pay for a backend nobody uses, and a missing toolchain must show up as
``available() == (False, reason)``, never as an ImportError at import time.

A new backend is one entry in ``_FACTORIES`` ("module:Class").

Example::

    from noodle.backends.registry import get_backend, available_backends
    available_backends()          # e.g. ["numba"]
    get_backend("numba").available()
"""

from __future__ import annotations

import importlib
import threading

from noodle.backends.base import Backend
from noodle.errors import CompileError

_FACTORIES: dict[str, str] = {
    "numba": "noodle.backends.numba_cpu:NumbaBackend",
    "cuda": "noodle.backends.cuda_gpu:CudaBackend",
    "iree": "noodle.backends.iree_mlir:IreeBackend",
}

_instances: dict[str, Backend] = {}
_lock = threading.Lock()


def backend_names() -> list[str]:
    """Every backend noodle knows, available here or not."""
    return list(_FACTORIES)


def get_backend(name: str) -> Backend:
    """The (shared) backend instance called ``name``; CompileError names the known ones."""
    backend = _instances.get(name)
    if backend is not None:
        return backend
    target = _FACTORIES.get(name)
    if target is None:
        raise CompileError(f"unknown backend {name!r}; known backends: {', '.join(_FACTORIES)}")
    with _lock:
        backend = _instances.get(name)
        if backend is None:
            module_name, cls_name = target.split(":")
            backend = getattr(importlib.import_module(module_name), cls_name)()
            _instances[name] = backend
    return backend


def available_backends() -> list[str]:
    """Names of the backends whose toolchain works on this machine."""
    return [name for name in _FACTORIES if get_backend(name).available()[0]]


__all__ = ["available_backends", "backend_names", "get_backend"]
