"""Number formatting shared by the report sections.

Why one module: the sections print the same kinds of figures (latencies,
durations) and a reader compares them across tables, so a latency must be
spelled the same way everywhere. ``None`` (no observation) prints as ``-``.

Example::

    >>> micros(0.0000123)
    '12.3 µs'
    >>> duration(0.25)
    '250.00 ms'
    >>> duration(None)
    '-'
    >>> nbytes(8 << 20)
    '8.0 MiB'
"""

from __future__ import annotations


def micros(seconds: float | None) -> str:
    """``seconds`` in microseconds with one decimal (``-`` for None), whatever its size."""
    if seconds is None:
        return "-"
    return f"{seconds * 1e6:.1f} µs"


def duration(seconds: float | None) -> str:
    """``seconds`` in the unit that reads best: µs below 1 ms, ms below 1 s, else s."""
    if seconds is None or seconds < 1e-3:
        return micros(seconds)
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def nbytes(n: float | None) -> str:
    """A byte count in binary units with one decimal (``-`` for None): 512 B, 8.0 MiB, 1.5 GiB."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"   # unreachable: the loop returns at GiB


__all__ = ["duration", "micros", "nbytes"]
