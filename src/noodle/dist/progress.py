"""Progress of distributed work: a rich bar on a terminal and numbers in the metrics registry.

Why both: a person at a terminal wants a bar; ``noodle run``'s report and the
dashboard read the registry. The bar is off when output is not a terminal
(CI logs, pipes) or when the caller says ``progress=False``; the metrics are
always kept because they cost one lock-protected add per finished chunk.
"""

from __future__ import annotations

import sys
from typing import Any

from noodle import metrics

TASKS = metrics.counter(
    "noodle_dist_tasks_total", "distributed tasks by outcome (submitted, completed, failed, timeout)",
    ["status"],
)
ITEMS = metrics.counter("noodle_dist_items_total", "items processed by distributed maps")
PROGRESS = metrics.gauge("noodle_dist_progress_ratio", "fraction of the current map's items done (0..1)")
WORKER_TASKS = metrics.gauge(
    "noodle_dist_worker_tasks", "tasks (map chunks) completed per worker since the processor started",
    ["worker"],
)
WORKERS = metrics.gauge("noodle_dist_workers", "workers connected to the scheduler")


def want_bar(progress: bool | None) -> bool:
    """True when a bar should be drawn: asked for, or not refused and stderr is a terminal."""
    if progress is not None:
        return bool(progress)
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


class MapProgress:
    """Tracks one map: updates the registry per finished chunk and drives an optional rich bar."""

    def __init__(self, total_items: int, total_chunks: int, show_bar: bool, label: str = "noodle map",
                 console: Any = None) -> None:
        self.total_items = total_items
        self.total_chunks = total_chunks
        self.items_done = 0
        self._bar: Any = None
        self._task_id: Any = None
        PROGRESS.set(0.0 if total_items else 1.0)
        if show_bar and total_items:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), transient=False, console=console)
            self._task_id = self._bar.add_task(label, total=total_items)
            self._bar.start()

    def chunk_done(self, n_items: int, worker: str) -> None:
        """One chunk of ``n_items`` came back from ``worker``."""
        self.items_done += n_items
        TASKS.labels("completed").inc()
        ITEMS.inc(n_items)
        WORKER_TASKS.labels(worker).inc()
        PROGRESS.set(self.items_done / self.total_items if self.total_items else 1.0)
        if self._bar is not None:
            self._bar.update(self._task_id, advance=n_items)

    def close(self) -> None:
        """Stop the bar (the registry keeps the last ratio)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> MapProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
