"""Loading through the cache: stampede protection (``get_or_load``) and warming.

Why a mixin apart from the manager: it is the only part that coordinates
several processes (a Redis lock elects one loader; the others poll for its
value) and it touches the manager only through its public reads and writes
plus the Redis tier, so it reads best on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any

from noodle.cache.entries import _Flight, check_seconds
from noodle.cache.policies import MISSING
from noodle.config import get_settings

_monotonic = time.monotonic


class LoadingMixin:
    """``get_or_load``, ``warm`` and snapshots for :class:`~noodle.cache.CacheManager`."""

    _redis: Any
    _flights: dict[Hashable, _Flight]
    namespace: str
    lock_timeout: float
    loads: int

    def get_or_load(self, key: Hashable, loader: Callable[[], Any], ttl: float | None = None,
                    tags: Iterable[str] = (), depends_on: Iterable[Hashable] = ()) -> Any:
        """The cached value, or ``loader()``'s result, stored; concurrent misses run ``loader`` once.

        Within a process one thread loads while the others wait for its result;
        across processes a Redis lock (``lock_timeout`` seconds, so a dead holder
        frees it) elects one loader and the rest poll Redis for its value.
        """
        value = self.get(key, MISSING)
        if value is not MISSING:
            return value
        if ttl is not None:
            check_seconds("ttl", ttl)  # before the loader runs, not after
        skey = self._key(key)
        with self._flight_lock:
            flight = self._flights.get(skey)
            owner = flight is None
            if owner:
                flight = self._flights[skey] = _Flight()
        assert flight is not None
        if not owner:
            flight.event.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value
        try:
            flight.value = self._load(key, loader, ttl, tags, depends_on)
            return flight.value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._flight_lock:
                self._flights.pop(skey, None)
            flight.event.set()

    def _load(self, key: Hashable, loader: Callable[[], Any], ttl: float | None,
              tags: Iterable[str], depends_on: Iterable[Hashable]) -> Any:
        value = self.get(key, MISSING)
        if value is not MISSING:
            return value
        tier = self._redis
        token = None
        skey = self._key(key)
        if tier is not None and tier.usable():
            deadline = _monotonic() + self.lock_timeout
            while True:
                token = tier.try_lock(skey, self.lock_timeout)  # type: ignore[arg-type]
                if token is not None or not tier.up:
                    break
                # someone else is loading: wait for its value, or for its lock to lapse
                while _monotonic() < deadline and tier.lock_held(skey):  # type: ignore[arg-type]
                    value = self._redis_get(skey)
                    if value is not MISSING:
                        return value
                    time.sleep(0.01)
                value = self._redis_get(skey)
                if value is not MISSING:
                    return value
                if _monotonic() >= deadline:
                    break
        try:
            if token is not None:
                value = self._redis_get(skey)  # the previous holder may have finished just now
                if value is not MISSING:
                    return value
            value = loader()
            self.loads += 1
            self.set(key, value, ttl=ttl, tags=tags, depends_on=depends_on)
            return value
        finally:
            if token is not None and tier is not None:
                tier.unlock(skey, token)  # type: ignore[arg-type]

    def warm(self, loader: Callable[[Hashable], Any], keys: Iterable[Hashable],
             ttl: float | None = None) -> int:
        """Load every key in ``keys`` that is not cached yet with ``loader(key)``; returns how many."""
        loaded = 0
        for key in keys:
            if self.get(key, MISSING) is MISSING:
                self.set(key, loader(key), ttl=ttl)
                loaded += 1
        return loaded

    def snapshot_path(self) -> Path:
        """Where this namespace's warming snapshot lives (``NOODLE_CACHE_DIR``/snapshots)."""
        return Path(get_settings().cache_dir) / "snapshots" / f"{self.namespace}.ndcache"

    def save_snapshot(self, path: Path | None = None) -> int:
        """Write the hottest entries (safe encoding, atomically); returns how many were written."""
        from noodle.cache.snapshot import save

        return save(self, path or self.snapshot_path())

    def load_snapshot(self, path: Path | None = None) -> int:
        """Load the warming snapshot (entries past their expiry are skipped); returns how many.

        Never implicit: a manager loads one only when built with ``snapshot=True`` or when this is
        called, so a fresh ``CacheManager()`` never serves what another process left behind.
        """
        from noodle.cache.snapshot import load

        return load(self, path or self.snapshot_path())
