"""What the call-path tests share: counting general-path calls, and comparing results bit for bit."""

from __future__ import annotations

import numpy as np


def general_calls(f, monkeypatch) -> list[int]:
    """Count the calls of jitted ``f`` that take the general path (one entry per call)."""
    calls: list[int] = []
    general = f._call

    def counted(args, kwargs):
        calls.append(1)
        return general(args, kwargs)
    monkeypatch.setattr(f, "_call", counted)
    return calls


def same_bits(a, b) -> bool:
    """Same dtype, shape and bytes (NaN payloads and signed zeros included)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
