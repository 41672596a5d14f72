"""Benchmark (not a test): a repeated cached ``MathStore.query`` vs the same SQL run on the database.

Run: ``source .noodle-services/env; .venv/bin/python tests/store/bench_query_hit.py``. Prints, per
backend and query, the median time of a cache hit (its version check included), of the same SQL
through a plain driver connection, and their ratio. The hit path must stay >= 20x faster on the
benchmark's aggregate query (the one ``noodle bench cache`` times).
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from noodle.store import MathStore


def _median(fn: Callable[[], Any], runs: int = 7, inner: int = 200) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def _fill(store: MathStore, n: int) -> None:
    for i in range(n):
        store.put(f"obj{i}", np.full(16, i, dtype=np.float64), {"group": i % 10, "i": i})


def _measure(label: str, store: MathStore, direct: Callable[[str, tuple[Any, ...]], Any],
             queries: list[tuple[str, tuple[Any, ...]]], redis: bool) -> None:
    for sql, params in queries:
        strategies = ["lru"] + (["lru_dist"] if redis else [])
        db = _median(lambda s=sql, p=params: direct(s, p))
        for strategy in strategies:
            assert store.query(sql, params, cache_strategy=strategy) == [tuple(r) for r in direct(sql, params)]
            hit = _median(lambda s=sql, p=params, st=strategy: store.query(s, p, cache_strategy=st))
            print(f"{label:10s} {strategy:8s} hit {hit * 1e6:8.1f} us   database {db * 1e6:8.1f} us   "
                  f"ratio {db / hit:6.1f}x   {sql[:60]}")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    redis_url = os.environ.get("NOODLE_TEST_REDIS_URL")
    table = f"bench_{os.getpid()}"
    agg = (f"SELECT metadata, COUNT(*), SUM(LENGTH(data)) FROM {table} WHERE name LIKE {{p}} "
           f"GROUP BY metadata ORDER BY metadata LIMIT 50")
    point = f"SELECT metadata FROM {table} WHERE name = {{p}}"
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/bench.db"
        store = MathStore(f"sqlite:///{path}", table=table, redis_url=redis_url, namespace=f"bh{os.getpid()}")
        _fill(store, n)
        raw = sqlite3.connect(path, isolation_level=None)
        _measure("sqlite", store, lambda s, p: raw.execute(s, p).fetchall(),
                 [(agg.format(p="?"), ("obj1%",)), (point.format(p="?"), ("obj7",))], redis_url is not None)
        raw.close()
        store.close()
    pg = os.environ.get("NOODLE_TEST_PG_URL")
    if pg:
        import psycopg

        store = MathStore(pg, table=table, redis_url=redis_url, namespace=f"bh{os.getpid()}")
        try:
            _fill(store, n)
            raw = psycopg.connect(pg, autocommit=True)
            _measure("postgresql", store, lambda s, p: raw.execute(s, p).fetchall(),
                     [(agg.format(p="%s"), ("obj1%",)), (point.format(p="%s"), ("obj7",))], redis_url is not None)
            raw.execute(f"DROP TABLE {table}")
            raw.close()
        finally:
            store.close()


if __name__ == "__main__":
    main()
