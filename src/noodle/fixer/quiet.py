"""Compile probes without their warnings, taking turns on the process-wide warnings state.

Why: the fixer compiles candidate texts to test them, and CPython warns about some of them
(invalid escape sequences, ``is`` with a literal); those warnings are not the user's. Silencing
them with ``warnings.catch_warnings`` swaps module-wide state, which is not thread-safe: two
threads probing at once (the HTTP server's workers, the LSP worker, a caller's threads) could
put one probe's "ignore everything" back after the other's block ended, for the rest of the
process. One lock makes every probe of this package take its turn; ``compile`` holds the GIL
anyway, so nothing runs slower. A thread of the program's own entering ``catch_warnings`` while a
probe runs can still interleave with it: before CPython 3.14 there is no per-thread warnings state.

Example::

    with probe_warnings_silenced():
        compile("x = '\\\\y'", "<probe>", "exec")
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator

_LOCK = threading.RLock()


@contextlib.contextmanager
def probe_warnings_silenced() -> Iterator[None]:
    """No warning from the block is shown; other threads' probes wait for it to end."""
    with _LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


__all__ = ["probe_warnings_silenced"]
