"""Report section: distributed work done during ``noodle run`` (tasks by outcome, chunks per worker).

Reads only the registry (``noodle_dist_*`` metrics and ``dist_*`` events), so
the report never imports Dask.
"""

from __future__ import annotations

from typing import Any

ORDER = 70


def render(registry: Any) -> Any:
    """A rich group, or None when no distributed work ran."""
    tasks = registry.get("noodle_dist_tasks_total")
    if tasks is None or not tasks.children():
        return None
    from rich.console import Group
    from rich.table import Table

    by_status = {key[0]: child.value for key, child in tasks.children()}
    parts: list[Any] = ["[bold]Distributed work[/bold]"]
    starts = registry.events("dist_start")
    for e in starts[-3:]:
        kind = "local cluster" if e.data.get("local") else "joined"
        parts.append(f"{kind} {e.data.get('address')}: {e.data.get('workers')} worker(s), "
                     f"ready in {e.data.get('seconds')} s")
    items = registry.get("noodle_dist_items_total")
    progress = registry.get("noodle_dist_progress_ratio")
    parts.append("tasks: " + ", ".join(f"{k} {v:g}" for k, v in sorted(by_status.items()))
                 + (f"; map items {items.value():g}" if items is not None else "")
                 + (f"; last map {progress.value():.0%} done" if progress is not None else ""))
    per_worker = registry.get("noodle_dist_worker_tasks")
    if per_worker is not None and per_worker.children():
        t = Table(title="map chunks per worker")
        t.add_column("worker")
        t.add_column("chunks", justify="right")
        for key, child in sorted(per_worker.children()):
            t.add_row(key[0], f"{child.value:g}")
        parts.append(t)
    timeouts = registry.events("dist_timeout")
    for e in timeouts[-5:]:
        parts.append(f"[yellow]timeout[/yellow]: {e.data.get('what')} after {e.data.get('timeout')} s, "
                     f"{e.data.get('cancelled')} cancelled")
    return Group(*parts)
