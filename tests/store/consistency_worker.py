"""One side of the two-process consistency test: ``python consistency_worker.py writer|reader CONFIG_JSON``.

Why a script and not a fixture: the writer and the reader must be separate
processes (another connection, another cache, another Python), as in
production. The writer commits ``UPDATE counter SET v = v + 1`` in turn through
a MathStore, a second MathStore and a raw driver connection. The reader, in a
loop bounded in count and time, reads the counter directly from the database
(the oracle: every write it sees is committed) and then asks its MathStore's
cached ``query()``, through every query form; a result below the oracle's
value is a stale cached result, recorded with the time its query began; the
writer records when each write began, so the test can tell how long after a
commit a stale result was served (PostgreSQL allows ``max_staleness``). Each
prints one JSON line of figures.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def _raw(url: str) -> Any:
    if url.startswith("postgresql://"):
        import psycopg

        return psycopg.connect(url, autocommit=True)
    import sqlite3

    return sqlite3.connect(url[len("sqlite:///"):], isolation_level=None, timeout=10)


def _store(cfg: dict[str, Any]) -> Any:
    from noodle.store import MathStore

    return MathStore(cfg["url"], table=cfg["objects"], redis_url=cfg["redis_url"], namespace=cfg["namespace"],
                     max_staleness=cfg.get("max_staleness", 0.05))


def writer(cfg: dict[str, Any]) -> dict[str, Any]:
    """Commit counter increments through three kinds of writer; then leave the stop file."""
    first, second, raw = _store(cfg), _store(cfg), _raw(cfg["url"])
    update = f"UPDATE {cfg['counter']} SET v = v + 1 WHERE id = 1"
    deadline = time.monotonic() + cfg["seconds"]
    writes = 0
    began: list[float] = []  # began[i]: wall time before write i, which makes the counter i + 1
    try:
        while writes < cfg["max_writes"] and time.monotonic() < deadline:
            began.append(time.time())
            mode = writes % 3
            if mode == 0:
                first.execute(update)
            elif mode == 1:
                second.execute(update)
            else:
                raw.execute(update)
            writes += 1
            if cfg["redis_url"]:  # fill the shared tier, so the reader is also served from Redis
                first.query(cfg["forms"][writes % len(cfg["forms"])])
            time.sleep(cfg["pause"])
    finally:
        Path(cfg["stop_file"]).write_text(str(writes))
        first.close()
        second.close()
        raw.close()
    return {"writes": writes, "began": began}


def reader(cfg: dict[str, Any]) -> dict[str, Any]:
    """Cached queries against the oracle until the writer stops (bounded in count and time)."""
    store, raw = _store(cfg), _raw(cfg["url"])
    oracle_sql = f"SELECT v FROM {cfg['counter']} WHERE id = 1"
    stop = Path(cfg["stop_file"])
    deadline = time.monotonic() + cfg["seconds"] + 10
    queries = 0
    stale: list[tuple[int, float]] = []  # (value served, wall time its query began)
    try:
        for i in range(cfg["max_queries"]):
            if time.monotonic() > deadline or (i % 16 == 0 and stop.exists()):
                break
            sql = cfg["forms"][i % len(cfg["forms"])]
            committed = raw.execute(oracle_sql).fetchone()[0]
            asked = time.time()
            got = store.query(sql)[0][0]
            queries += 1
            if got < committed:
                stale.append((got, asked))
        final = raw.execute(oracle_sql).fetchone()[0]
        last = [store.query(sql)[0][0] for sql in cfg["forms"]]
        redis_hits = store.cache.stats()["redis_hits"]
        return {"queries": queries, "stale": stale, "served_from_cache": store.served_from_cache,
                "redis_hits": redis_hits, "final_stale": sum(v != final for v in last)}
    finally:
        store.close()
        raw.close()


if __name__ == "__main__":
    role, config = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps((writer if role == "writer" else reader)(config)))
