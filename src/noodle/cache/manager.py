"""CacheManager: a local tier (LRU/LFU/TTL/adaptive) in front of an optional shared Redis tier.

Lookup order is local tier, then Redis, then the loader (``get_or_load``).
Why the local hit path looks bare: it is the one line every user of the cache
pays on every call, and it must cost no more than cachetools' LRUCache (about a
microsecond). So a hit is one lock, one policy lookup, one expiry compare and
one integer increment; statistics are plain ints published to
``noodle.metrics`` in bulk (see :mod:`noodle.cache.stats`), never one
prometheus call per get.

Invalidation covers time (``ttl``), usage (``max_idle``, ``max_hits``),
dependency (``tags`` and ``depends_on``: invalidating a key cascades to the
keys that depend on it) and events (every invalidation and every overwrite is
published on Redis pub/sub; peers drop their local copy). When the
subscription drops, the local tier is cleared at once and again when it is
restored, so a node never serves what it could not hear being invalidated.
"""

from __future__ import annotations

import atexit
import itertools
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from noodle.cache import codec
from noodle.cache.entries import (
    _DEP,
    CLEAR_ALL,
    Invalidation,
    _canonical,
    _dep_tag,
    _Entry,
    _Flight,
    _Limits,
    check_seconds,
    keys_to_drop,
)
from noodle.cache.loading import LoadingMixin
from noodle.cache.policies import MISSING, make_policy
from noodle.config import get_settings
from noodle.errors import CacheEncodingError, CacheError

_DEFAULT: Any = object()
_monotonic = time.monotonic
_perf = time.perf_counter
# values codec.nbytes_of sizes as 32 bytes without looking inside: the plain set skips the call
_FIXED_SIZE = frozenset({int, float, bool, complex, type(None)})



