"""Numba's import and set-up started in a background thread at ``@noodle.jit`` decoration.

Why a module of its own: a warm-cache first compile in a fresh process is mostly Numba's import,
the import of the backend modules (some load cached machine code at import) and Numba's registry
set-up, about 0.5 s here, not loading the kernel. This module imports nothing heavy, so the
decorator can start that work and return at once; the caller's own work between decoration and
the first call then overlaps it. (It lived in ``numba_cpu``, whose own import did all the work
before the thread could start: 0.53 s inside the decorator.)

Example::

    from noodle.backends.numba_prewarm import prewarm
    prewarm().join()     # Numba and the Numba backend are imported and set up
"""

from __future__ import annotations

import importlib
import threading

_lock = threading.Lock()
_thread: threading.Thread | None = None


def _warm() -> None:
    importlib.import_module("numba")
    importlib.import_module("noodle.backends.numba_cpu")   # the backend, and the kernels it loads at import
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.registry import cpu_target

    # loading the first cached kernel fills Numba's typing and lowering registries (~0.15 s);
    # doing it here moves that cost off the first compile as well. Under Numba's compiler lock:
    # refreshing the registries while another thread compiles made that compile fail to type
    # plain array attributes ("Unknown attribute 'shape'").
    with global_compiler_lock:
        cpu_target.target_context.refresh()
        cpu_target.typing_context.refresh()


def prewarm() -> threading.Thread:
    """Import and set up Numba and the Numba backend in a background thread, once per process
    (the thread: join it to wait)."""
    global _thread
    if _thread is None:
        with _lock:
            if _thread is None:
                _thread = threading.Thread(target=_warm, name="noodle-numba-warm", daemon=True)
                _thread.start()
    return _thread


__all__ = ["prewarm"]
