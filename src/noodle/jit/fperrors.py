"""Whether the caller's ``np.errstate`` makes a floating-point error an exception (or a call).

Why: compiled kernels do not look at floating-point flags, and the runner computes under
``errstate(all="ignore")``; so under ``np.errstate(all="raise")`` a jitted function returned
``inf`` or a wrapped integer where the plain function raises ``FloatingPointError``: a silent
answer where NumPy gives none. :func:`fp_traps` lets ``nd.jit`` run the plain function in that
case, which does exactly what NumPy does. Under the default (``warn``) and ``ignore`` the jitted
result is the plain function's (without its ``RuntimeWarning``).

The check costs one context-variable read and an identity test per call: NumPy keeps the state
in a context variable whose value changes object whenever ``errstate``/``seterr`` changes it,
so the answer for the last object seen is kept.

Example::

    >>> import numpy as np
    >>> fp_traps()
    False
    >>> with np.errstate(divide="raise"):
    ...     fp_traps()
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:   # NumPy >= 2.0 keeps errstate in this context variable
    from numpy._core.umath import _extobj_contextvar as _STATE
except ImportError:  # pragma: no cover - another NumPy: ask np.geterr() on every call
    _STATE = None

_TRAPS = frozenset({"raise", "call", "log"})
_last: tuple[Any, bool] = (object(), False)


def fp_traps() -> bool:
    """True when any floating-point error class is set to raise, call or log in this context."""
    global _last
    if _STATE is not None:
        state = _STATE.get()
        seen, traps = _last
        if state is seen:
            return traps
    traps = any(mode in _TRAPS for mode in np.geterr().values())
    if _STATE is not None:
        _last = (state, traps)
    return traps


__all__ = ["fp_traps"]
