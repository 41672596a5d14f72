"""Report section: syntax fixes done during ``noodle run`` (count and latency percentiles by kind).

Reads the registry (``noodle_fixer_seconds{kind}``). The fixer holds its
observations until asked (importing the metrics machinery would slow a
one-file ``noodle fix``), so if ``noodle.fixer.telemetry`` is loaded this section
asks it to publish first; it never imports the fixer otherwise.
"""

from __future__ import annotations

import sys
from typing import Any

from noodle.report.format import micros

ORDER = 75


def render(registry: Any) -> Any:
    """A rich table, or None when nothing was fixed."""
    telemetry = sys.modules.get("noodle.fixer.telemetry")
    if telemetry is not None:
        telemetry.publish()
    seconds = registry.get("noodle_fixer_seconds")
    if seconds is None or not seconds.children():
        return None
    from rich.console import Group
    from rich.table import Table

    t = Table(title="syntax fixes by kind")
    for col in ("kind", "files", "p50", "p95", "p99", "max"):
        t.add_column(col, justify="left" if col == "kind" else "right")
    for key, child in sorted(seconds.children()):
        if not child.count:
            continue
        t.add_row(key[0], f"{child.count:g}", micros(child.percentile(50)), micros(child.percentile(95)),
                  micros(child.percentile(99)), micros(child.percentile(100)))
    return Group("[bold]Syntax fixer[/bold]", t)
