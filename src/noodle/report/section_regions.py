"""Report section: memory regions: bytes per region, peak, escaped bytes, chunk reuse, and RSS.

Reads the registry only: ``noodle_region_*`` (regions of this process, per
scope, published by :mod:`noodle.memory` at each region's end) and
``noodle_dist_region_*`` (per-task regions on Dask workers, sent back with
each chunk's results), so the report never imports the memory package. RSS
is read from the operating system: region chunks are ``mmap`` memory, which
``tracemalloc`` (the profiler's "peak traced memory") does not see.
"""

from __future__ import annotations

from typing import Any

from noodle.metrics.process import peak_rss_bytes, rss_bytes
from noodle.report.format import nbytes

ORDER = 65


def render(registry: Any) -> Any:
    """A rich group, or None when no region was used here or on a worker."""
    regions = registry.get("noodle_region_regions_total")
    worker_tasks = registry.get("noodle_dist_region_tasks_total")
    local = regions is not None and bool(regions.children())
    remote = worker_tasks is not None and worker_tasks.total() > 0
    if not local and not remote:
        return None
    from rich.console import Group

    parts: list[Any] = ["[bold]Regions[/bold]"]
    if local:
        parts.append(_scopes(registry))
        escaped = _value(registry, "noodle_region_escaped_bytes")
        retained = _value(registry, "noodle_region_retained_bytes")
        parts.append(f"escaped now {nbytes(escaped)} (region memory still referenced after its region ended; "
                     f"it stays valid)" + f", kept warm for reuse {nbytes(retained)}")
    if remote:
        parts.append(_workers(registry))
    rss, peak = rss_bytes(), peak_rss_bytes()
    if rss or peak:
        parts.append(f"process RSS now {nbytes(rss)}, peak {nbytes(peak)} (region chunks are mmap memory: "
                     f"tracemalloc does not count them)")
    return Group(*parts)


def _value(registry: Any, name: str, *labels: str) -> float:
    metric = registry.get(name)
    return metric.value(*labels) if metric is not None else 0.0


def _scopes(registry: Any) -> Any:
    from rich.table import Table

    t = Table(title="regions per scope")
    for col in ("scope", "regions", "bytes allocated", "per region", "peak held", "chunks mapped",
                "chunks reused", "warm", "objects cleared"):
        t.add_column(col, justify="left" if col == "scope" else "right")
    counts = sorted((key[0], child.value) for key, child in registry.get("noodle_region_regions_total").children())
    for scope, n in counts:
        allocated = _value(registry, "noodle_region_bytes_allocated_total", scope)
        mapped = _value(registry, "noodle_region_chunks_mapped_total", scope)
        reused = _value(registry, "noodle_region_chunks_reused_total", scope)
        t.add_row(scope, f"{n:g}", nbytes(allocated), nbytes(allocated / n) if n else "-",
                  nbytes(_value(registry, "noodle_region_peak_bytes", scope)), f"{mapped:g}", f"{reused:g}",
                  f"{reused / (reused + mapped):.0%}" if reused + mapped else "-",
                  f"{_value(registry, 'noodle_region_objects_cleared_total', scope):g}")
    return t


def _workers(registry: Any) -> str:
    tasks = _value(registry, "noodle_dist_region_tasks_total")
    allocated = _value(registry, "noodle_dist_region_bytes_allocated_total")
    chunks = _value(registry, "noodle_dist_region_chunks_total")
    reused = _value(registry, "noodle_dist_region_chunks_reused_total")
    line = (f"per-task regions on workers: {tasks:g} task(s), {nbytes(allocated)} allocated "
            f"({nbytes(allocated / tasks) if tasks else '-'} per task), peak {nbytes(_value(registry, 'noodle_dist_region_peak_bytes'))}, "
            f"{chunks:g} chunk(s) used, {reused:g} served warm, "
            f"{nbytes(_value(registry, 'noodle_dist_region_copied_bytes_total'))} of results copied out, "
            f"{_value(registry, 'noodle_dist_region_objects_cleared_total'):g} object(s) cleared")
    escaped = registry.get("noodle_dist_region_escaped_bytes")
    rss = registry.get("noodle_dist_worker_rss_bytes")
    if escaped is not None and escaped.children():
        line += f"; escaped after the last task {nbytes(sum(c.value for _, c in escaped.children()))}"
    if rss is not None and rss.children():
        line += "; worker RSS after its last task: " + ", ".join(
            f"{key[0]} {nbytes(child.value)}" for key, child in sorted(rss.children()))
    return line


