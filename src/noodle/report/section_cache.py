"""Report section: cache hits, misses, evictions, bytes and get latency per tier.

Reads the registry (``noodle_cache_*`` metrics). Cache managers count in plain
ints and publish in bulk; if ``noodle.cache`` is already loaded this section
asks it to publish first (it never imports it otherwise).
"""

from __future__ import annotations

import sys
from typing import Any

from noodle.report.format import micros

ORDER = 60


def render(registry: Any) -> Any:
    """A rich table, or None when no cache was used."""
    stats = sys.modules.get("noodle.cache.stats")
    if stats is not None:
        stats.publish()
    hits = registry.get("noodle_cache_hits_total")
    misses = registry.get("noodle_cache_misses_total")
    if hits is None or misses is None or not (hits.children() or misses.children()):
        return None
    from rich.console import Group
    from rich.table import Table

    evictions = registry.get("noodle_cache_evictions_total")
    nbytes = registry.get("noodle_cache_bytes")
    latency = registry.get("noodle_cache_get_seconds")
    tiers = sorted({k[0] for k, _ in hits.children()} | {k[0] for k, _ in misses.children()})
    lat = {k[0]: c for k, c in latency.children()} if latency is not None else {}
    t = Table(title="cache tiers")
    for col in ("tier", "hits", "misses", "hit ratio", "evictions", "bytes", "slow-path get p50", "p99"):
        t.add_column(col, justify="left" if col == "tier" else "right")
    for tier in tiers:
        h, m = hits.value(tier), misses.value(tier)
        child = lat.get(tier)
        p50 = child.percentile(50) if child is not None else None
        p99 = child.percentile(99) if child is not None else None
        t.add_row(tier, f"{h:g}", f"{m:g}", f"{h / (h + m):.1%}" if h + m else "-",
                  f"{evictions.value(tier):g}" if evictions is not None else "-",
                  f"{nbytes.value(tier):,.0f}" if nbytes is not None and tier == "local" else "-",
                  micros(p50), micros(p99))
    parts: list[Any] = ["[bold]Caching[/bold]", t]
    decode = registry.get("noodle_cache_decode_errors_total")
    down = registry.get("noodle_cache_redis_down_total")
    notes = []
    if decode is not None and decode.total():
        notes.append(f"[yellow]{decode.total():g} undecodable payload(s) served as misses[/yellow]")
    if down is not None and down.total():
        notes.append(f"[yellow]Redis went down {down.total():g} time(s); served local-only meanwhile[/yellow]")
    parts.extend(notes)
    return Group(*parts)
