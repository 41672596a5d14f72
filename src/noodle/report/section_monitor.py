"""Report section: the monitoring summary, alerts raised and bottlenecks found during ``noodle run``.

Reads only the registry's events (``monitor_run`` from the run hooks, ``alert``
from the alert manager); the text layout is shared with ``noodle summary``.
"""

from __future__ import annotations

from typing import Any

ORDER = 80


def render(registry: Any) -> Any:
    """A rich group, or None when monitoring did not run."""
    runs = registry.events("monitor_run")
    alerts = registry.events("alert")
    if not runs and not alerts:
        return None
    from rich.console import Group
    from rich.table import Table

    from noodle.monitor.summary_text import render as render_summary

    parts: list[Any] = ["[bold]Monitoring[/bold]"]
    data = runs[-1].data if runs else {}
    if data.get("summary"):
        parts.append(render_summary(data["summary"], include_ops=False))   # the ops section has them
    raised = [e.data for e in alerts if e.data.get("state") == "firing"]
    if raised:
        t = Table(title="alerts raised")
        for col in ("severity", "rule", "series", "value", "message"):
            t.add_column(col)
        for a in raised[-20:]:
            t.add_row(a["severity"], a["rule"], a["series"], f"{a['value']:.3g}", a["message"])
        parts.append(t)
    else:
        parts.append("no alerts raised")
    bns = data.get("bottlenecks") or []
    for b in bns[:5]:
        parts.append(f"bottleneck [bold]{b['kind']}[/bold] (severity {b['severity']:.2f}): {b['evidence']}\n"
                     f"  -> {b['recommendation']}")
    if data.get("profile_paths"):
        parts.append("profile: " + ", ".join(f"{k} {v}" for k, v in data["profile_paths"].items()))
        if data.get("memory_peak_bytes") is not None:
            parts.append(f"peak traced memory {data['memory_peak_bytes'] / 1e6:.2f} MB")
    return Group(*parts)
