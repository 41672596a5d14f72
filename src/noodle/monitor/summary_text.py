"""A summary dict as rich renderables, shared by ``noodle summary`` and the ``noodle run`` report."""

from __future__ import annotations

from typing import Any


def render(summary: dict[str, Any], include_ops: bool = True) -> Any:
    """Rich tables for a summary dict (shared with the ``noodle run`` report).

    ``include_ops=False`` leaves out the per-op table, for the ``noodle run`` report,
    whose own ops section already shows the same histogram.
    """
    from rich.console import Group
    from rich.table import Table

    parts: list[Any] = []
    ops = (summary.get("ops") or {}) if include_ops else {}
    if ops:
        t = Table(title=f"ops in the last {summary.get('window_seconds', 0):.0f} s")
        for col in ("op", "calls", "p50 µs", "p95 µs", "p99 µs", "total ms"):
            t.add_column(col, justify="left" if col == "op" else "right")
        for name, r in sorted(ops.items(), key=lambda kv: -kv[1]["seconds"])[:15]:
            t.add_row(name, str(r["count"]), *(f"{(r[q] or 0) * 1e6:.1f}" for q in ("p50", "p95", "p99")),
                      f"{r['seconds'] * 1e3:.2f}")
        parts.append(t)
    progs = summary.get("hottest_programs") or []
    if progs:
        t = Table(title="hottest programs")
        for col in ("program", "calls", "total ms", "p50 µs"):
            t.add_column(col)
        for r in progs:
            t.add_row(r["program"], str(r["count"]), f"{r['seconds'] * 1e3:.2f}", f"{(r['p50'] or 0) * 1e6:.1f}")
        parts.append(t)
    res = summary.get("resources") or {}
    cache = summary.get("cache") or {}
    lines = []
    if "cpu" in res:
        lines.append(f"CPU mean {res['cpu']['mean']:.0%} (max {res['cpu']['max']:.0%}); "
                     f"memory mean {res.get('mem', {}).get('mean', 0):.0%} over {res.get('samples', 0)} samples")
    if cache.get("hit_ratio") is not None:
        lines.append(f"cache hit ratio {cache['hit_ratio']:.1%} ({int(cache['hits'])} hits, "
                     f"{int(cache['misses'])} misses, {int(cache['evictions'])} evictions)")
    prev = summary.get("previous") or {}
    change = prev.get("change") or {}
    if change.get("ops_count") is not None:
        lines.append(f"vs previous window: op calls {change['ops_count']:+.0%}")
    if prev.get("resources", {}).get("cpu"):
        lines.append(f"previous window: CPU mean {prev['resources']['cpu']['mean']:.0%}")
    for b in summary.get("bottlenecks") or []:
        lines.append(f"bottleneck {b['kind']} (severity {b['severity']:.2f}): {b['evidence']} -> {b['recommendation']}")
    if not parts and not lines:
        lines.append("nothing recorded in this window")
    parts.extend(lines)
    return Group(*parts)
