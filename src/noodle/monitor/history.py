"""Sample history: every point for the recent past, averaged buckets for the older past.

Why two tiers: the retention period (24 h by default) at a 1 s interval is
86,400 points per series, most of which nobody looks at individually. Recent
points (the last ``raw_window`` seconds, at most ``raw_max`` of them) are kept
as taken; when one ages out it is folded into a coarse bucket (``coarse_step``
seconds wide, field-wise mean plus a count), and coarse buckets older than the
retention are dropped. Memory is therefore bounded by ``raw_max`` plus
``retention / coarse_step`` points, whatever the run length.

A history can be written to and read from a JSON file (atomically).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from noodle.errors import MonitorError

FORMAT = "noodle-history/1"


class History:
    """A bounded, thread-safe time series of samples (dicts with a ``t`` field in epoch seconds).

    Example::

        h = History(retention=3600)
        h.add({"t": time.time(), "cpu": 0.4})
        h.since(time.time() - 60)
        h.save("history.json"); h2 = History.load("history.json")
    """

    def __init__(self, retention: float = 86400.0, raw_window: float = 900.0, raw_max: int = 3600,
                 coarse_step: float | None = None) -> None:
        if retention <= 0 or raw_window <= 0 or raw_max < 1:
            raise MonitorError("history retention, raw_window and raw_max must be positive")
        self.retention = float(retention)
        self.raw_window = min(float(raw_window), self.retention)
        self.raw_max = int(raw_max)
        # about 1440 coarse buckets over the retention, never finer than 10 s
        self.coarse_step = float(coarse_step) if coarse_step else max(10.0, self.retention / 1440.0)
        self._raw: deque[dict[str, float]] = deque()
        self._coarse: deque[dict[str, float]] = deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._raw) + len(self._coarse)

    def add(self, sample: dict[str, float]) -> None:
        """Append one sample (``t`` defaults to now) and age old points out."""
        point = dict(sample)
        point.setdefault("t", time.time())
        with self._lock:
            self._raw.append(point)
            self._age(point["t"])

    def _age(self, now: float) -> None:
        while self._raw and (len(self._raw) > self.raw_max or self._raw[0]["t"] < now - self.raw_window):
            self._fold(self._raw.popleft())
        horizon = now - self.retention
        while self._coarse and self._coarse[0]["t"] < horizon:
            self._coarse.popleft()

    def _fold(self, point: dict[str, float]) -> None:
        start = math.floor(point["t"] / self.coarse_step) * self.coarse_step
        last = self._coarse[-1] if self._coarse else None
        if last is None or last["t"] != start:
            bucket = {k: v for k, v in point.items() if isinstance(v, (int, float))}
            bucket["t"] = start
            bucket["n"] = 1
            self._coarse.append(bucket)
            return
        n = last["n"]
        for key, value in point.items():
            if key == "t" or not isinstance(value, (int, float)):
                continue
            if key.startswith("d_"):  # per-tick deltas add up, they do not average
                last[key] = last.get(key, 0.0) + value
            else:
                last[key] = (last.get(key, value) * n + value) / (n + 1)
        last["n"] = n + 1

    def since(self, t: float = 0.0) -> list[dict[str, float]]:
        """Points (coarse first, then raw) with time >= ``t``, oldest first."""
        with self._lock:
            return [dict(p) for p in (*self._coarse, *self._raw) if p["t"] >= t]

    def latest(self) -> dict[str, float] | None:
        """The most recent sample, or None when empty."""
        with self._lock:
            return dict(self._raw[-1]) if self._raw else None

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "format": FORMAT,
                "retention": self.retention, "raw_window": self.raw_window, "raw_max": self.raw_max,
                "coarse_step": self.coarse_step,
                "coarse": list(self._coarse), "raw": list(self._raw),
            }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the history as JSON; a partial file is never left behind."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json()))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> History:
        """Read a history written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise MonitorError(f"history file {str(path)!r} does not exist") from None
        except (OSError, ValueError) as exc:
            raise MonitorError(f"history file {str(path)!r} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise MonitorError(f"history file {str(path)!r} is not a {FORMAT} file (wrong or missing 'format')")
        try:
            hist = cls(retention=data["retention"], raw_window=data["raw_window"], raw_max=data["raw_max"],
                       coarse_step=data["coarse_step"])
            for p in data["coarse"]:
                hist._coarse.append({k: float(v) for k, v in p.items()})
            for p in data["raw"]:
                hist._raw.append({k: float(v) for k, v in p.items()})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MonitorError(f"history file {str(path)!r} is malformed: {exc}") from None
        return hist
