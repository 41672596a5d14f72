"""Progress of distributed work: a rich bar on a terminal and numbers in the metrics registry.

Why both: a person at a terminal wants a bar; ``noodle run``'s report and the
dashboard read the registry. The bar is off when output is not a terminal
(CI logs, pipes) or when the caller says ``progress=False``; the metrics are
always kept because they cost one lock-protected add per finished chunk.
"""

from __future__ import annotations

import sys
import threading
import time
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
# Why these: PROGRESS keeps its last value after a map ends (succeeded, failed or cancelled), so a
# stalled map could not be told from a dead one; the monitor's worker_stalled alert reads these instead.
MAPS_ACTIVE = metrics.gauge(
    "noodle_dist_maps_active",
    "maps with chunks still queued or running on the cluster (a map leaves when its chunks are all done, "
    "or it failed, timed out or was cancelled)",
)
MAP_LAST_CHUNK = metrics.gauge(
    "noodle_dist_map_last_chunk_timestamp_seconds",
    "Unix time the last chunk finished in the active map that has waited longest for one (its start "
    "before its first chunk; 0 when no map is active)",
)
MAP_CHUNK_GAP = metrics.gauge(
    "noodle_dist_map_chunk_gap_seconds",
    "in that same map: the longest wait so far between chunk completions, from its start (about the "
    "slowest healthy chunk's duration; 0 before its first chunk or when no map is active)",
)

MAP_TIMEOUT = metrics.gauge(
    "noodle_dist_map_timeout_seconds",
    "in that same map: its stall timeout (it gives up when no chunk finishes for that long; 0 when no map "
    "is active)",
)

# Per-task regions (map(..., region=True)) run on the workers, whose registries this process never
# reads; each such chunk sends its region's figures back with its results and they are kept here.
REGION_TASKS = metrics.counter("noodle_dist_region_tasks_total", "map chunks run in a per-task region on a worker")
REGION_BYTES = metrics.counter("noodle_dist_region_bytes_allocated_total",
                               "region memory handed out to per-task regions on the workers")
REGION_PEAK = metrics.gauge("noodle_dist_region_peak_bytes", "most chunk bytes one per-task region held at once")
REGION_CHUNKS = metrics.counter("noodle_dist_region_chunks_total", "chunks per-task regions used on the workers")
REGION_REUSED = metrics.counter("noodle_dist_region_chunks_reused_total",
                                "of those, or of their reuses, chunks served warm")
REGION_COPIED = metrics.counter("noodle_dist_region_copied_bytes_total",
                                "result bytes copied out of per-task regions before they travelled back")
REGION_CLEARED = metrics.counter("noodle_dist_region_objects_cleared_total",
                                 "registered objects broken apart at per-task region exits")
REGION_ESCAPED = metrics.gauge("noodle_dist_region_escaped_bytes",
                               "region memory still referenced after the worker's last per-task region ended",
                               ["worker"])
WORKER_RSS = metrics.gauge("noodle_dist_worker_rss_bytes", "worker RSS after its last per-task region ended",
                           ["worker"])


class RegionFigures:
    """Folds the figures per-task regions send back (one dict per chunk) into the metrics above."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def record(self, worker: str, stats: Any) -> None:
        """One chunk's region figures from ``worker`` (ignored if they are not the expected dict)."""
        if not isinstance(stats, dict):
            return
        REGION_TASKS.inc()
        REGION_BYTES.inc(stats.get("bytes_allocated", 0))
        REGION_CHUNKS.inc(stats.get("chunks", 0))
        REGION_REUSED.inc(stats.get("chunks_reused", 0))
        REGION_COPIED.inc(stats.get("copied_bytes", 0))
        REGION_CLEARED.inc(stats.get("objects_cleared", 0))
        REGION_ESCAPED.labels(worker).set(stats.get("escaped_bytes", 0))
        if stats.get("rss"):
            WORKER_RSS.labels(worker).set(stats["rss"])
        with self._lock:
            if stats.get("peak", 0) > REGION_PEAK.value():
                REGION_PEAK.set(stats["peak"])


REGIONS = RegionFigures()


class ActiveMaps:
    """The maps in flight in this process, published as MAPS_ACTIVE, MAP_LAST_CHUNK, MAP_CHUNK_GAP, MAP_TIMEOUT.

    ``begin`` when a map's chunks are submitted, ``chunk`` whenever chunks finish, ``end`` (idempotent)
    on every way out: all chunks done, a failed chunk, a stall timeout, a cancel, an exception.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._maps: dict[object, list[float]] = {}  # token -> [last chunk (or start) time, longest gap, timeout]

    def begin(self, token: object, timeout: float) -> None:
        with self._lock:
            self._maps[token] = [time.time(), 0.0, float(timeout)]
            self._publish()

    def chunk(self, token: object) -> None:
        now = time.time()
        with self._lock:
            state = self._maps.get(token)
            if state is None:
                return
            state[1] = max(state[1], now - state[0])
            state[0] = now
            self._publish()

    def end(self, token: object) -> None:
        with self._lock:
            if self._maps.pop(token, None) is not None:
                self._publish()

    def __len__(self) -> int:
        return len(self._maps)

    def _publish(self) -> None:
        MAPS_ACTIVE.set(len(self._maps))
        if not self._maps:
            MAP_LAST_CHUNK.set(0.0)
            MAP_CHUNK_GAP.set(0.0)
            MAP_TIMEOUT.set(0.0)
            return
        last, gap, timeout = min(self._maps.values(), key=lambda state: state[0])
        MAP_LAST_CHUNK.set(last)
        MAP_CHUNK_GAP.set(gap)
        MAP_TIMEOUT.set(timeout)


ACTIVE_MAPS = ActiveMaps()


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
