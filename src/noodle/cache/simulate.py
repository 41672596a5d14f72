"""Hit-ratio simulation: synthetic traces, policy replay, theine's W-TinyLFU and Belady's optimum.

Why here and not only in the benchmark: the replay must give the hit ratio
users get. :func:`manager_hit_ratio` drives a real :class:`CacheManager`
(``get``; on a miss, ``set``); :func:`hit_ratio` replays the same trace through
a bare policy with the calls the manager makes (a set pops a resident key
before it puts), a few times faster, and a test holds the two equal.
Traces are generated with NumPy (fast, seeded) and come in two families:
frequency-biased (Zipf, scan-polluted: LFU and TinyLFU win) and
recency-biased (shifting working sets, bursts, a drifting hot set: LRU wins),
plus a loop a little larger than the cache (both lose; only admission helps).
The optimum uses next-use indices from one stable argsort and a lazy max-heap.
"""

from __future__ import annotations

import heapq
from typing import Any

import numpy as np

from noodle.cache.policies import MISSING, make_policy


def zipf_trace(n: int, keys: int, s: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` accesses over ``keys`` keys with Zipf(s) popularity (popular keys spread randomly)."""
    p = 1.0 / np.arange(1, keys + 1, dtype=np.float64) ** s
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    ranks = np.searchsorted(cdf, rng.random(n))
    return rng.permutation(keys)[np.minimum(ranks, keys - 1)]


def scan_polluted_trace(n: int, keys: int, capacity: int, rng: np.random.Generator) -> np.ndarray:
    """Zipf(0.9) interrupted every 8 x capacity accesses by a one-time scan of 2 x capacity new keys."""
    out = zipf_trace(n, keys, 0.9, rng)
    fresh, pos, length, gap = keys, 0, 2 * capacity, 8 * capacity
    while pos + gap + length < n:
        pos += gap
        out[pos:pos + length] = np.arange(fresh, fresh + length)
        fresh += length
        pos += length
    return out


def loop_trace(n: int, capacity: int) -> np.ndarray:
    """A loop over 1.1 x capacity keys: LRU and LFU get nothing, the optimum about 90%."""
    return np.arange(n) % int(capacity * 1.1)


def shifting_trace(n: int, keys: int, phases: int, s: float, rng: np.random.Generator) -> np.ndarray:
    """``phases`` equal phases, each Zipf(s) over its own ``keys`` fresh keys: the working set moves.

    Recency-biased: what was hot in the last phase is dead in this one, so
    frequency remembered from before the shift is worth nothing.
    """
    per = n // phases
    parts = [zipf_trace(per, keys, s, rng) + p * keys for p in range(phases)]
    parts.append(zipf_trace(n - per * phases, keys, s, rng) + (phases - 1) * keys)
    return np.concatenate(parts)


def bursty_trace(n: int, keys: int, capacity: int, rng: np.random.Generator) -> np.ndarray:
    """Zipf(0.9) background where every 6 x capacity accesses a burst of 2 x capacity accesses goes
    to ``capacity // 4`` fresh keys (each read ~8 times, then never again): bursts reward recency."""
    out = zipf_trace(n, keys, 0.9, rng)
    fresh, pos, size, length, gap = keys, 0, max(1, capacity // 4), 2 * capacity, 6 * capacity
    while pos + gap + length < n:
        pos += gap
        out[pos:pos + length] = fresh + rng.integers(0, size, length)
        fresh += size
        pos += length
    return out


def drifting_trace(n: int, capacity: int, rng: np.random.Generator) -> np.ndarray:
    """A hot set that keeps moving: a new key is born every 4 accesses and accesses favour young
    keys (age Zipf 1.0 over 8 x capacity births): the most recent keys are the hottest."""
    span = 8 * capacity
    p = 1.0 / np.arange(1, span + 1, dtype=np.float64)
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    age = np.searchsorted(cdf, rng.random(n))
    born = np.arange(n) // 4 + span
    return born - np.minimum(age, span - 1)


def hit_ratio(policy_name: str, trace: np.ndarray, capacity: int) -> float:
    """Replay ``trace`` through a fresh policy making the calls a CacheManager makes.

    A manager's miss calls ``get`` once (the lock-free lookup, then the policy
    under the lock) and its ``set`` pops a resident key before ``put``; hits in the policy's
    :class:`~noodle.cache.policies.HitPath` are applied as the manager's
    lock-free path applies them. Equal to :func:`manager_hit_ratio` (tested).
    """
    policy = make_policy(policy_name, capacity)
    get, put, pop = policy.get, policy.put, policy.pop
    path = policy.hit_path()
    if path is None:
        lookup, touch, buffer, buffer_max, flush = (lambda k, d: d), None, None, 0, None
    else:
        lookup, touch, buffer, buffer_max, flush = path
    hits = 0
    for key in trace.tolist():
        if lookup(key, MISSING) is not MISSING:
            if touch is not None:
                touch(key)
            if buffer is not None:
                buffer.append(key)
                if len(buffer) >= buffer_max:
                    flush()  # type: ignore[misc]
            hits += 1
        elif get(key) is not MISSING:
            hits += 1
        else:
            pop(key)
            put(key, True)
    return hits / len(trace)


def manager_hit_ratio(policy_name: str, trace: np.ndarray, capacity: int) -> float:
    """Replay ``trace`` through a real local :class:`~noodle.cache.CacheManager` (get; on a miss, set).

    Why: this is what users get, whatever the manager does around its policy.
    """
    from noodle.cache import CacheManager

    mgr = CacheManager(policy=policy_name, max_entries=capacity, ttl=None, redis_url=None, snapshot=False)
    get, set_ = mgr.get, mgr.set
    hits = 0
    for key in trace.tolist():
        if get(key, MISSING) is MISSING:
            set_(key, True)
        else:
            hits += 1
    mgr.close()
    return hits / len(trace)


def theine_hit_ratio(trace: np.ndarray, capacity: int) -> float:
    """The same replay through theine's W-TinyLFU (the baseline); needs the ``bench`` extra."""
    from theine import Cache

    cache: Any = Cache(capacity, nolock=True)
    get, put = cache.get, cache.set
    hits = 0
    for key in trace.tolist():
        if get(key)[1]:
            hits += 1
        else:
            put(key, True)
    cache.close()
    return hits / len(trace)


def belady_hit_ratio(trace: np.ndarray, capacity: int) -> float:
    """Belady's optimum: on a miss with a full cache, evict the key used furthest in the future."""
    n = len(trace)
    order = np.argsort(trace, kind="stable")
    ordered = trace[order]
    next_sorted = np.empty(n, dtype=np.int64)
    same = ordered[1:] == ordered[:-1]
    next_sorted[:-1] = np.where(same, order[1:], n + np.arange(n - 1))  # never again: beyond the end
    next_sorted[-1] = 2 * n
    next_use = np.empty(n, dtype=np.int64)
    next_use[order] = next_sorted
    resident: dict[int, int] = {}
    heap: list[tuple[int, int]] = []
    hits = 0
    push, pop = heapq.heappush, heapq.heappop
    for key, nxt in zip(trace.tolist(), next_use.tolist()):
        if key in resident:
            hits += 1
        elif len(resident) >= capacity:
            while True:
                neg, victim = pop(heap)
                if resident.get(victim) == -neg:
                    del resident[victim]
                    break
        resident[key] = nxt
        push(heap, (-nxt, key))
    return hits / n


__all__ = ["belady_hit_ratio", "bursty_trace", "drifting_trace", "hit_ratio", "loop_trace",
           "manager_hit_ratio", "scan_polluted_trace", "shifting_trace", "theine_hit_ratio", "zipf_trace"]
