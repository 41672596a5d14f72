"""``noodle bench cache``: the cache and the math-object store against their baselines, same run.

Rows (speedup = baseline time / noodle time; > 1 means noodle is faster):

- get-hit, 100k resident keys: CacheManager.get (lru, adaptive, lfu, ttl) vs cachetools'
  ``LRUCache.get`` (the same call shape), and lru/adaptive also vs ``LRUCache[key]`` (its cheapest
  hit, no default); dict and functools.lru_cache as references. Target: >= 1.0x cachetools.
- set (with evictions): CacheManager (lru, lfu, adaptive) vs cachetools, every set into a full cache
  of a key it does not hold (so each one evicts). Target (lru): within 1.5x of cachetools.
- Redis-tier get: CacheManager with the local tier off vs a raw redis-py GET of the same
  bytes. Target: >= 0.8x (at most 25% overhead).
- repeated MathStore.query: cached ('lru', and 'lru_dist' over Redis) vs the database
  ('none'). Target: >= 20x.
- content hashing for memoize: xxh3 over an array, reported as seconds per GB.
- hit ratios, lru/lfu/adaptive measured through a real CacheManager (what users get): the
  frequency-biased Zipf 0.8 / Zipf 1.0 / scan-polluted traces and the loop at 1% and 10% capacity
  (2M accesses over 1M keys; --quick: 200k over 100k), and the recency-biased ones (a working set
  shifting through five Zipf 0.9 phases, bursts of fresh keys, a drifting hot set; 500k accesses),
  with theine's W-TinyLFU as the baseline and Belady's optimum as the ceiling. Target: adaptive >=
  best of LRU, LFU and theine on every trace (within 0.002). The row's times are the replay times
  of adaptive (through the manager) and theine.

Timings are noisy on a shared machine: compare ratios from one run.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time

import numpy as np

from noodle.benchtools import Row, Timing, per_unit, time_pair

TITLE = "noodle bench cache (same-run baselines)"


def _per_op(row: Row, ops: int) -> Row:
    return per_unit(row, ops, "ops_per_call", "candidate_ns", "baseline_ns", 1e9, 1)


def _local_rows(quick: bool) -> list[Row]:
    import cachetools

    from noodle.cache import CacheManager

    nkeys = 20_000 if quick else 100_000
    keys = [f"key{i}" for i in range(nkeys)]
    rng = np.random.default_rng(0)
    probe = [keys[i] for i in rng.integers(0, nkeys, 1000)]
    ct = cachetools.LRUCache(maxsize=2 * nkeys)
    for k in keys:
        ct[k] = k

    ct_get = ct.get

    def cachetools_hits() -> None:  # the same call shape as CacheManager.get(key)
        for k in probe:
            ct_get(k)

    def cachetools_subscript() -> None:  # cachetools' cheapest hit: ct[key] (raises on a miss)
        for k in probe:
            ct[k]

    ttl_cache = cachetools.TTLCache(maxsize=2 * nkeys, ttl=3600)
    for k in keys:
        ttl_cache[k] = k
    ttl_get = ttl_cache.get

    def cachetools_ttl_hits() -> None:
        for k in probe:
            ttl_get(k)

    rows = []
    min_time = 0.1 if quick else 0.5
    for policy in ("lru", "adaptive", "lfu", "ttl"):
        # Like for like: cachetools' LRUCache has no expiry, so the lru/adaptive/lfu entries have none
        # either; the ttl policy (every entry expires) is compared with cachetools' TTLCache.
        ttl = 3600 if policy == "ttl" else None
        mgr = CacheManager(policy=policy, max_entries=2 * nkeys, ttl=ttl, redis_url=None, snapshot=False)
        for k in keys:
            mgr.set(k, k)
        get = mgr.get

        def noodle_hits(get=get) -> None:
            for k in probe:
                get(k)

        if policy == "ttl":
            a, b = time_pair(noodle_hits, cachetools_ttl_hits, min_time=min_time)
            rows.append(_per_op(Row("cache", f"get-hit {nkeys // 1000}k keys", "noodle ttl",
                                    "cachetools TTLCache.get", a, b), len(probe)))
        a, b = time_pair(noodle_hits, cachetools_hits, min_time=min_time)
        rows.append(_per_op(Row("cache", f"get-hit {nkeys // 1000}k keys", f"noodle {policy}",
                                "cachetools LRUCache.get", a, b), len(probe)))
        if policy in ("lru", "adaptive"):
            a, b = time_pair(noodle_hits, cachetools_subscript, min_time=min_time)
            rows.append(_per_op(Row("cache", f"get-hit {nkeys // 1000}k keys", f"noodle {policy}",
                                    "cachetools LRUCache[key]", a, b), len(probe)))
    d = dict.fromkeys(keys, 1)

    def dict_hits() -> None:
        for k in probe:
            d[k]

    cached = functools.lru_cache(maxsize=2 * nkeys)(lambda k: k)
    for k in keys:
        cached(k)

    def lru_cache_hits() -> None:
        for k in probe:
            cached(k)

    for name, fn in (("dict", dict_hits), ("functools.lru_cache", lru_cache_hits)):
        a, b = time_pair(fn, cachetools_hits, min_time=min_time)
        rows.append(_per_op(Row("cache", f"get-hit {nkeys // 1000}k keys (reference)", name,
                                "cachetools LRUCache.get", a, b), len(probe)))
    # set with evictions: a full cache of 10k entries fed keys it does not hold (each call sets the next
    # 1000 of a 40k-key ring, so every set evicts one entry), for noodle and cachetools alike
    small = 10_000
    ring = [f"key{i}" for i in range(4 * small)]
    for policy in ("lru", "lfu", "adaptive"):
        mgr = CacheManager(policy=policy, max_entries=small, ttl=3600, redis_url=None, snapshot=False)
        ct2 = cachetools.LRUCache(maxsize=small)
        for k in ring[:small]:
            mgr.set(k, 1)
            ct2[k] = 1
        pos = [small, small]

        def noodle_sets(mgr=mgr, pos=pos) -> None:
            i = pos[0]
            pos[0] = (i + 1000) % (4 * small)
            s = mgr.set
            for k in ring[i:i + 1000]:
                s(k, 1)

        def cachetools_sets(ct2=ct2, pos=pos) -> None:
            i = pos[1]
            pos[1] = (i + 1000) % (4 * small)
            for k in ring[i:i + 1000]:
                ct2[k] = 1

        a, b = time_pair(noodle_sets, cachetools_sets, min_time=min_time)
        rows.append(_per_op(Row("cache", "set (with evictions)", f"noodle {policy}", "cachetools LRUCache",
                                a, b), 1000))
    return rows


_own_redis: list[str] = []


def _redis_url() -> str | None:
    """A Redis to measure against: the configured one, or a private loopback server started here.

    Without any, the Redis rows would silently vanish from the table; with redis-server on the
    PATH (`make test` installs it), the suite starts one on a free port and stops it at exit.
    """
    from noodle.config import get_settings

    url = os.environ.get("NOODLE_TEST_REDIS_URL") or get_settings().redis_url
    if url or _own_redis:
        return url or _own_redis[0]
    import atexit
    import shutil
    import socket
    import subprocess

    binary = shutil.which("redis-server")
    if binary is None:
        print("bench cache: no Redis configured (NOODLE_REDIS_URL) and no redis-server on PATH: "
              "skipping the Redis-tier rows")
        return None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(proc.terminate)
    import redis

    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    _own_redis.append(url)
    return url


def _redis_rows(quick: bool) -> list[Row]:
    url = _redis_url()
    if not url:
        return []
    import redis

    from noodle.cache import CacheManager

    ns = f"bench{os.getpid()}"
    mgr = CacheManager(policy="lru", redis_url=url, namespace=ns, local_tier=False, snapshot=False)
    raw = redis.Redis.from_url(url)
    rows = []
    for label, value in (("small value", {"x": 1, "name": "weights"}), ("8 KB array", np.ones(1024))):
        mgr.set("bench-key", value, ttl=600)
        rkey = f"noodle:{ns}:bench-key"
        a, b = time_pair(lambda: mgr.get("bench-key"), lambda rkey=rkey: raw.get(rkey),
                         min_time=0.2 if quick else 1.0)
        row = Row("cache", f"Redis-tier get, {label}", "CacheManager (local off)", "raw redis-py GET", a, b)
        row.extra["overhead_pct"] = round((a.min / b.min - 1) * 100, 1)
        rows.append(row)
    mgr.clear()
    mgr.close()
    return rows


def _store_rows(quick: bool) -> list[Row]:
    """A repeated cached query against the same SQL through the store uncached, on SQLite and, where a
    server is configured (``NOODLE_TEST_PG_URL``, as ``make test`` sets), on PostgreSQL."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += _store_backend_rows(f"sqlite:///{tmp}/bench.db", "SQLite", "?", quick)
    pg_url = os.environ.get("NOODLE_TEST_PG_URL")
    if pg_url:
        rows += _store_backend_rows(pg_url, "PostgreSQL", "%s", quick)
    return rows


