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


__all__ = ["duration", "micros"]
