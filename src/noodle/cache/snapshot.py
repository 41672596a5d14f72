"""Warming snapshots: the hottest entries written at shutdown, loaded when asked.

Expiry is stored as absolute wall-clock time (Unix seconds, 0 = none), so an
entry with 2 s to live when saved is gone 2 s later in any process, however
late the snapshot is loaded; entries with usage limits (``max_idle``,
``max_hits``) are not saved (their counts are per process). Snapshots of the
old relative-TTL format (version 1) are ignored.

Same safe encoding as the Redis tier (no pickle), written atomically (a temp
file renamed over the old one), so a crash mid-write leaves the previous
snapshot intact. A snapshot that does not decode is ignored (a metric, not an
exception). With a Redis tier the snapshot only names the hot keys: their
values are re-read from Redis, which stays the source of truth.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from noodle.cache import codec
from noodle.cache.policies import MISSING
from noodle.errors import CacheEncodingError

_VERSION = 2  # 2: absolute expiry (Unix seconds); 1 stored time left, which restarted on every load


def save(manager: Any, path: Path) -> int:
    """Write ``manager``'s hottest ``snapshot_entries`` entries to ``path``; returns how many."""
    now = time.monotonic()
    wall = time.time()
    rows: list[list[Any]] = []
    with manager._lock:
        keys = manager._policy.hottest(manager.snapshot_entries)
        entries = [(k, manager._policy.peek(k)) for k in keys]
    for key, entry in entries:
        if entry is MISSING or (entry.expires and entry.expires <= now) or entry.limits is not None:
            continue
        expires_unix = wall + (entry.expires - now) if entry.expires else 0.0
        rows.append([key, entry.value, expires_unix, list(entry.tags)])
    try:  # one encode in the common case; row by row only when some value cannot be encoded
        data = _encode_snapshot(manager, rows)
    except CacheEncodingError:
        rows = [row for row in rows if _encodable(row)]  # skip what cannot be encoded safely
        data = _encode_snapshot(manager, rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return len(rows)


def _encode_snapshot(manager: Any, rows: list[list[Any]]) -> bytes:
    return codec.encode({"version": _VERSION, "namespace": manager.namespace, "entries": rows})


def _encodable(row: list[Any]) -> bool:
    try:
        codec.encode(row)
    except CacheEncodingError:
        return False
    return True


def load(manager: Any, path: Path) -> int:
    """Load a snapshot into ``manager`` (hottest last, so they end up most recent); returns how many."""
    try:
        data = path.read_bytes()
    except OSError:
        return 0
    try:
        snap = codec.decode(data)
    except codec.DecodeError:
        manager.decode_errors += 1
        return 0
    if not isinstance(snap, dict) or not isinstance(snap.get("entries"), list):
        manager.decode_errors += 1
        return 0
    if snap.get("version") != _VERSION:
        return 0
    rows = [r for r in snap["entries"] if isinstance(r, list) and len(r) == 4]
    loaded = 0
    if manager.distributed:
        keys = [r[0] for r in rows if not (isinstance(r[2], (int, float)) and 0 < r[2] <= time.time())]
        for key in reversed(keys):  # values come fresh from Redis; absent ones stay absent
            try:
                if manager.get(key, MISSING) is not MISSING:
                    loaded += 1
            except Exception:
                continue
        return loaded
    wall = time.time()
    for key, value, expires_unix, tags in reversed(rows):
        if isinstance(expires_unix, bool) or not isinstance(expires_unix, (int, float)) or expires_unix < 0:
            continue
        remaining = expires_unix - wall if expires_unix else 0.0
        if expires_unix and remaining <= 0:
            continue  # expired while nobody was running
        try:
            with manager._lock:
                manager._put_locked(key if not isinstance(key, list) else tuple(key), value,
                                    float(remaining), tuple(str(t) for t in tags), None)
            loaded += 1
        except TypeError:
            continue
    return loaded


__all__ = ["load", "save"]
