"""What the call-path tests share: counting general-path calls, comparing results bit for bit, and
loading an example as a module."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

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


def assert_same_bits(got: Any, want: Any) -> None:
    """``same_bits`` through tuples, with the same container and scalar types."""
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want), (got, want)
        for g, w in zip(got, want, strict=True):
            assert_same_bits(g, w)
        return
    assert same_bits(got, want), (got, want)


def example_module(name: str) -> Any:
    """``examples/<name>.py`` imported as a module (the examples directory is not a package)."""
    path = Path(__file__).resolve().parents[2] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
