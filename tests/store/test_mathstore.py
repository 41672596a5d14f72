"""MathStore against real SQLite and PostgreSQL, with the cache in front of queries."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from noodle.errors import ObjectNotFoundError, StoreError
from noodle.store import MathStore, tables_read, tables_written


def ph(store):
    return "?" if store.backend == "sqlite" else "%s"


def test_put_get_list_delete(db_url, table):
    with MathStore(db_url, table=table, redis_url=None) as s:
        a = np.arange(12, dtype=np.float32).reshape(3, 4)
        s.put("a", a, {"unit": "m", "n": 3})
        s.put("b", [1, 2, 3])
        obj = s.get("a")
        assert obj.array.dtype == np.float32 and np.array_equal(obj.array, a)
        assert obj.metadata == {"unit": "m", "n": 3}
        assert s.list() == ["a", "b"]
        s.put("a", np.zeros(2), {})  # overwrite
        assert np.array_equal(s.get("a").array, np.zeros(2))
        assert s.delete("a") and not s.delete("a")
        with pytest.raises(ObjectNotFoundError):
            s.get("a")
        with pytest.raises(StoreError, match="object"):
            s.put("bad", np.array([object()], dtype=object))
        assert s.list() == ["b"]  # the refused put wrote nothing


def test_query_is_cached_and_invalidated_after_commit(db_url, table):
    with MathStore(db_url, table=table, redis_url=None) as s:
        s.put("x", np.ones(3), {"k": 1})
        sql = f"SELECT name, metadata FROM {table} ORDER BY name"
        first = s.query(sql, cache_strategy="lru")
        hits = s.cache.stats()["hits"]
        assert s.query(sql, cache_strategy="lru") == first
        assert s.cache.stats()["hits"] == hits + 1
        s.put("y", np.ones(1))
        assert [r[0] for r in s.query(sql, cache_strategy="lru")] == ["x", "y"]
        s.execute(f"UPDATE {table} SET metadata = {ph(s)} WHERE name = {ph(s)}", ('{"k": 2}', "x"))
        assert s.query(sql, cache_strategy="lru")[0][1] == '{"k": 2}'
        assert [r[0] for r in s.query(sql, cache_strategy="none")] == ["x", "y"]


def test_failed_write_changes_nothing_and_keeps_cache(db_url, table):
    with MathStore(db_url, table=table, redis_url=None) as s:
        s.put("x", np.ones(1))
        sql = f"SELECT name FROM {table}"
        assert s.query(sql) == [("x",)]
        with pytest.raises(StoreError, match="nothing was changed"):
            s.execute(f"INSERT INTO {table} (name) VALUES ({ph(s)})", ("y",))  # NOT NULL columns missing
        assert s.query(sql, cache_strategy="none") == [("x",)]


def test_invalidation_waits_for_commit(tmp_path, table):
    """A reader during a slow write transaction must never cache rows the commit is about to change."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with MathStore(url, table=table, redis_url=None) as s:
        s.put("x", np.ones(1), {"v": 1})
        sql = f"SELECT metadata FROM {table} WHERE name = 'x'"
        assert s.query(sql) == [('{"v": 1}',)]
        s.put("x", np.ones(1), {"v": 2})
        results = []
        threads = [threading.Thread(target=lambda: results.append(s.query(sql))) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [[('{"v": 2}',)]] * 4
        assert s.query(sql) == [('{"v": 2}',)]


def test_write_between_read_and_cache_set_does_not_leave_stale_rows(tmp_path, table):
    """A write that commits (and invalidates) after a query read its rows but before it cached them."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    with MathStore(url, table=table, redis_url=None) as s:
        s.put("x", np.ones(1), {"v": 1})
        sql = f"SELECT metadata FROM {table} WHERE name = 'x'"
        real_set = s.cache.set_local
        writes = []

        def set_after_a_write(*args, **kwargs):
            if not writes:  # the write lands in the window, once
                writes.append(s.put("x", np.ones(1), {"v": 2}))
            return real_set(*args, **kwargs)

        s.cache.set_local = set_after_a_write
        assert s.query(sql, cache_strategy="lru") == [('{"v": 1}',)]  # read before the write
        assert writes
        assert s.query(sql, cache_strategy="lru") == [('{"v": 2}',)]


def test_lru_dist_shares_results_and_invalidations_through_redis(db_url, table, redis_url):
    import uuid

    ns = "st" + uuid.uuid4().hex[:10]
    a = MathStore(db_url, table=table, redis_url=redis_url, namespace=ns)
    b = MathStore(db_url, table=table, redis_url=redis_url, namespace=ns)
    try:
        a.put("x", np.ones(1))
        sql = f"SELECT name FROM {table} ORDER BY name"
        assert a.query(sql) == [("x",)]
        assert b.query(sql) == [("x",)]
        assert b.cache.stats()["redis_hits"] == 1  # b got a's cached rows from Redis
        a.put("y", np.ones(1))  # a's write invalidates the shared entry and b's local copy
        import time

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and b.query(sql) != [("x",), ("y",)]:
            time.sleep(0.02)
        assert b.query(sql) == [("x",), ("y",)]
    finally:
        a.close()
        b.close()


def test_bad_input_is_a_clear_error(tmp_path, table):
    with MathStore(f"sqlite:///{tmp_path / 'e.db'}", table=table, redis_url=None) as s:
        with pytest.raises(StoreError, match="cache_strategy"):
            s.query(f"SELECT * FROM {table}", cache_strategy="fast")
        with pytest.raises(StoreError, match="read-only"):
            s.query(f"DELETE FROM {table}")
        with pytest.raises(StoreError, match="query failed"):
            s.query("SELECT * FROM no_such_table")
        with pytest.raises(StoreError):
            s.put("", np.ones(1))
    with pytest.raises(StoreError, match="table name"):
        MathStore(f"sqlite:///{tmp_path / 'e.db'}", table="x; DROP TABLE y", redis_url=None)
    with pytest.raises(StoreError, match="unsupported"):
        MathStore("mysql://localhost/db", redis_url=None)


def test_corrupt_row_is_an_error_not_code(tmp_path, table):
    import pickle

    with MathStore(f"sqlite:///{tmp_path / 'p.db'}", table=table, redis_url=None) as s:
        s.put("x", np.ones(1))
        s.execute(f"UPDATE {table} SET data = ? WHERE name = 'x'", (pickle.dumps(np.ones(1)),))
        with pytest.raises(StoreError, match="corrupt"):
            s.get("x")


def test_table_parsing():
    assert tables_read('SELECT * FROM a JOIN "B" ON a.id = B.id LEFT JOIN s.c x') == {"a", "b", "s.c"}
    assert tables_written("INSERT OR REPLACE INTO t1 VALUES (1)") == {"t1"}
    assert tables_written("UPDATE t2 SET x = 1") == {"t2"}
    assert tables_written("DELETE FROM t3") == {"t3"}


def test_one_manager_serves_local_and_shared_strategies(tmp_path, table, redis_url):
    """'lru' stays in this process (Redis never holds it), 'lru_dist' is shared; one CacheManager."""
    import uuid

    ns = "st" + uuid.uuid4().hex[:10]
    url = f"sqlite:///{tmp_path / 'one.db'}"
    a = MathStore(url, table=table, redis_url=redis_url, namespace=ns)
    b = MathStore(url, table=table, redis_url=redis_url, namespace=ns)
    try:
        a.put("x", np.ones(1))
        local_sql = f"SELECT name FROM {table} WHERE name = 'x'"
        shared_sql = f"SELECT count(*) FROM {table}"
        assert a.query(local_sql, cache_strategy="lru") == [("x",)]
        assert a.query(local_sql, cache_strategy="lru") == [("x",)] and a.served_from_cache == 1
        assert a.query(shared_sql, cache_strategy="lru_dist") == [(1,)]
        assert b.query(local_sql, cache_strategy="lru_dist") == [("x",)]
        assert b.cache.stats()["redis_hits"] == 0  # a's 'lru' result never reached Redis
        assert b.query(shared_sql, cache_strategy="lru_dist") == [(1,)]
        assert b.cache.stats()["redis_hits"] == 1
        a.put("y", np.ones(1))
        assert a.query(shared_sql, cache_strategy="lru") == [(2,)]
        assert b.query(shared_sql, cache_strategy="lru_dist") == [(2,)]
    finally:
        a.close()
        b.close()
