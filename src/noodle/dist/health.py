"""Worker health as the scheduler sees it: status, memory, tasks, last heartbeat.

Why read the scheduler rather than ping workers: the scheduler already gets a
heartbeat from every worker (about once a second on a small cluster) with its
memory and task counts; asking it is one round trip however many workers there
are, and a worker that stopped answering shows up as a stale heartbeat.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class WorkerInfo:
    """One worker's health snapshot (times are seconds since the epoch)."""

    address: str
    name: str
    status: str
    nthreads: int
    memory_bytes: int
    memory_limit_bytes: int
    executing: int
    ready: int
    in_memory: int
    last_seen: float
    resources: dict[str, float] = field(default_factory=dict)
    pid: int | None = None

    @property
    def heartbeat_age(self) -> float:
        """Seconds since the scheduler last heard from this worker."""
        return max(0.0, time.time() - self.last_seen)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["heartbeat_age_s"] = round(self.heartbeat_age, 3)
        return d


def worker_infos(scheduler_info: dict[str, Any], pids: dict[str, int] | None = None) -> list[WorkerInfo]:
    """Turn ``Client.scheduler_info()`` into WorkerInfo rows, sorted by address.

    Pure (no I/O) so it is tested on a recorded scheduler_info dict too.
    """
    rows = []
    for address, w in (scheduler_info.get("workers") or {}).items():
        m = w.get("metrics") or {}
        counts = m.get("task_counts") or {}
        rows.append(WorkerInfo(
            address=str(address),
            name=str(w.get("name", address)),
            status=str(w.get("status", "unknown")),
            nthreads=int(w.get("nthreads", 0)),
            memory_bytes=int(m.get("memory", 0) or 0),
            memory_limit_bytes=int(w.get("memory_limit", 0) or 0),
            executing=int(counts.get("executing", m.get("executing", 0)) or 0),
            ready=int(counts.get("ready", m.get("ready", 0)) or 0),
            in_memory=int(counts.get("memory", m.get("in_memory", 0)) or 0),
            last_seen=float(w.get("last_seen", 0.0) or 0.0),
            resources=dict(w.get("resources") or {}),
            pid=(pids or {}).get(str(address)),
        ))
    return sorted(rows, key=lambda r: r.address)