def _store_backend_rows(url: str, label: str, ph: str, quick: bool) -> list[Row]:
    from noodle.store import MathStore

    rows = []
    table = f"bench_objects_{os.getpid()}"
    store = MathStore(url, table=table, redis_url=_redis_url(), namespace=f"benchstore{os.getpid()}")
    try:
        n = 200 if quick else 2000
        for i in range(n):
            store.put(f"obj{i}", np.full(16, i, dtype=np.float64), {"group": i % 10, "i": i})
        sql = (f"SELECT metadata, COUNT(*), SUM(LENGTH(data)) FROM {table} "
               f"WHERE name LIKE {ph} GROUP BY metadata ORDER BY metadata LIMIT 50")
        params = ("obj1%",)
        strategies = ["lru"] + (["lru_dist"] if store.cache.distributed else [])
        for strategy in strategies:
            store.query(sql, params, cache_strategy=strategy)
            a, b = time_pair(lambda s=strategy: store.query(sql, params, cache_strategy=s),
                             lambda: store.query(sql, params, cache_strategy="none"),
                             min_time=0.2 if quick else 0.5)
            rows.append(Row("cache", f"repeated MathStore.query ({n} objects)", f"cached '{strategy}'",
                            f"{label} ('none')", a, b))
    finally:
        if label == "PostgreSQL":
            store.execute(f"DROP TABLE IF EXISTS {table}")
        store.close()
    return rows


