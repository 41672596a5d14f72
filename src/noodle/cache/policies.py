"""Replacement policies of the local tier: LRU, LFU, TTL and adaptive (W-TinyLFU + hill climbing).

Why these live apart from :class:`~noodle.cache.CacheManager`: the same policy
objects run inside the manager (under its lock) and, alone, in the hit-ratio
replay of :mod:`noodle.cache.simulate`, which makes the very calls the manager
makes, so what is measured is what runs.

Every policy implements :class:`Policy`: it holds ``key -> value`` and answers
``get`` (a lookup that also records the access), ``put`` (insert or replace;
returns the entries it evicted to stay within ``capacity``), ``pop`` (remove
without counting an eviction), ``evict_one`` (for the manager's byte bound),
``hottest(n)`` (for warming snapshots), ``peek``/``keys``/``clear`` and
``hit_path`` (what the manager may do on a hit *without* its lock). None of
them is thread-safe on its own: the manager serializes every call but the
ones ``hit_path`` hands out.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

MISSING: Any = object()  # sentinel: "no such key" (None is a valid cached value)
_NO_EVICTIONS: tuple[tuple[Hashable, Any], ...] = ()  # put's common answer, shared (no allocation per set)


class HitPath(NamedTuple):
    """What a manager may do on a cache hit without holding its lock (CPython's GIL makes each step atomic).

    Why: a lock costs as much as the whole lookup, and hits are the call users
    make most. The manager's fast hit is, in this order::

        entry = lookup(key, MISSING)          # no side effect; MISSING -> take the locked path
        ...check the entry's expiry/limits...
        if touch is not None: touch(key)      # may raise KeyError if evicted meanwhile: ignore it
        if buffer is not None:
            buffer.append(key)                # the hit, recorded for later
            if len(buffer) >= buffer_max:
                with lock: flush()            # the policy applies buffered hits (under the lock)

    A key found by ``lookup`` is a hit the policy accepts as complete with the
    steps above; a key that ``lookup`` does not find may still be resident (in a
    segment whose hits must reorder several structures): the manager then calls
    :meth:`Policy.get` under its lock. Every field is a C-level bound method or
    a list where possible, so the fast hit runs no Python frame of the policy.
    """

    lookup: Callable[[Hashable, Any], Any]
    touch: Callable[[Hashable], Any] | None
    buffer: list[Hashable] | None
    buffer_max: int
    flush: Callable[[], None] | None


@runtime_checkable
class Policy(Protocol):
    """The interface between :class:`~noodle.cache.CacheManager` and a replacement policy.

    The policy owns the resident ``key -> value`` map (the manager stores its
    entries as the values) and the order it evicts in. Calls, all made under the
    manager's lock except what :meth:`hit_path` hands out:

    - ``get(key)``: the value or ``MISSING``; records the access (a hit moves
      the key, a miss may count toward admission). Calling it twice in a row
      for the same missing key (``get_or_load`` looks before and after it takes
      its flight) counts one miss.
    - ``peek(key)``: the value or ``MISSING``, recording nothing (snapshots).
    - ``put(key, value)``: insert or replace; returns the ``(key, value)`` pairs
      evicted to stay within ``capacity`` (usually an empty tuple: no
      allocation). An inserted key may itself be rejected (W-TinyLFU admission)
      and then appears among the evicted pairs.
    - ``pop(key)``: remove (not an eviction); the value or ``MISSING``.
    - ``evict_one()``: evict the next victim (byte bounds); ``None`` when empty.
    - ``hottest(n)``: up to ``n`` keys, most valuable first (warming snapshots).
    - ``keys()``, ``clear()``, ``len()``, ``in``.
    - ``contains(key)``: ``key in policy``, as a C-level bound method where the policy can (a
      plain ``set`` asks it first, so a new key never pays a Python-level ``pop``).
    - ``hit_path()``: a :class:`HitPath` for lock-free hits, or ``None``.
    """

    name: str
    capacity: int
    contains: Callable[[Hashable], bool]

    def get(self, key: Hashable) -> Any: ...

    def peek(self, key: Hashable) -> Any: ...

    def put(self, key: Hashable, value: Any) -> Sequence[tuple[Hashable, Any]]: ...

    def pop(self, key: Hashable) -> Any: ...

    def evict_one(self) -> tuple[Hashable, Any] | None: ...

    def hottest(self, n: int) -> list[Hashable]: ...

    def keys(self) -> Iterator[Hashable]: ...

    def clear(self) -> None: ...

    def hit_path(self) -> HitPath | None: ...

    def __len__(self) -> int: ...

    def __contains__(self, key: Hashable) -> bool: ...


class LRUPolicy:
    """Least recently used: one OrderedDict, a hit is one lookup plus ``move_to_end``."""

    name = "lru"

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self.contains = self._data.__contains__

    def get(self, key: Hashable) -> Any:
        value = self._data.get(key, MISSING)
        if value is not MISSING:
            self._data.move_to_end(key)
        return value

    def peek(self, key: Hashable) -> Any:
        return self._data.get(key, MISSING)

    def put(self, key: Hashable, value: Any) -> Sequence[tuple[Hashable, Any]]:
        # a new key lands at the end by itself; only a replaced one needs moving. The usual answer is
        # a shared empty tuple and an eviction one list: no allocation when nothing is evicted
        data = self._data
        if key in data:
            data[key] = value
            data.move_to_end(key)
            return _NO_EVICTIONS
        data[key] = value
        capacity = self.capacity
        if len(data) <= capacity:
            return _NO_EVICTIONS
        item = data.popitem(last=False)
        if len(data) <= capacity:
            return (item,)
        evicted = [item]
        while len(data) > capacity:
            evicted.append(data.popitem(last=False))
        return evicted

    def pop(self, key: Hashable) -> Any:
        return self._data.pop(key, MISSING)

    def evict_one(self) -> tuple[Hashable, Any] | None:
        return self._data.popitem(last=False) if self._data else None

    def hottest(self, n: int) -> list[Hashable]:
        out = []
        for key in reversed(self._data):
            if len(out) >= n:
                break
            out.append(key)
        return out

    def keys(self) -> Iterator[Hashable]:
        return iter(list(self._data))

    def clear(self) -> None:
        self._data.clear()

    def hit_path(self) -> HitPath | None:
        """Every hit is lock-free: a C-level lookup and ``move_to_end``."""
        data = self._data
        return HitPath(data.get, data.move_to_end, None, 0, None)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data


class TTLPolicy(LRUPolicy):
    """LRU order, but when full the entry that expires first goes first if it has already expired.

    Values must carry an ``expires`` attribute (monotonic seconds, 0 = never):
    the manager's entries do. A heap of (expires, key) finds the next expiry in
    O(log n); stale heap items (replaced or removed keys) are skipped lazily.
    """

    name = "ttl"

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self._heap: list[tuple[float, int, Hashable]] = []
        self._seq = 0

    def put(self, key: Hashable, value: Any) -> Sequence[tuple[Hashable, Any]]:
        expires = getattr(value, "expires", 0.0)
        if expires:
            self._seq += 1
            heapq.heappush(self._heap, (expires, self._seq, key))
            if len(self._heap) > 4 * self.capacity + 64:
                self._compact()
        data = self._data
        if key in data:
            data[key] = value
            data.move_to_end(key)
            return _NO_EVICTIONS
        data[key] = value
        if len(data) <= self.capacity:
            return _NO_EVICTIONS
        evicted = []
        while len(data) > self.capacity:
            item = self.evict_one()
            if item is None:
                break
            evicted.append(item)
        return evicted

    def _compact(self) -> None:
        live = [(e, s, k) for e, s, k in self._heap
                if (v := self._data.get(k, MISSING)) is not MISSING and getattr(v, "expires", 0.0) == e]
        heapq.heapify(live)
        self._heap = live

    def evict_one(self) -> tuple[Hashable, Any] | None:
        heap, data = self._heap, self._data
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            expires, _, key = heapq.heappop(heap)
            value = data.get(key, MISSING)
            if value is not MISSING and getattr(value, "expires", 0.0) == expires:
                del data[key]
                return key, value
        return data.popitem(last=False) if data else None

    def clear(self) -> None:
        super().clear()
        self._heap.clear()


class LFUPolicy:
    """Least frequently used among resident entries; ties go to the key placed in its count longest ago.

    Why lazy: an exact LFU moves a key between frequency buckets on every hit
    (eight dict operations, ~0.3 µs of Python). Here a hit only adds one to the
    key's count (``Counter``; on the manager's lock-free path, a list append
    applied later by ``Counter.update`` in C). Keys sit in the bucket of the
    count they had when *placed* (inserted, or moved by an eviction scan): an
    eviction takes the oldest key of the smallest bucket and, if its count has
    grown since, moves it to the bucket of its count and looks again. Each
    hit causes at most one such move, so every operation is O(1) amortized,
    and the victim is always a key of the smallest count (every key's bucket
    is <= its count, and counts only grow). A heap of bucket numbers finds the
    smallest non-empty bucket.
    """

    name = "lfu"

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._data: dict[Hashable, Any] = {}
        self._count: Counter[Hashable] = Counter()  # uses of each resident key
        self._where: dict[Hashable, int] = {}  # the bucket each resident key sits in (<= its count)
        self._buckets: dict[int, OrderedDict[Hashable, None]] = {}
        self._heap: list[int] = []  # bucket numbers (lazily cleaned: may name emptied buckets)
        self._hit_buffer: list[Hashable] = []  # lock-free hits not yet counted
        self._buffer_max = 512
        self.contains = self._data.__contains__

    def get(self, key: Hashable) -> Any:
        value = self._data.get(key, MISSING)
        if value is not MISSING:
            self._count[key] += 1
        return value

    def peek(self, key: Hashable) -> Any:
        return self._data.get(key, MISSING)

    def flush(self) -> None:
        """Count the buffered lock-free hits (C loop); forget counts of keys that left meanwhile."""
        buf = self._hit_buffer
        if not buf:
            return
        count = self._count
        count.update(buf)
        buf.clear()
        # a hit racing a removal can count a key that is gone: harmless (an insert resets the count),
        # but dropped once such strays could weigh on memory
        if len(count) > 2 * len(self._data) + 1024:
            data = self._data
            for key in [k for k in count if k not in data]:
                del count[key]

    def _place(self, key: Hashable, n: int) -> None:
        self._where[key] = n
        bucket = self._buckets.get(n)
        if bucket is None:
            bucket = self._buckets[n] = OrderedDict()
            heapq.heappush(self._heap, n)
            if len(self._heap) > 2 * len(self._buckets) + 64:
                self._heap = sorted(self._buckets)
        bucket[key] = None

    def put(self, key: Hashable, value: Any) -> Sequence[tuple[Hashable, Any]]:
        data = self._data
        if key in data:
            data[key] = value
            self._count[key] += 1
            return _NO_EVICTIONS
        if self._hit_buffer:
            self.flush()
        evicted: Sequence[tuple[Hashable, Any]] = _NO_EVICTIONS
        if len(data) >= self.capacity:
            evicted = [self._evict()]
            while len(data) >= self.capacity:
                evicted.append(self._evict())
        data[key] = value
        self._count[key] = 1
        self._place(key, 1)
        return evicted

    def _evict(self) -> tuple[Hashable, Any]:
        """Remove a key of the smallest count (buffer already flushed, not empty)."""
        buckets, heap, count = self._buckets, self._heap, self._count
        while True:
            n = heap[0]
            bucket = buckets.get(n)
            if not bucket:
                heapq.heappop(heap)
                if bucket is not None:
                    del buckets[n]
                continue
            key = bucket.popitem(last=False)[0]
            uses = count[key]
            if uses == n:
                del self._where[key]
                del count[key]
                return key, self._data.pop(key)
            self._place(key, uses)

    def pop(self, key: Hashable) -> Any:
        value = self._data.pop(key, MISSING)
        if value is not MISSING:
            if self._hit_buffer:
                self.flush()  # buffered hits of this key must not count for a later re-insert
            self._count.pop(key, None)
            n = self._where.pop(key)
            del self._buckets[n][key]
        return value

    def evict_one(self) -> tuple[Hashable, Any] | None:
        if not self._data:
            return None
        if self._hit_buffer:
            self.flush()
        return self._evict()

    def hottest(self, n: int) -> list[Hashable]:
        self.flush()
        return heapq.nlargest(n, self._data, key=self._count.__getitem__)

    def keys(self) -> Iterator[Hashable]:
        return iter(list(self._data))

    def clear(self) -> None:
        self._hit_buffer.clear()
        self._data.clear()
        self._count.clear()
        self._where.clear()
        self._buckets.clear()
        self._heap.clear()

    def hit_path(self) -> HitPath | None:
        """Every hit is lock-free: a C-level lookup and a list append (counted at the next flush)."""
        return HitPath(self._data.get, None, self._hit_buffer, self._buffer_max, self.flush)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data


_M64 = (1 << 64) - 1
_C1 = 0x9E3779B97F4A7C15
_C2 = 0xC2B2AE3D27D4EB4F


class FrequencySketch:
    """A count-min sketch (4 rows of byte counters, conservative update) with periodic halving.

    Why: TinyLFU admission needs the recent access frequency of keys that are
    *not* in the cache, in a few bytes per entry. Conservative update (raise
    only the smallest of the four counters) keeps collisions from inflating
    estimates; halving every ``sample_size`` increments ages old popularity out.
    """

    __slots__ = ("_table", "_width", "_mask", "_additions", "sample_size", "limit")

    def __init__(self, capacity: int, sample_factor: int = 10, limit: int = 15, width_factor: int = 2) -> None:
        width = 64
        while width < width_factor * capacity:
            width <<= 1
        self._width = width
        self._mask = width - 1
        self._table = bytearray(4 * width)
        self._additions = 0
        self.sample_size = max(64, sample_factor * capacity)
        self.limit = limit

    def _indices(self, key: Hashable) -> tuple[int, int, int, int]:
        h = hash(key) & _M64
        a = (h * _C1) & _M64
        b = (h * _C2) & _M64
        m, w = self._mask, self._width
        return (a >> 7) & m, w + ((a >> 35) & m), 2 * w + ((b >> 7) & m), 3 * w + ((b >> 35) & m)

    def frequency(self, key: Hashable) -> int:
        t = self._table
        i, j, k, l_ = self._indices(key)
        return min(t[i], t[j], t[k], t[l_])

    def increment(self, key: Hashable) -> None:
        t = self._table
        i, j, k, l_ = self._indices(key)
        low = min(t[i], t[j], t[k], t[l_])
        if low < self.limit:
            low1 = low + 1
            if t[i] == low:
                t[i] = low1
            if t[j] == low:
                t[j] = low1
            if t[k] == low:
                t[k] = low1
            if t[l_] == low:
                t[l_] = low1
        self._additions += 1
        if self._additions >= self.sample_size:
            self._halve()

    def increment_many(self, keys: list[Hashable]) -> None:
        """Record a batch of accesses at once (NumPy), as if ``increment`` ran for each key.

        Why: the adaptive policy buffers its hits and records them here, so a
        cache hit costs a list append instead of a Python-level sketch update.
        Repeats of one key within the batch are counted (np.unique); keys that
        share a counter get the larger of their conservative targets.
        """
        self.increment_hashes(np.fromiter(map(hash, keys), dtype=np.int64, count=len(keys)).view(np.uint64))

    def increment_hashes(self, hashes: np.ndarray) -> None:
        """``increment_many`` for keys already hashed (``hash(key)`` as uint64)."""
        uniq, counts = np.unique(hashes, return_counts=True)
        a = uniq * np.uint64(_C1)
        b = uniq * np.uint64(_C2)
        m, w = np.uint64(self._mask), self._width
        s7, s35 = np.uint64(7), np.uint64(35)
        rows = (((a >> s7) & m).astype(np.intp), ((a >> s35) & m).astype(np.intp) + w,
                ((b >> s7) & m).astype(np.intp) + 2 * w, ((b >> s35) & m).astype(np.intp) + 3 * w)
        table = np.frombuffer(self._table, dtype=np.uint8)
        est = np.minimum(np.minimum(table[rows[0]], table[rows[1]]), np.minimum(table[rows[2]], table[rows[3]]))
        target = np.minimum(est.astype(np.int64) + counts, self.limit).astype(np.uint8)
        for idx in rows:
            np.maximum.at(table, idx, target)
        self._additions += len(hashes)
        if self._additions >= self.sample_size:
            self._halve()

    def _halve(self) -> None:
        view = np.frombuffer(self._table, dtype=np.uint8)
        np.right_shift(view, 1, out=view)
        self._additions //= 2

    def clear(self) -> None:
        self._table[:] = bytes(len(self._table))
        self._additions = 0


class AdaptivePolicy:
    """W-TinyLFU with a hill-climbed window: scan- and loop-resistant, and adaptive to recency.

    Layout (as in Caffeine): a small LRU *window* admits every new key; when it
    overflows, its oldest key competes with the main space's victim and enters
    only if the frequency sketch says it is more popular (TinyLFU admission).
    The main space is a segmented LRU (probation, then 80% protected), so a key
    hit twice survives scans. The window's share is tuned by hill climbing:
    every ``2.5 x capacity`` accesses the hit ratio is compared with the last
    sample and the window moves one step in the direction that helped (restart
    at a large step when the workload shifts). Recency-heavy traces grow the
    window toward LRU; frequency-heavy and looping traces shrink it toward LFU.
    A shadow LRU over a hash sample of the keys is compared with this policy's
    hits on the same keys: when LRU does better the window jumps to the LRU end.

    The climbing constants (measured on the 13 hit-ratio rows of ``noodle bench
    cache``, where adaptive must stay within 0.002 of the best of LRU, LFU and
    theine):

    * ``CLIMB_EVERY``: the shadow-LRU test runs every ``PERIOD_FACTOR x
      capacity`` accesses, a hill-climbing step only every 4 of those, on the
      four samples together: one sample's hit ratio is too noisy to climb on.
    * ``CV_K``: the climber's signal is the hit ratio less the shadow LRU's
      rate when that moved by more than ``CV_K`` standard errors (a control
      variate), so a change in the workload does not read as the last step's.
    * ``MAX_BACKOFF``: resting at the LRU end, the climber probes down after a
      wait that doubles (up to 16 steps) each time the shadow LRU sends it
      back, rather than never or at every step.
    * ``EARLY_SAMPLES``/``EARLY_MARGIN``: before the first sample ends the
      shadow-LRU test also runs on each chunk of 256 sampled requests and jumps
      to the LRU end when LRU is ahead by 0.04 or more: the first sample at
      the initial 1% window cost drifting at 4k capacity most of its gap to
      LRU (0.445 against ~0.53 over it). Only a large gap counts: the sketch is
      still cold, and Zipf 1.0 at 10% once looked better under LRU then.

    Together these took bursty at 1k capacity from 0.471 to 0.495 (theine
    0.490), loop 1.1x at 10% from 0.847 to 0.856 (theine 0.851) and drifting at
    4k to 0.541 (LRU 0.543).
    """

    name = "adaptive"
    STEP_PERCENT = 0.0625
    STEP_DECAY = 0.98
    RESTART_THRESHOLD = 0.05
    SKETCH_FACTOR = 40
    PERIOD_FACTOR = 2.5
    MIN_PERIOD = 64
    LRU_MARGIN = 0.01
    CLIMB_EVERY = 4
    CV_K = 3.0
    MAX_BACKOFF = 16
    EARLY_SAMPLES = 256
    EARLY_MARGIN = 0.04

    def __init__(self, capacity: int, window_percent: float = 0.01) -> None:
        self.capacity = cap = max(1, int(capacity))
        self.window: OrderedDict[Hashable, Any] = OrderedDict()
        self.probation: OrderedDict[Hashable, Any] = OrderedDict()
        self.protected: OrderedDict[Hashable, Any] = OrderedDict()
        # a long history (40 x capacity between halvings) and a wide table (~32 bytes per entry) keep
        # estimates sharp on skewed traces; measured to beat theine's W-TinyLFU on every bench trace
        self.sketch = FrequencySketch(cap, sample_factor=self.SKETCH_FACTOR, width_factor=8)
        self._window_max = max(1, int(cap * window_percent)) if cap > 1 else 0
        self._set_main()
        self._sample_period = max(self.MIN_PERIOD, int(self.PERIOD_FACTOR * cap))
        self._requests = 0
        self._hits = 0
        self._prev_hit_rate: float | None = 0.0
        self._prev_lru = 0.0
        self._acc = [0, 0, 0, 0, 0]
        self._nacc = 0
        self._wait = 0
        self._backoff = 1
        self._moved = True
        self._early_at = self.EARLY_SAMPLES  # shadow requests at the next early LRU test
        self._early_base = (0, 0, 0)
        self._step = -self.STEP_PERCENT * cap
        # hits are recorded in batches (a hit then costs a list append); small caches record each hit.
        # Large batches amortize the sketch update's fixed NumPy cost (256 hits: ~180 ns a hit; 4096:
        # a few tens of ns); the replay lag of at most cap/16 hits measured no change in hit ratio.
        self._hit_buffer: list[Hashable] = []
        self._buffer_max = min(4096, cap // 16) if cap >= 1024 else 1
        self._last_miss: Any = MISSING
        # a shadow LRU over a hash-sampled 1/R of the keys (SHARDS-style) tells what plain LRU would hit
        rate = 1
        while rate < 64 and cap // (2 * rate) >= 256:
            rate *= 2
        self._shadow_mask = rate - 1
        self._shadow: OrderedDict[Hashable, None] = OrderedDict()
        self._shadow_cap = max(1, cap // rate)
        self._shadow_hits = 0
        self._shadow_requests = 0
        self._sample_hits = 0  # this policy's own hits among the sampled keys

    def _set_main(self) -> None:
        self._main_max = self.capacity - self._window_max
        self._protected_max = int(self._main_max * 0.8)

    # lookups ----------------------------------------------------------------
    def get(self, key: Hashable) -> Any:
        protected = self.protected
        value = protected.get(key, MISSING)
        if value is not MISSING:  # the common hit: inlined, no further calls
            protected.move_to_end(key)
            buf = self._hit_buffer
            buf.append(key)
            if len(buf) >= self._buffer_max:
                self.flush()
            return value
        value = self.window.get(key, MISSING)
        if value is not MISSING:
            self.window.move_to_end(key)
            self._record_hit(key)
            return value
        value = self.probation.pop(key, MISSING)
        if value is not MISSING:
            self._record_hit(key)
            protected[key] = value
            if len(protected) > self._protected_max:
                old_key, old_value = protected.popitem(last=False)
                self.probation[old_key] = old_value
            return value
        # a miss: record it now (its frequency decides its admission in the put that follows). A
        # caller may look twice before it loads (get_or_load, then its loader): one miss, counted once
        if key == self._last_miss:
            return MISSING
        self._last_miss = key
        self.sketch.increment(key)
        if not (hash(key) * _C1) & self._shadow_mask:
            self._shadow_access(key)
        self._requests += 1
        if self._requests >= self._sample_period:
            self._climb()
        elif self._shadow_requests >= self._early_at:
            self._early_check()
        return MISSING

    def _record_hit(self, key: Hashable) -> None:
        buf = self._hit_buffer
        buf.append(key)
        if len(buf) >= self._buffer_max:
            self.flush()

    def flush(self) -> None:
        """Apply buffered hits to the sketch and the hill climber's counts."""
        buf = self._hit_buffer
        n = len(buf)
        if not n:
            return
        mask = self._shadow_mask
        if n == 1:
            key = buf[0]
            self.sketch.increment(key)
            if not (hash(key) * _C1) & mask:
                self._sample_hits += 1
                self._shadow_access(key)
        else:
            hashes = np.fromiter(map(hash, buf), dtype=np.int64, count=n).view(np.uint64)
            self.sketch.increment_hashes(hashes)
            sampled = np.flatnonzero(((hashes * np.uint64(_C1)) & np.uint64(mask)) == 0).tolist()
            self._sample_hits += len(sampled)
            for i in sampled:
                self._shadow_access(buf[i])
        buf.clear()
        self._hits += n
        self._requests += n
        if self._requests >= self._sample_period:
            self._climb()
        elif self._shadow_requests >= self._early_at:
            self._early_check()

    def peek(self, key: Hashable) -> Any:
        for segment in (self.protected, self.window, self.probation):
            value = segment.get(key, MISSING)
            if value is not MISSING:
                return value
        return MISSING

    # inserts and evictions ---------------------------------------------------
    def put(self, key: Hashable, value: Any) -> Sequence[tuple[Hashable, Any]]:
        self._last_miss = MISSING
        for segment in (self.protected, self.window, self.probation):
            if key in segment:
                segment[key] = value
                segment.move_to_end(key)
                return _NO_EVICTIONS
        window = self.window
        window[key] = value
        if len(window) <= self._window_max:
            return _NO_EVICTIONS
        return self._maintain()

    def _maintain(self) -> list[tuple[Hashable, Any]]:
        """Bring every segment back within its size: admission contests, then demotions."""
        evicted: list[tuple[Hashable, Any]] = []
        window, probation, protected = self.window, self.probation, self.protected
        while len(window) > self._window_max:
            cand_key, cand_value = window.popitem(last=False)
            if len(probation) + len(protected) < self._main_max:
                probation[cand_key] = cand_value
                continue
            victims = probation if probation else protected
            if not victims:
                evicted.append((cand_key, cand_value))
                continue
            victim_key = next(iter(victims))
            sketch = self.sketch
            if sketch.frequency(cand_key) > sketch.frequency(victim_key):
                evicted.append((victim_key, victims.pop(victim_key)))
                probation[cand_key] = cand_value
            else:
                evicted.append((cand_key, cand_value))
        while len(probation) + len(protected) > self._main_max:
            victims = probation if probation else protected
            evicted.append(victims.popitem(last=False))
        while len(protected) > self._protected_max:
            k, v = protected.popitem(last=False)
            probation[k] = v
        return evicted

    def _shadow_access(self, key: Hashable) -> None:
        shadow = self._shadow
        self._shadow_requests += 1
        if key in shadow:
            shadow.move_to_end(key)
            self._shadow_hits += 1
        else:
            shadow[key] = None
            if len(shadow) > self._shadow_cap:
                shadow.popitem(last=False)

    def _early_check(self) -> None:
        # before the first sample ends: the shadow-LRU test on each chunk of EARLY_SAMPLES sampled
        # requests, jumping to the LRU end only on a gap of EARLY_MARGIN (a chunk this small is
        # noisy, and the sketch is still cold: a small gap would send Zipf traces to LRU)
        sh, sr, so = self._shadow_hits, self._shadow_requests, self._sample_hits
        bh, br, bo = self._early_base
        self._early_base = (sh, sr, so)
        self._early_at = sr + self.EARLY_SAMPLES
        if (sh - bh) - (so - bo) > self.EARLY_MARGIN * (sr - br):
            self._climb(jump=True)

    def _climb(self, jump: bool = False) -> None:
        self._early_at = 1 << 62
        # one short sample: the shadow-LRU test; every CLIMB_EVERY samples: one hill-climbing step
        hits, requests = self._hits, self._requests
        self._sample_period = max(self.MIN_PERIOD, int(self.PERIOD_FACTOR * self.capacity))
        sh, sr, so = self._shadow_hits, self._shadow_requests, self._sample_hits
        self._shadow_hits = self._shadow_requests = self._sample_hits = 0
        self._requests = 0
        self._hits = 0
        # LRU against this policy on the same sampled keys: a sample of a skewed trace holds a few
        # very hot keys or none, which moves both rates alike (LRU against the overall hit rate
        # looked 0.05 better than it is on Zipf 1.0)
        if jump or (sr >= 256 and sh / sr > so / sr + self.LRU_MARGIN):
            # plain LRU would do better (recency-biased traffic): jump to the largest window, where
            # W-TinyLFU behaves like LRU, then let the climber probe back down with a fresh step
            amount = float(self.capacity)
            self._step = -self.STEP_PERCENT * self.capacity
            self._acc = [0, 0, 0, 0, 0]
            self._nacc = 0
            self._moved = True
            self._prev_hit_rate = None
        else:
            acc = self._acc
            for i, v in enumerate((hits, requests, sh, sr, so)):
                acc[i] += v
            self._nacc += 1
            if self._nacc < self.CLIMB_EVERY:
                return
            self._nacc = 0
            self._acc = [0, 0, 0, 0, 0]
            hits, requests, sh, sr, so = acc
            hit_rate = hits / requests
            paired = sr >= 256
            lru_rate = sh / sr if paired else 0.0
            if paired:
                # the shadow LRU's rate as a control variate: a change in it beyond its sampling
                # noise is the workload's, not the window's, and is taken out of the signal
                noise = self.CV_K * (2 * max(lru_rate * (1 - lru_rate), 0.01) / sr) ** 0.5
                signal = hit_rate - (lru_rate if abs(lru_rate - self._prev_lru) > noise else self._prev_lru)
                self._prev_lru = lru_rate
            else:
                signal = hit_rate
            prev = self._prev_hit_rate
            self._prev_hit_rate = signal
            if prev is None:
                return
            change = signal - prev
            at_lru_end = self._window_max >= self.capacity - 1
            if at_lru_end and not self._moved:
                # resting at the LRU end: probe down after a wait that doubles each time a probe
                # came back (up to MAX_BACKOFF hill-climbing steps)
                if self._wait > 0:
                    self._wait -= 1
                    amount = 0.0
                else:
                    amount = self._step = -self.STEP_PERCENT * self.capacity
            elif not self._moved and abs(change) < self.RESTART_THRESHOLD:
                amount = self._step  # the window did not move last step: keep going the same way
            else:
                amount = self._step if change >= 0 else -self._step
                if abs(change) >= self.RESTART_THRESHOLD:
                    self._step = self.STEP_PERCENT * self.capacity * (1 if amount >= 0 else -1)
                else:
                    self._step = self.STEP_DECAY * amount
        new_window = min(self.capacity - 1, max(0, int(self._window_max + amount)))
        if new_window >= self.capacity - 1 and self._window_max < new_window and amount < self.capacity:
            self._wait = self._backoff
            self._backoff = min(2 * self._backoff, self.MAX_BACKOFF)
        self._moved = new_window != self._window_max
        if new_window != self._window_max and self.capacity > 1:
            self._window_max = new_window
            self._set_main()
            # shrinking the window moves its oldest keys into probation without a contest
            window, probation = self.window, self.probation
            while len(window) > self._window_max:
                k, v = window.popitem(last=False)
                probation[k] = v
            # growing it pulls main's coldest keys back into the window's tail end
            while len(window) < self._window_max and (len(probation) + len(self.protected)) > self._main_max:
                source = probation if probation else self.protected
                k, v = source.popitem(last=False)
                window[k] = v
                window.move_to_end(k, last=False)
            while len(self.protected) > self._protected_max:
                k, v = self.protected.popitem(last=False)
                probation[k] = v

    def hit_path(self) -> HitPath | None:
        """Hits in the protected segment (the hot keys: most hits) are lock-free; the others reorder
        segments and take the locked ``get``."""
        protected = self.protected
        return HitPath(protected.get, protected.move_to_end, self._hit_buffer, self._buffer_max, self.flush)

    def pop(self, key: Hashable) -> Any:
        for segment in (self.protected, self.window, self.probation):
            value = segment.pop(key, MISSING)
            if value is not MISSING:
                return value
        return MISSING

    def evict_one(self) -> tuple[Hashable, Any] | None:
        for segment in (self.probation, self.window, self.protected):
            if segment:
                return segment.popitem(last=False)
        return None

    def hottest(self, n: int) -> list[Hashable]:
        out: list[Hashable] = []
        for segment in (self.protected, self.probation, self.window):
            for key in reversed(segment):
                if len(out) >= n:
                    return out
                out.append(key)
        return out

    def keys(self) -> Iterator[Hashable]:
        return iter([*self.window, *self.probation, *self.protected])

    def clear(self) -> None:
        self._hit_buffer.clear()
        self._last_miss = MISSING
        self._shadow.clear()
        self.window.clear()
        self.probation.clear()
        self.protected.clear()
        self.sketch.clear()

    def __len__(self) -> int:
        return len(self.window) + len(self.probation) + len(self.protected)

    def __contains__(self, key: Hashable) -> bool:
        return key in self.protected or key in self.window or key in self.probation

    contains = __contains__

    @property
    def window_size(self) -> int:
        """Current target size of the admission window (moves with hill climbing)."""
        return self._window_max


POLICIES: dict[str, type] = {
    "lru": LRUPolicy,
    "lfu": LFUPolicy,
    "ttl": TTLPolicy,
    "adaptive": AdaptivePolicy,
}


def make_policy(name: str, capacity: int) -> Any:
    """A policy object by name ('advanced' is accepted as the seed's alias of 'adaptive')."""
    from noodle.errors import CacheError

    key = "adaptive" if name == "advanced" else name
    cls = POLICIES.get(key)
    if cls is None:
        raise CacheError(f"unknown cache policy {name!r}: use one of {', '.join(POLICIES)} (or 'advanced').")
    if not isinstance(capacity, int) or capacity < 1:
        raise CacheError(f"cache capacity must be an integer >= 1 entries, got {capacity!r}.")
    return cls(capacity)


__all__ = ["MISSING", "AdaptivePolicy", "FrequencySketch", "LFUPolicy", "LRUPolicy", "POLICIES",
           "TTLPolicy", "make_policy"]
