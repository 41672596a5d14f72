"""Report section: the JIT (calls interpreted vs compiled, compiles by backend, fused regions by
the backend placement chose for them, fallbacks).

Reads the registry (``noodle_jit_*`` metrics and ``jit_compile`` events). The one
exception: if the JIT was used in this process, its batched compiled-call counts
are flushed first (the hot path publishes them every 256 calls to stay cheap).
"""

from __future__ import annotations

import sys
from typing import Any

ORDER = 40


def render(registry: Any) -> Any:
    """A rich group, or None when no jitted program ran."""
    state_mod = sys.modules.get("noodle.exec.state")
    if state_mod is not None:
        state_mod.flush_all()
    calls = registry.get("noodle_jit_calls_total")
    compiles = registry.get("noodle_jit_compiles_total")
    if (calls is None or not calls.children()) and (compiles is None or not compiles.children()):
        return None
    from rich.console import Group
    from rich.table import Table

    parts: list[Any] = ["[bold]JIT[/bold]"]
    if calls is not None:
        by_mode = {key[0]: child.value for key, child in calls.children()}
        parts.append("calls: " + ", ".join(f"{k} {v:g}" for k, v in sorted(by_mode.items())))
    if compiles is not None and compiles.children():
        t = Table(title="program compiles")
        t.add_column("backend")
        t.add_column("status")
        t.add_column("count", justify="right")
        t.add_column("p50 s", justify="right")
        seconds = registry.get("noodle_jit_compile_seconds")
        for (backend, status), child in sorted(compiles.children()):
            p50 = None
            if seconds is not None and status == "ok":
                p50 = seconds.labels(backend).percentile(50)
            t.add_row(backend, status, f"{child.value:g}", "" if p50 is None else f"{p50:.3f}")
        parts.append(t)
    regions = registry.get("noodle_jit_region_backend_total")
    if regions is not None and regions.children():
        # where the fused regions of compiled programs run (backend="auto" chooses per region)
        parts.append("fused regions by backend: " + ", ".join(
            f"{key[0]} {child.value:g}" for key, child in sorted(regions.children())))
    fallbacks = registry.get("noodle_jit_fallbacks_total")
    if fallbacks is not None and fallbacks.children():
        parts.append("[yellow]stayed interpreted[/yellow]: " + ", ".join(
            f"{key[0]} {child.value:g}" for key, child in sorted(fallbacks.children())))
    for e in [e for e in registry.events("jit_compile") if e.data.get("status") == "failed"][-3:]:
        parts.append(f"  {e.data.get('program')} on {e.data.get('backend')}: {e.data.get('error')}")
    return Group(*parts)