def _hash_rows(quick: bool) -> list[Row]:
    import hashlib

    from noodle.cache import content_key

    arr = np.random.default_rng(0).random((16 if quick else 64) * 2**20 // 8)
    a, b = time_pair(lambda: content_key("f", (arr,), {}), lambda: hashlib.sha256(arr).digest(),
                     min_time=0.2, max_runs=20)
    row = Row("cache", f"memoize key, {arr.nbytes >> 20} MB array", "xxh3-128 content key", "sha256", a, b)
    row.extra["seconds_per_gb"] = round(a.min / (arr.nbytes / 1e9), 4)
    return [row]


def _ratios(trace: np.ndarray, cap: int) -> tuple[dict[str, float], float, float]:
    """Hit ratios of one trace: lru/lfu/adaptive through a real CacheManager (what users get), theine and
    the optimum; with the replay times of adaptive and theine."""
    from noodle.cache import simulate as sim

    ratios = {p: sim.manager_hit_ratio(p, trace, cap) for p in ("lru", "lfu")}
    t0 = time.perf_counter()
    ratios["adaptive"] = sim.manager_hit_ratio("adaptive", trace, cap)
    t_adaptive = time.perf_counter() - t0
    t0 = time.perf_counter()
    ratios["theine"] = sim.theine_hit_ratio(trace, cap)
    t_theine = time.perf_counter() - t0
    ratios["optimum"] = sim.belady_hit_ratio(trace, cap)
    return ratios, t_adaptive, t_theine


def _hit_ratio_rows(quick: bool) -> list[Row]:
    from noodle.cache import simulate as sim

    keys = 100_000 if quick else 1_000_000
    n = 200_000 if quick else 2_000_000
    rng = np.random.default_rng(42)
    cases: list[tuple[str, str, np.ndarray, int]] = []
    for frac in (0.01, 0.10):
        cap = int(keys * frac)
        at = f"@{int(frac * 100)}%"
        cases += [("frequency", f"Zipf 0.8 {at}", sim.zipf_trace(n, keys, 0.8, rng), cap),
                  ("frequency", f"Zipf 1.0 {at}", sim.zipf_trace(n, keys, 1.0, rng), cap),
                  ("frequency", f"scan-polluted {at}", sim.scan_polluted_trace(n, keys, cap, rng), cap),
                  ("loop", f"loop 1.1x {at}", sim.loop_trace(n, cap), cap)]
    # recency-biased: capacities small enough that each trace spans >= 100 x capacity accesses
    rn = 200_000 if quick else 500_000
    cases += [("recency", "shifting 5x Zipf 0.9/20k, cap 4k", sim.shifting_trace(rn, 20_000, 5, 0.9, rng), 4000)]
    for cap in (1000, 4000) if not quick else (1000,):
        cases += [("recency", f"bursty cap {cap // 1000}k", sim.bursty_trace(rn, 100_000, cap, rng), cap),
                  ("recency", f"drifting hot set cap {cap // 1000}k", sim.drifting_trace(rn, cap, rng), cap)]
    rows = []
    for family, name, trace, cap in cases:
        ratios, t_adaptive, t_theine = _ratios(trace, cap)
        best = max(ratios["lru"], ratios["lfu"], ratios["theine"])
        row = Row("cache", f"hit ratio {name}", "adaptive (replay time)", "theine W-TinyLFU",
                  Timing(t_adaptive, t_adaptive, 1), Timing(t_theine, t_theine, 1))
        row.extra.update({k: round(v, 4) for k, v in ratios.items()})
        row.extra.update(best_baseline=round(best, 4), adaptive_ge_best=ratios["adaptive"] >= best - 0.002,
                         family=family, accesses=len(trace), capacity=cap)
        rows.append(row)
    return rows


def run(quick: bool) -> list[Row]:
    """Every row of the cache suite (hit-ratio replays last: they take the longest)."""
    return (_local_rows(quick) + _redis_rows(quick) + _store_rows(quick) + _hash_rows(quick)
            + _hit_ratio_rows(quick))


def notes(rows: list[Row]) -> list[str]:
    """The per-op figures the timing table does not show, then the hit-ratio table."""
    out = []
    for r in rows:
        if "candidate_ns" in r.extra:
            out.append(f"  {r.case} {r.candidate}: {r.extra['candidate_ns']} ns/op vs {r.baseline} "
                       f"{r.extra['baseline_ns']} ns/op")
        elif "overhead_pct" in r.extra:
            out.append(f"  {r.case}: overhead over raw redis-py {r.extra['overhead_pct']}% (target <= 25%)")
        elif "seconds_per_gb" in r.extra:
            out.append(f"  {r.case}: {r.extra['seconds_per_gb']} s per GB hashed")
    out.append("hit ratios through a real CacheManager (lru / lfu / theine / adaptive / optimum; "
               "adaptive >= best baseline?):")
    for r in rows:
        if r.case.startswith("hit ratio"):
            e = r.extra
            out.append(f"  {r.case:44s} {e['lru']:.3f} / {e['lfu']:.3f} / {e['theine']:.3f} / "
                       f"{e['adaptive']:.3f} / {e['optimum']:.3f}  {'yes' if e['adaptive_ge_best'] else 'NO'}")

    def check(label: str, ok: bool, detail: str) -> None:
        out.append(f"[{'PASS' if ok else 'FAIL'}] {label}: {detail}")

    for r in rows:
        if r.case == "set (with evictions)" and r.candidate == "noodle lru":
            check("set with evictions within 1.5x of cachetools", r.ratio >= 1 / 1.5,
                  f"{r.extra['candidate_ns']} vs {r.extra['baseline_ns']} ns/op ({r.ratio:.2f}x)")
        elif r.case.startswith("get-hit") and r.candidate == "noodle lfu":
            check("LFU get-hit within 1.5x of cachetools", r.ratio >= 1 / 1.5,
                  f"{r.extra['candidate_ns']} vs {r.extra['baseline_ns']} ns/op ({r.ratio:.2f}x)")
        elif r.case.startswith("hit ratio"):
            e = r.extra
            check(f"adaptive >= best of lru/lfu/theine, {r.case[10:]} ({e['family']})", e["adaptive_ge_best"],
                  f"{e['adaptive']:.3f} vs {e['best_baseline']:.3f}")
    return out
