"""Report section: time per op, device and backend (from ``noodle_op_seconds``)."""

from __future__ import annotations

from typing import Any

from noodle.metrics import Registry
from noodle.report.format import duration

ORDER = 10


def render(registry: Registry) -> Any:
    from rich.table import Table

    metric = registry.get("noodle_op_seconds")
    if metric is None:
        return None
    rows = []
    for key, child in metric.children():
        if child.count:
            rows.append((child.sum, key, child))
    if not rows:
        return None
    table = Table(title="eager ops: time per op and device")
    for col in ("op", "device", "backend", "calls", "total", "mean", "p50", "p95"):
        table.add_column(col, justify="left" if col in ("op", "device", "backend") else "right")
    for total, (op, device, backend), child in sorted(rows, reverse=True):
        table.add_row(op, device, backend, str(child.count), duration(total), duration(total / child.count),
                      duration(child.percentile(50)), duration(child.percentile(95)))
    return table