class CacheManager(LoadingMixin):
    """A thread-safe cache with a choice of local policy and an optional Redis tier.

    ``policy``: 'lru', 'lfu', 'ttl' or 'adaptive' ('advanced' = 'adaptive'); ``max_entries``
    and ``max_bytes`` bound the local tier (values are counted in bytes, arrays
    by ``nbytes``); ``ttl`` is the default lifetime in seconds (0 or None = none);
    ``redis_url`` enables the shared tier; ``namespace`` separates caches that
    share one Redis and names the warming snapshot.

    Example::

        cache = CacheManager(policy="adaptive", max_entries=10_000, ttl=60)
        cache.set("answer", 42, tags=("demo",))
        assert cache.get("answer") == 42
        cache.invalidate(tag="demo")
    """

    def __init__(self, policy: str | None = None, max_entries: int | None = None,
                 max_bytes: int | None = None, ttl: float | None = _DEFAULT,
                 redis_url: str | None = _DEFAULT, namespace: str = "default",
                 local_tier: bool = True, lock_timeout: float = 10.0,
                 snapshot: bool | None = None, snapshot_entries: int = 1000) -> None:
        settings = get_settings()
        self.policy_name = policy or settings.cache_strategy
        self.max_entries = settings.cache_size if max_entries is None else max_entries
        self._policy = make_policy(self.policy_name, self.max_entries)
        self.policy_name = self._policy.name
        if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes < 1):
            raise CacheError(f"max_bytes must be an integer >= 1 (or None), got {max_bytes!r}.")
        self.max_bytes = max_bytes
        if ttl is _DEFAULT:
            ttl = settings.cache_ttl
        self.default_ttl = check_seconds("ttl", ttl) or 0.0
        if self.policy_name == "ttl" and not self.default_ttl:
            raise CacheError("policy 'ttl' needs a default ttl > 0 seconds (ttl=..., or "
                             "NOODLE_SYNTAX_FIXER_CACHE_TTL).")
        if not isinstance(namespace, str) or not namespace or any(c in namespace for c in ":\x00 "):
            raise CacheError(f"namespace must be a non-empty string without ':', spaces or NUL; got {namespace!r}.")
        self.namespace = namespace
        self.local_tier = local_tier
        self.lock_timeout = lock_timeout
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}
        self._flight_lock = threading.Lock()
        self._tags: dict[str, set[Hashable]] = {}
        self._bytes = 0
        self._epoch = 0  # bumped on every remote invalidation (guards a Redis read racing one)
        # statistics: plain ints, published in bulk by noodle.cache.stats
        self._hits = 0  # hits counted under the lock
        self._hit_counter = itertools.count()  # lock-free hits of the LRU/TTL fast path
        self.misses = 0
        self.evictions = 0
        self.redis_hits = 0
        self.redis_misses = 0
        self.decode_errors = 0
        self.loads = 0
        self._latency: list[tuple[str, float]] = []
        self._closed = False
        # keys and tags whose write or invalidation could not reach Redis: invalidated there once it is back
        self._pending_keys: set[str] = set()
        self._pending_tags: set[str] = set()

        if redis_url is _DEFAULT:
            if settings.distributed_cache and not settings.redis_url:
                raise CacheError("NOODLE_SYNTAX_FIXER_DISTRIBUTED_CACHE is true but NOODLE_REDIS_URL is not "
                                 "set: set it to a redis:// URL, or pass redis_url=None for a local cache.")
            redis_url = settings.redis_url if settings.distributed_cache else None
        if redis_url is not None and (not isinstance(redis_url, str)
                                      or not redis_url.startswith(("redis://", "rediss://", "unix://"))):
            raise CacheError(f"redis_url must be a redis://, rediss:// or unix:// URL, got {redis_url!r}.")
        self._redis = None
        self._subscriber = None
        if redis_url:
            self._start_redis(redis_url)
        # snapshot=None: save at exit if NOODLE_SYNTAX_FIXER_CACHE_WARMING says so, never load;
        # snapshot=True: save at exit and load at start; snapshot=False: neither. A manager never
        # starts with another process's entries unless asked to (snapshot=True or load_snapshot()).
        self._snapshot_on = settings.cache_warming if snapshot is None else bool(snapshot)
        self.snapshot_entries = snapshot_entries
        self.get = self._build_get()  # type: ignore[method-assign]
        # without a Redis tier every read is local: get_local is get itself
        self.get_local = self.get if self._redis is None else self._build_get(local_only=True)  # type: ignore[method-assign]
        fast_set = self._build_set()
        if fast_set is not None:
            self.set = fast_set  # type: ignore[method-assign]
        if snapshot:
            self.load_snapshot()
        if self._snapshot_on:
            _register_exit(self)
        from noodle.cache import stats

        stats.track(self)

    # the redis tier -------------------------------------------------------------
    def _start_redis(self, url: str) -> None:
        from noodle.cache.redis_tier import RedisTier, Subscriber

        tier = RedisTier(url, self.namespace, on_down=self._on_redis_down, on_up=self._recover,
                         timeout=get_settings().cache_redis_timeout)
        tier.check()  # a URL that is not a usable Redis is a CacheError now, not a stream of warnings
        self._redis = tier
        self._subscriber = Subscriber(tier, self._on_remote, self._on_sub_lost, self._recover)
        self._subscriber.start()
        self._subscriber.ready.wait(2.0)  # invalidations must be heard before we serve

    @property
    def hits(self) -> int:
        """Local-tier hits so far."""
        return self._hits + int(repr(self._hit_counter)[6:-1])

    @property
    def redis_down_count(self) -> int:
        """How many times the Redis tier went down (each outage warns once)."""
        return self._redis.down_count if self._redis is not None else 0

    @property
    def distributed(self) -> bool:
        return self._redis is not None

    def _on_redis_down(self) -> None:
        pass  # counted by the tier; published by stats

    def _on_sub_lost(self) -> None:
        self._on_remote(CLEAR_ALL)

    def _recover(self) -> None:
        """Redis is reachable again: drop what we could not hear about, then replay lost invalidations.

        Every key written or invalidated here while Redis was unreachable is deleted in Redis and
        published, so the value each node serves afterwards is the one Redis holds (a write that was
        lost, reported by ``set()`` returning False, becomes an invalidation; it is never replayed
        over what other nodes wrote meanwhile).
        """
        self._on_remote(CLEAR_ALL)
        tier = self._redis
        if tier is None:
            return
        with self._lock:
            keys, tags = sorted(self._pending_keys), sorted(self._pending_tags)
            self._pending_keys.clear()
            self._pending_tags.clear()
        if (keys or tags) and not tier.delete(keys, tags):
            with self._lock:  # still unreachable: try again on the next recovery
                self._pending_keys.update(keys)
                self._pending_tags.update(tags)

    def _drop_local(self) -> None:
        self._on_remote(CLEAR_ALL)

    def _on_remote(self, inval: Invalidation) -> None:
        """Apply an invalidation (a peer's message, a lost or restored subscription) to the local tier."""
        with self._lock:
            self._epoch += 1
            keys = keys_to_drop(inval, self._tags)
            if keys is None:
                self._policy.clear()
                self._tags.clear()
                self._bytes = 0
                return
            for key in keys:
                self._remove_locked(key)

    def _key(self, key: Hashable) -> Hashable:
        return self._skey(key)

    # reads -----------------------------------------------------------------------
    def get(self, key: Hashable, default: Any = None) -> Any:
        """The cached value of ``key`` (local tier, then Redis), or ``default``.

        (Each instance replaces this with a closure built by :meth:`_build_get`;
        this method documents the contract and serves subclasses.)
        """
        return self._slow_get(key, default)

    def _build_get(self, local_only: bool = False) -> Callable[[Hashable, Any], Any]:
        """The instance's ``get``: a closure over locals, so a local hit touches no attribute lookups.

        Without a Redis tier the hit follows the policy's :class:`~noodle.cache.policies.HitPath`
        (no lock); a key its ``lookup`` does not find takes the locked path. With a Redis tier
        every read takes the locked path (keys are canonicalized and misses go on to Redis).
        """
        if local_only:
            if not self.local_tier:
                return self._no_local_get
            path = self._policy.hit_path()
            if path is None or path[2] is not None:
                return self._slow_get_local
            # (a Redis-backed manager:) the local tier holds canonical keys, and only a str key is its
            # own canonical form; others take the slow path, which canonicalizes them
            raw, touch = path[0], path[1]
            return self._lru_get(lambda key, default: raw(key, default) if type(key) is str else default,
                                 touch, self._slow_get_local)
        if not self.local_tier:
            return self._slow_get
        path = self._policy.hit_path() if self._redis is None else None
        if path is None:
            return self._locked_get
        lock = self._lock
        mono = _monotonic
        count_hit = self._hit_counter.__next__
        lookup, touch, buffer, buffer_max, flush = path
        if buffer is None:
            assert touch is not None
            return self._lru_get(lookup, touch, self._slow_get)
        append = buffer.append
        locked = self._locked_get
        if touch is None:
            # LFU: a hit is a lookup and a list append (list.append is atomic); the buffer is
            # counted by the policy under the lock when full
            def get(key: Hashable, default: Any = None) -> Any:
                try:
                    entry = lookup(key, MISSING)
                except TypeError:
                    raise CacheError(f"cache keys must be hashable; got {type(key).__name__}.") from None
                if entry is not MISSING:
                    expires = entry.expires
                    if entry.limits is None and (not expires or expires > mono()):
                        append(key)
                        if len(buffer) >= buffer_max:
                            with lock:
                                flush()
                        count_hit()
                        return entry.value
                return locked(key, default)

            return get

        # adaptive: a hit in the protected segment (the hot keys) is lock-free; window and probation
        # hits move entries between segments and take the locked path
        def get(key: Hashable, default: Any = None) -> Any:
            try:
                entry = lookup(key, MISSING)
            except TypeError:
                raise CacheError(f"cache keys must be hashable; got {type(key).__name__}.") from None
            if entry is not MISSING:
                expires = entry.expires
                if entry.limits is None and (not expires or expires > mono()):
                    try:
                        touch(key)
                    except KeyError:
                        pass
                    append(key)
                    if len(buffer) >= buffer_max:
                        with lock:
                            flush()
                    count_hit()
                    return entry.value
            return locked(key, default)

        return get

    def _lru_get(self, lookup: Callable[[Hashable, Any], Any], touch: Callable[[Hashable], Any],
                 slow: Callable[[Hashable, Any], Any]) -> Callable[[Hashable, Any], Any]:
        """The lock-free hit path of LRU/TTL policies; anything but a plain hit goes to ``slow``.

        Under the GIL each OrderedDict call is atomic, and a key evicted between the lookup and
        move_to_end raises KeyError, which is harmless (the value read was current when read).
        Hits are counted by itertools.count (atomic).
        """
        mono, count_hit = _monotonic, self._hit_counter.__next__

        def get(key: Hashable, default: Any = None) -> Any:
            try:
                entry = lookup(key, MISSING)
            except TypeError:
                raise CacheError(f"cache keys must be hashable; got {type(key).__name__}.") from None
            if entry is not MISSING:
                expires = entry.expires
                if entry.limits is None and (not expires or expires > mono()):
                    try:
                        touch(key)
                    except KeyError:
                        pass
                    count_hit()
                    return entry.value
            return slow(key, default)

        return get

    def _locked_get(self, key: Hashable, default: Any = None) -> Any:
        """The hit path of lookups that reorder several structures (lfu, adaptive, shared tiers)."""
        if self._redis is not None and type(key) is not str:
            return self._slow_get(key, default)
        try:
            with self._lock:
                entry = self._policy.get(key)
                if entry is not MISSING:
                    expires = entry.expires
                    if entry.limits is None and (not expires or expires > _monotonic()):
                        self._hits += 1
                        return entry.value
                elif self._redis is None:
                    # a plain miss with nowhere else to look: counted here, so the policy sees one
                    # look (the slow path would take the lock and ask it again)
                    self.misses += 1
                    return default
        except TypeError:
            raise CacheError(f"cache keys must be hashable; got {type(key).__name__}.") from None
        return self._slow_get(key, default)

    def _slow_get(self, key: Hashable, default: Any = None) -> Any:
        """Every case but a plain local hit: limits, expiry, misses, the Redis tier."""
        if self._redis is not None and type(key) is not str:
            key = _canonical(key)
        if self.local_tier:
            t0 = _perf()
            used_up = False
            try:
                with self._lock:
                    entry = self._policy.get(key)
                    if entry is not MISSING:
                        value = self._check_slow_locked(key, entry)
                        if value is not MISSING:
                            self._hits += 1
                            used_up = entry.limits is not None and self._policy.peek(key) is MISSING
                            return value
                        used_up = entry.limits is not None
                    self.misses += 1
            except TypeError:
                raise CacheError(f"cache keys must be hashable; got {type(key).__name__}.") from None
            finally:
                if len(self._latency) < 4096:
                    self._latency.append(("local", _perf() - t0))
                if used_up and self._redis is not None:
                    # max_hits / max_idle used up: gone from every tier, or Redis would serve it again
                    self._redis.delete([key], [])  # type: ignore[list-item]
        if self._redis is not None:
            value = self._redis_get(key)
            if value is not MISSING:
                return value
        return default

    def _check_slow_locked(self, key: Hashable, entry: _Entry) -> Any:
        """An entry with limits or an expiry in the past: enforce them; MISSING if it must go."""
        now = _monotonic()
        if entry.expires and entry.expires <= now:
            self._remove_locked(key)
            return MISSING
        limits = entry.limits
        if limits is not None:
            if limits.max_idle and now - limits.last > limits.max_idle:
                self._remove_locked(key)
                return MISSING
            limits.last = now
            limits.hits += 1
            if limits.max_hits and limits.hits >= limits.max_hits:
                self._remove_locked(key)  # this read is the last one it serves
        return entry.value

    def _redis_get(self, key: Hashable) -> Any:
        tier = self._redis
        assert tier is not None
        epoch = self._epoch
        t0 = _perf()
        raw = tier.get_raw(key)  # type: ignore[arg-type]
        if len(self._latency) < 4096:
            self._latency.append(("redis", _perf() - t0))
        if raw is None:
            self.redis_misses += 1
            return MISSING
        try:
            value, expires_unix, tags = tier.unpack(raw)
        except codec.DecodeError:
            self.decode_errors += 1
            self.redis_misses += 1
            return MISSING
        if expires_unix:
            remaining = expires_unix - time.time()
            if remaining <= 0:  # past its lifetime (Redis has not dropped it yet): a miss
                self.redis_misses += 1
                return MISSING
        else:
            remaining = 0.0
        self.redis_hits += 1
        if self.local_tier and self._subscriber is not None and self._subscriber.subscribed:
            # kept only while we can hear invalidations, and only if none arrived while we were reading
            with self._lock:
                if epoch == self._epoch:
                    self._put_locked(key, value, remaining, tags, None)
        return value

    # the local tier alone ------------------------------------------------------------------
    def get_local(self, key: Hashable, default: Any = None) -> Any:
        """``key``'s value in this process's local tier only (Redis is not asked), or ``default``.

        Why: one manager serves callers that want a per-process cache and callers
        that want the shared one (``MathStore``'s 'lru' and 'lru_dist'), over one
        local tier and one memory bound instead of two managers. (Each instance
        replaces this with a closure built by :meth:`_build_get`.)
        """
        return self._slow_get_local(key, default)

    def _slow_get_local(self, key: Hashable, default: Any = None) -> Any:
        self._check_open()
        skey = self._skey(key)
        with self._lock:
            entry = self._policy.get(skey)
            if entry is not MISSING:
                value = self._check_slow_locked(skey, entry)
                if value is not MISSING:
                    self._hits += 1
                    return value
            self.misses += 1
        return default

    def _no_local_get(self, key: Hashable, default: Any = None) -> Any:
        self._check_open()
        self._skey(key)
        return default

    def set_local(self, key: Hashable, value: Any, ttl: float | None = None, tags: Iterable[str] = ()) -> bool:
        """Store ``value`` in this process's local tier only; Redis and peers are not told.

        A peer's write or invalidation of the same key still drops it here (the
        local tier never outlives what the shared tier says). Local entries that
        depend on ``key`` are invalidated, here only. False if there is no local tier.
        """
        self._check_open()
        if not self.local_tier:
            return False
        skey = self._skey(key)
        all_tags = self._tags_of(tags, ())
        lifetime = self.default_ttl if ttl is None else check_seconds("ttl", ttl, allow_none=False)
        dep = _dep_tag(skey)
        with self._lock:
            self._epoch += 1  # a Redis read in flight must not re-insert an older value over it
            dependents = bool(self._tags.get(dep))
            self._put_locked(skey, value, lifetime, all_tags, None)
        if dependents:
            self._cascade([], [dep], local_only=True)
        return True

    def delete_local(self, key: Hashable) -> None:
        """Remove ``key`` from this process's local tier only."""
        self._check_open()
        skey = self._skey(key)
        with self._lock:
            self._remove_locked(skey)

    def __contains__(self, key: Hashable) -> bool:
        return self.get(key, MISSING) is not MISSING

    def __len__(self) -> int:
        return len(self._policy)

    # writes ----------------------------------------------------------------------
    def set(self, key: Hashable, value: Any, ttl: float | None = None, tags: Iterable[str] = (),
            depends_on: Iterable[Hashable] = (), max_idle: float | None = None,
            max_hits: int | None = None) -> bool:
        """Store ``value`` under ``key`` in every tier; True if it reached every tier.

        ``ttl`` overrides the default lifetime (0 = never expires); ``tags`` name
        groups for :meth:`invalidate`; ``depends_on`` lists keys whose
        invalidation (or overwrite) must cascade to this one; ``max_idle`` drops
        the entry after that many seconds unread; ``max_hits`` after that many reads.
        Setting a key invalidates everything that depends on it.

        Returns False (never raises) when a Redis tier did not confirm the write
        within ``NOODLE_CACHE_REDIS_TIMEOUT``: the value is then served from this
        process's local tier only until Redis is back, and at recovery the key is
        invalidated everywhere (other nodes never see the lost value, and never a
        value it was meant to replace).
        """
        self._check_open()
        skey = self._skey(key)
        all_tags = self._tags_of(tags, depends_on)
        lifetime = self.default_ttl if ttl is None else check_seconds("ttl", ttl, allow_none=False)
        limits = self._limits_of(max_idle, max_hits)
        if self._redis is None:
            with self._lock:
                dependents = bool(self._tags.get(_dep_tag(skey)))
                if self.local_tier:
                    self._put_locked(skey, value, lifetime, all_tags, limits)
            if dependents:
                self._cascade([], [_dep_tag(skey)])
            return True
        payload = self._redis.pack(value, time.time() + lifetime if lifetime else 0.0, all_tags)
        with self._lock:
            self._epoch += 1  # a Redis read in flight must not re-insert an older value
            if self.local_tier:
                self._put_locked(skey, value, lifetime, all_tags, limits)
        dep = _dep_tag(skey)
        stored, dependents = self._redis.set(skey, payload, lifetime, all_tags, dep)  # type: ignore[arg-type]
        if not stored:
            with self._lock:
                self._pending_keys.add(skey)  # type: ignore[arg-type]
                self._pending_tags.add(dep)
        if dependents or self._tags.get(dep):
            self._cascade([], [dep])
        return stored

    def _build_set(self) -> Callable[..., bool] | None:
        """The instance's ``set`` for a local-only manager without a byte bound, or None.

        Why: a miss-heavy workload pays ``set`` on every miss, and most sets are plain (no ttl,
        tags, dependencies or limits). A plain set builds its entry outside the lock, sizes
        scalars without a call, and under the lock does only ``pop`` and ``put``: with no tagged
        entry resident (the tag index empty) there is nothing to unindex and no dependent to
        invalidate. Every other set, and every set while tagged entries are resident, is
        :meth:`set` itself.
        """
        if (self._redis is not None or not self.local_tier or self.max_bytes is not None
                or type(self).set is not CacheManager.set):
            return None
        general = CacheManager.set.__get__(self)
        acquire, release, tag_index, policy = self._lock.acquire, self._lock.release, self._tags, self._policy
        contains, pop, put = policy.contains, policy.pop, policy.put
        default_ttl = self.default_ttl
        new, entry_cls, mono = object.__new__, _Entry, _monotonic
        fixed, nbytes_of = _FIXED_SIZE, codec.nbytes_of
        manager = self

        def set(key: Hashable, value: Any, ttl: float | None = None, tags: Iterable[str] = (),
                depends_on: Iterable[Hashable] = (), max_idle: float | None = None,
                max_hits: int | None = None) -> bool:
            if ttl is None and not tags and not depends_on and max_idle is None and max_hits is None:
                entry = new(entry_cls)
                entry.value = value
                entry.expires = mono() + default_ttl if default_ttl else 0.0
                entry.size = size = 32 if type(value) in fixed else nbytes_of(value)
                entry.tags = ()
                entry.limits = None
                acquire()  # (acquire/release: half the cost of ``with lock``)
                try:
                    if not tag_index:
                        if contains(key):
                            size -= pop(key).size
                        evicted = put(key, entry)
                        if evicted:
                            for item in evicted:
                                size -= item[1].size
                            manager.evictions += len(evicted)
                        manager._bytes += size
                        return True
                except TypeError:
                    raise CacheError(f"cache keys must be hashable; got {type(key).__name__}.") from None
                finally:
                    release()
            return general(key, value, ttl, tags, depends_on, max_idle, max_hits)

        set.__doc__ = CacheManager.set.__doc__
        return set

    def _check_open(self) -> None:
        if self._closed:
            raise CacheError(f"this CacheManager (namespace {self.namespace!r}) is closed; create a new one "
                             f"to keep caching.")

    def _closed_get(self, key: Hashable, default: Any = None) -> Any:
        self._check_open()
        return default

    def _skey(self, key: Hashable) -> Hashable:
        """The key as stored: its shared form with a Redis tier; a CacheError if it cannot be a key."""
        try:
            hash(key)
        except TypeError:
            raise CacheError(f"cache keys must be hashable; got {type(key).__name__}.") from None
        return _canonical(key) if self._redis is not None else key

    @staticmethod
    def _tags_of(tags: Iterable[str], depends_on: Iterable[Hashable]) -> tuple[str, ...]:
        if not tags and not depends_on:
            return ()
        tags = tuple(tags)
        for tag in tags:
            if not isinstance(tag, str):
                raise CacheError(f"tags must be strings, got {type(tag).__name__}.")
        deps = []
        for d in depends_on:
            try:
                deps.append(_DEP + _canonical(d))
            except CacheError as exc:
                raise CacheError(f"depends_on: {exc}") from None
        return tags + tuple(deps)

    @staticmethod
    def _limits_of(max_idle: float | None, max_hits: int | None) -> _Limits | None:
        if max_idle is None and max_hits is None:
            return None
        if max_idle is not None and not check_seconds("max_idle", max_idle):
            raise CacheError(f"max_idle must be > 0 seconds, got {max_idle!r}.")
        if max_hits is not None and (isinstance(max_hits, bool) or not isinstance(max_hits, int) or max_hits < 1):
            raise CacheError(f"max_hits must be an integer >= 1, got {max_hits!r}.")
        return _Limits(float(max_idle or 0.0), max_hits or 0)

    def _put_locked(self, key: Hashable, value: Any, lifetime: float, tags: tuple[str, ...],
                    limits: _Limits | None) -> None:
        size = codec.nbytes_of(value)
        if self.max_bytes is not None and size > self.max_bytes:
            self._remove_locked(key)  # too big for the local tier: never keep a stale older value
            return
        expires = _monotonic() + lifetime if lifetime else 0.0
        entry = _Entry(value, expires, size, tags, limits)
        policy = self._policy
        old = policy.pop(key)
        if old is not MISSING:
            self._unindex(key, old)
        evicted = policy.put(key, entry)
        self._bytes += size
        for tag in tags:
            members = self._tags.get(tag)
            if members is None:
                members = self._tags[tag] = set()
            members.add(key)
        if evicted:
            for ekey, eentry in evicted:
                self._unindex(ekey, eentry)
            self.evictions += len(evicted)
        if self.max_bytes is not None:
            while self._bytes > self.max_bytes:
                item = self._policy.evict_one()
                if item is None:
                    break
                self._unindex(*item)
                self.evictions += 1

    def _unindex(self, key: Hashable, entry: _Entry) -> None:
        self._bytes -= entry.size
        if not entry.tags:
            return
        for tag in entry.tags:
            members = self._tags.get(tag)
            if members is not None:
                members.discard(key)
                if not members:
                    del self._tags[tag]

    def _remove_locked(self, key: Hashable) -> bool:
        entry = self._policy.pop(key)
        if entry is MISSING:
            return False
        self._unindex(key, entry)
        return True

    def delete(self, key: Hashable) -> None:
        """Remove ``key`` from every tier (without cascading to its dependents)."""
        self._check_open()
        skey = self._skey(key)
        with self._lock:
            self._remove_locked(skey)
        if self._redis is not None and not self._redis.delete([skey], []):  # type: ignore[list-item]
            with self._lock:
                self._pending_keys.add(skey)  # type: ignore[arg-type]

    def invalidate(self, tag: str | None = None, key: Hashable = _DEFAULT) -> int:
        """Drop every entry with ``tag``, or ``key`` and everything that depends on it, on every node.

        Returns how many local entries were dropped. Peers are told over Redis
        pub/sub after the Redis copies are deleted; if Redis is unreachable the
        deletion is replayed when it is back.
        """
        self._check_open()
        if (tag is None) == (key is _DEFAULT):
            raise CacheError("invalidate() takes exactly one of tag=... or key=....")
        if tag is not None:
            if not isinstance(tag, str):
                raise CacheError(f"tags must be strings, got {type(tag).__name__}.")
            return self._cascade([], [tag])
        skey = self._skey(key)
        return self._cascade([skey], [_dep_tag(skey)])

    def _cascade(self, keys: list[Hashable], tags: list[str], local_only: bool = False) -> int:
        """Drop ``keys`` and every member of ``tags``, then the dependents of each dropped key, transitively
        (in every tier, or ``local_only``)."""
        redis = None if local_only else self._redis
        dropped = 0
        seen_tags: set[str] = set()
        seen_keys: set[Hashable] = set(keys)
        frontier_tags = [t for t in tags if t]
        with self._lock:
            for k in keys:
                dropped += self._remove_locked(k)
        while frontier_tags:
            next_tags: list[str] = []
            remote = redis.tag_members(frontier_tags) if redis is not None else None
            with self._lock:
                members: list[Hashable] = list(remote or [])
                for t in frontier_tags:
                    seen_tags.add(t)
                    members.extend(self._tags.pop(t, ()))
                for m in members:
                    if m in seen_keys:
                        continue
                    seen_keys.add(m)
                    dropped += self._remove_locked(m)
                    dep = _dep_tag(m)
                    if dep and dep not in seen_tags:
                        next_tags.append(dep)
            frontier_tags = next_tags
        if redis is not None:
            skeys = [str(k) for k in seen_keys]
            if not redis.delete(skeys, sorted(seen_tags)):
                with self._lock:
                    self._pending_keys.update(skeys)
                    self._pending_tags.update(seen_tags)
        return dropped

    def clear(self) -> None:
        """Empty the local tier and this namespace in Redis (peers drop their local tiers too)."""
        self._check_open()
        self._drop_local()
        if self._redis is not None:
            self._redis.clear()

    # stats and lifetime ---------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counts since creation: local hits/misses/evictions, Redis hits/misses, bytes and more."""
        from noodle.cache import stats

        stats.publish()
        total = self.hits + self.misses
        return {
            "policy": self.policy_name, "entries": len(self._policy), "bytes": self._bytes,
            "hits": self.hits, "misses": self.misses, "hit_ratio": self.hits / total if total else 0.0,
            "evictions": self.evictions, "redis_hits": self.redis_hits, "redis_misses": self.redis_misses,
            "decode_errors": self.decode_errors, "redis_down": self.redis_down_count,
            "redis_up": bool(self._redis and self._redis.up), "loads": self.loads,
        }

    def close(self) -> None:
        """Write the warming snapshot (if enabled), stop the subscriber and close connections."""
        if self._closed:
            return
        self._closed = True
        self.get = self.get_local = self._closed_get  # type: ignore[method-assign]
        self.__dict__.pop("set", None)  # the plain-set closure: set() raises once closed
        if self._snapshot_on:
            try:
                self.save_snapshot()
            except (OSError, CacheEncodingError):
                pass
        from noodle.cache import stats

        stats.publish()
        if self._subscriber is not None:
            self._subscriber.stop()
            self._subscriber.join(timeout=2.0)
        if self._redis is not None:
            self._redis.close()

    def __enter__(self) -> CacheManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_exit_refs: weakref.WeakSet[CacheManager] = weakref.WeakSet()
_exit_hooked = False


def _register_exit(manager: CacheManager) -> None:
    global _exit_hooked
    _exit_refs.add(manager)
    if not _exit_hooked:
        _exit_hooked = True
        atexit.register(_close_all)


def _close_all() -> None:
    for manager in list(_exit_refs):
        try:
            manager.close()
        except Exception:
            pass


__all__ = ["CacheManager"]
