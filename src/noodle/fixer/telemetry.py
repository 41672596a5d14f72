"""Every fix reports its kind and latency to the metrics registry (``noodle_fixer_seconds{kind}``,
``noodle_fixer_fixes_total{kind}``), so ``noodle run``'s report and ``noodle serve`` show them.

Why observations may wait: the registry's exporter (prometheus-client) costs ~60 ms to import,
a sixth of a one-file ``noodle fix`` whose process ends before anyone could read it. While
nothing has imported :mod:`noodle.metrics`, observations wait here (plain tuples, at most
PENDING_LIMIT) and :func:`publish` moves them over; once the registry is loaded every fix goes
straight in. Why :func:`quiet`: the batch runner counts one fix per *file* (a large file is
repaired in pieces, and a worker's fixes are counted by the client), so the ``fix`` calls it
makes do not count themselves.

Example::

    from noodle.fixer import fix, telemetry
    fix("x = (1,\\n")
    telemetry.publish()      # now in noodle_fixer_seconds{kind="simple"}
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Iterator
from typing import Any

PENDING_LIMIT = 4096

_QUIET: contextvars.ContextVar[bool] = contextvars.ContextVar("noodle_fixer_quiet", default=False)
_METRICS: tuple[Any, Any] | None = None
_PENDING: list[tuple[str, float]] = []


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Within this block, :func:`record_fix` records nothing (the caller counts the fixes itself)."""
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


def record_fix(kind: str, seconds: float) -> None:
    """One call of :func:`noodle.fixer.fix` finished (nothing inside :func:`quiet`)."""
    if not _QUIET.get():
        record(kind, seconds)


def record(kind: str, seconds: float) -> None:
    """Report one fix (its kind and latency) to the metrics registry, now or at the next publish."""
    _PENDING.append((kind, seconds))
    if "noodle.metrics" in sys.modules or len(_PENDING) >= PENDING_LIMIT:
        publish()


def publish() -> None:
    """Move waiting observations into the registry (nothing is kept when
    NOODLE_SYNTAX_FIXER_PERFORMANCE_MONITORING is off)."""
    global _METRICS
    if not _PENDING:
        return
    pending = _PENDING[:]
    del _PENDING[:len(pending)]
    from noodle.config import get_settings

    if not get_settings().performance_monitoring:
        return
    if _METRICS is None:
        from noodle import metrics

        _METRICS = (
            metrics.histogram("noodle_fixer_seconds", "latency of one syntax fix (one file), by result kind",
                              ["kind"], buckets=(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1,
                                                 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)),
            metrics.counter("noodle_fixer_fixes_total", "syntax fixes run (one per file), by result kind", ["kind"]),
        )
    hist, count = _METRICS
    for kind, seconds in pending:
        hist.labels(kind).observe(seconds)
        count.labels(kind).inc()


__all__ = ["PENDING_LIMIT", "publish", "quiet", "record", "record_fix"]
