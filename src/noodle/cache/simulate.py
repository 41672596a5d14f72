"""Hit-ratio simulation: synthetic traces, policy replay, theine's W-TinyLFU and Belady's optimum.

Why here and not only in the benchmark: the replay runs the very policy
objects the CacheManager uses, so the hit ratios reported are the ones users
get. Traces are generated with NumPy (fast, seeded); the optimum uses next-use
indices computed with one stable argsort and a lazy max-heap, so a 2M-access
replay takes seconds.
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


def hit_ratio(policy_name: str, trace: np.ndarray, capacity: int) -> float:
    """Replay ``trace`` through a fresh policy (get; on a miss, put)."""
    policy = make_policy(policy_name, capacity)
    get, put = policy.get, policy.put
    hits = 0
    for key in trace.tolist():
        if get(key) is MISSING:
            put(key, True)
        else:
            hits += 1
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


__all__ = ["belady_hit_ratio", "hit_ratio", "loop_trace", "scan_polluted_trace", "theine_hit_ratio",
           "zipf_trace"]
