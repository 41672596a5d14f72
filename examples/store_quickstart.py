"""MathStore: named arrays in SQLite (or PostgreSQL by URL) with cached, table-invalidated queries.

Run: python examples/store_quickstart.py
"""

import tempfile

import numpy as np

import noodle as nd


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        with nd.store.MathStore(f"sqlite:///{tmp}/objects.db", redis_url=None) as store:
            store.put("identity", np.eye(3), {"kind": "matrix"})
            store.put("ramp", np.arange(5.0), {"kind": "vector"})
            print(store.list(), store.get("identity").metadata)
            sql = "SELECT name, metadata FROM noodle_objects ORDER BY name"
            print(store.query(sql, cache_strategy="lru"))  # from SQLite, then cached
            print(store.query(sql, cache_strategy="lru"))  # from the cache
            store.delete("ramp")  # commits, then invalidates queries that read noodle_objects
            print(store.query(sql, cache_strategy="lru"))


if __name__ == "__main__":
    main()
