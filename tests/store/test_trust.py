"""Data trust (issue 10): cached rows never cross databases, never outlive a committed write, and
``query()`` never writes. Real SQLite, PostgreSQL and Redis; the plain SQL result is the oracle."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from noodle import config
from noodle.errors import ConfigError, StoreError
from noodle.store import MathStore

WORKER = Path(__file__).with_name("consistency_worker.py")


def _raw(url):
    if url.startswith("postgresql://"):
        import psycopg

        return psycopg.connect(url, autocommit=True)
    return sqlite3.connect(url[len("sqlite:///"):], isolation_level=None, timeout=10)


def _counter_db(url, suffix):
    """A counter table, a second table for joins and a view over the counter; returns names and query forms."""
    t, o, v = f"cnt_{suffix}", f"oth_{suffix}", f"vw_{suffix}"
    raw = _raw(url)
    raw.execute(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
    raw.execute(f"CREATE TABLE {o} (id INTEGER PRIMARY KEY)")
    raw.execute(f"INSERT INTO {t} VALUES (1, 0)")
    raw.execute(f"INSERT INTO {o} VALUES (1)")
    raw.execute(f"CREATE VIEW {v} AS SELECT id, v FROM {t}")
    raw.close()
    forms = [f"SELECT a.v FROM {t} a, {o} b WHERE a.id = b.id",  # comma join
             f"SELECT v FROM {v} WHERE id = 1",  # a view
             f'SELECT v FROM "{t}" WHERE id = 1',
             f"SELECT (SELECT max(v) FROM {t}) FROM {o}"]
    if url.startswith("postgresql://"):
        forms.append(f"SELECT v FROM public.{t} WHERE id = 1")
    else:
        forms += [f"SELECT v FROM main.{t} WHERE id = 1", f"SELECT v FROM [{t}] WHERE id = 1",
                  f"SELECT v FROM `{t}` WHERE id = 1"]
    return t, o, v, forms


def _drop(url, *names):
    if url.startswith("postgresql://"):
        raw = _raw(url)
        for name in names:
            raw.execute(f"DROP VIEW IF EXISTS {name} CASCADE" if name.startswith("vw_")
                        else f"DROP TABLE IF EXISTS {name} CASCADE")
        raw.close()


@pytest.fixture
def counter(db_url):
    suffix = uuid.uuid4().hex[:10]
    names = _counter_db(db_url, suffix)
    yield db_url, *names
    _drop(db_url, names[2], names[0], names[1], f"objs_{suffix}")


def test_every_query_form_sees_every_writer(counter, table):
    """Writes by another store and by raw SQL invalidate main.t/public.t, comma joins, views and quoting:
    at once with max_staleness=0 (SQLite: always), and within max_staleness on PostgreSQL's default."""
    import time

    url, t, _, _, forms = counter
    with MathStore(url, table=table, redis_url=None, ttl=0, max_staleness=0) as s, \
            MathStore(url, table=table, redis_url=None) as notified, \
            MathStore(url, table=table, redis_url=None) as other:
        raw = _raw(url)
        try:
            for step, write in enumerate([lambda q: other.execute(q), lambda q: raw.execute(q),
                                          lambda q: s.execute(q)], start=1):
                for store in (s, notified):
                    assert [store.query(f)[0][0] for f in forms] == [step - 1] * len(forms)
                    assert [store.query(f)[0][0] for f in forms] == [step - 1] * len(forms)  # from cache
                write(f"UPDATE {t} SET v = v + 1 WHERE id = 1")
                direct = raw.execute(f"SELECT v FROM {t} WHERE id = 1").fetchone()[0]
                assert [s.query(f)[0][0] for f in forms] == [direct] * len(forms)
                if url.startswith("postgresql"):
                    time.sleep(notified.max_staleness + 0.02)
                assert [notified.query(f)[0][0] for f in forms] == [direct] * len(forms)
            assert s.served_from_cache >= len(forms) * 3 and notified.served_from_cache >= len(forms) * 3
        finally:
            raw.close()


def test_cross_database_rows_never_leak_through_shared_redis(tmp_path, table, redis_url, pg_url):
    """Same SQL, same Redis (default namespace): two SQLite files and two PostgreSQL schemas stay apart."""
    import psycopg

    sql = f"SELECT name, metadata FROM {table} ORDER BY name"
    urls = [f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"]
    schemas = ["trust_" + uuid.uuid4().hex[:10] for _ in range(2)]
    with psycopg.connect(pg_url, autocommit=True) as admin:
        for schema in schemas:
            admin.execute(f"CREATE SCHEMA {schema}")
        urls += [f"{pg_url}?options=-csearch_path%3D{schema}" for schema in schemas]
        try:
            stores = [MathStore(u, table=table, redis_url=redis_url) for u in urls]
            try:
                for i, s in enumerate(stores):
                    s.put(f"secret{i}", np.ones(1), {"db": i})
                leaks = 0
                for _ in range(3):
                    for i, s in enumerate(stores):
                        rows = s.query(sql)
                        leaks += rows != [(f"secret{i}", json.dumps({"db": i}))]
                assert leaks == 0
                assert all(s.served_from_cache >= 1 for s in stores)
            finally:
                for s in stores:
                    s.close()
        finally:
            for schema in schemas:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")


def _writes(backend, t):
    common = [f"WITH x AS (SELECT 1) DELETE FROM {t}", f"SELECT 1; DROP TABLE {t}",
              f"SELECT v FROM {t}; DELETE FROM {t}", f"INSERT INTO {t} VALUES (2, 2)",
              f"UPDATE {t} SET v = 99", f"DROP TABLE {t}", f"DELETE FROM {t}"]
    if backend == "sqlite":
        return common + ["PRAGMA writable_schema=ON", "PRAGMA query_only=OFF",
                         f"CREATE TABLE x_{t} AS SELECT * FROM {t}", "ATTACH ':memory:' AS m", "VACUUM"]
    return common + [f"WITH d AS (DELETE FROM {t} RETURNING v) SELECT * FROM d",
                     f"WITH u AS (UPDATE {t} SET v = 99 RETURNING v) SELECT count(*) FROM u",
                     f"SELECT 1; COMMIT; DELETE FROM {t}", f"CREATE TABLE x_{t} AS SELECT * FROM {t}",
                     f"SELECT * FROM {t} FOR UPDATE", f"TRUNCATE {t}", "SET default_transaction_read_only = off",
                     f"SELECT nextval('s_{t}')", f"SELECT bump_{t}()"]


def test_query_refuses_every_write_and_writes_nothing(counter, table):
    url, t, _, _, _ = counter
    backend = "postgresql" if url.startswith("postgresql://") else "sqlite"
    raw = _raw(url)
    if backend == "postgresql":
        raw.execute(f"CREATE SEQUENCE s_{t}")
        raw.execute(f"CREATE FUNCTION bump_{t}() RETURNS int LANGUAGE sql AS "
                    f"$$ UPDATE {t} SET v = 99; SELECT 1 $$")
    try:
        with MathStore(url, table=table, redis_url=None) as s:
            refused = 0
            for sql in _writes(backend, t):
                for strategy in ("lru", "none"):
                    with pytest.raises(StoreError) as err:
                        s.query(sql, cache_strategy=strategy)
                    assert "nothing" in str(err.value).lower() or "query failed" in str(err.value)
                    refused += 1
                assert raw.execute(f"SELECT id, v FROM {t}").fetchall() == [(1, 0)], sql
            assert refused == 2 * len(_writes(backend, t))
            assert s.query(f"SELECT v FROM {t}") == [(0,)]  # the store still reads afterwards
        if backend == "postgresql":
            assert raw.execute("SELECT to_regclass(%s)", (f"x_{t}",)).fetchone()[0] is None
            assert raw.execute(f"SELECT last_value, is_called FROM s_{t}").fetchone() == (1, False)
        else:
            assert raw.execute("SELECT count(*) FROM sqlite_master WHERE name = ?", (f"x_{t}",)).fetchone()[0] == 0
    finally:
        if backend == "postgresql":
            raw.execute(f"DROP FUNCTION IF EXISTS bump_{t}()")
            raw.execute(f"DROP SEQUENCE IF EXISTS s_{t}")
        raw.close()


def test_bad_arguments_are_clear_errors_before_anything_runs(tmp_path, table, monkeypatch):
    with MathStore(f"sqlite:///{tmp_path / 'e.db'}", table=table, redis_url=None) as s:
        s.put("x", np.ones(1))
        for ttl in ("x", -1, float("nan"), True):
            with pytest.raises(StoreError, match="ttl"):
                s.query("SELECT * FROM no_such_table", ttl=ttl)  # validated before the query runs
        for params in (5, "ab", None, {1, 2}):
            with pytest.raises(StoreError, match="params"):
                s.query(f"SELECT name FROM {table} WHERE name = ?", params)
        with pytest.raises(StoreError, match="params"):
            s.execute(f"DELETE FROM {table} WHERE name = ?", 5)
        with pytest.raises(StoreError, match="ragged|regular"):
            s.put("ragged", [[1, 2], [3]])
        with pytest.raises(StoreError, match="tables"):
            s.query(f"SELECT name FROM {table}", tables=[1])
        assert s.list() == ["x"]
    for url in ("", "   ", "sqlite:///"):
        with pytest.raises(StoreError, match="database|SQLite file"):
            MathStore(url, redis_url=None)
    with pytest.raises(StoreError, match="ttl"):
        MathStore(f"sqlite:///{tmp_path / 'e.db'}", redis_url=None, ttl="x")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for bad in (str(blocker), str(blocker / "sub"), ""):
        monkeypatch.setenv("NOODLE_CACHE_DIR", bad)
        config.reload()
        with pytest.raises(ConfigError, match="NOODLE_CACHE_DIR"):
            MathStore(redis_url=None)


def test_memory_database_reads_its_own_writes():
    with MathStore("sqlite:///:memory:", redis_url=None) as s:
        s.put("a", np.ones(1))
        assert s.query("SELECT name FROM noodle_objects") == [("a",)]
        s.put("b", np.ones(1))
        assert s.query("SELECT name FROM noodle_objects ORDER BY name") == [("a",), ("b",)]


def _run_pair(url, suffix, forms, t, redis_url, tmp_path, max_staleness=0.05):
    cfg = {"url": url, "objects": f"objs_{suffix}", "counter": t, "forms": forms, "redis_url": redis_url,
           "namespace": "st" + suffix, "seconds": 3.0, "max_writes": 150, "pause": 0.01,
           "max_queries": 200_000, "stop_file": str(tmp_path / f"stop-{suffix}"), "max_staleness": max_staleness}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, str(WORKER), role, json.dumps(cfg)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for role in ("reader", "writer")]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=40)
        assert p.returncode == 0, stderr[-2000:]
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def _lags(read, wrote):
    """Seconds from the start of each missed write to the query that missed it (an upper bound on how
    long after its commit a stale result was served)."""
    return [asked - wrote["began"][got] for got, asked in read["stale"]]


@pytest.mark.parametrize("with_redis", [False, True], ids=["local", "redis"])
def test_two_processes_never_serve_a_result_older_than_a_committed_write(counter, with_redis, request,
                                                                        tmp_path):
    """SQLite: 0 stale results. PostgreSQL (notification-driven hits): none later than max_staleness
    (0.05 s) after the write it missed began, well inside the 100 ms the brief allows."""
    url, t, _, _, forms = counter
    redis_url = request.getfixturevalue("redis_url") if with_redis else None
    suffix = t.split("_", 1)[1]
    read, wrote = _run_pair(url, suffix, forms, t, redis_url, tmp_path)
    lags = _lags(read, wrote)
    print(f"\n[consistency] {url.split(':')[0]} redis={with_redis}: writes={wrote['writes']} "
          f"queries={read['queries']} served_from_cache={read['served_from_cache']} "
          f"redis_hits={read['redis_hits']} stale={len(lags)} max_lag_ms={max(lags, default=0) * 1e3:.2f} "
          f"final_stale={read['final_stale']}")
    assert wrote["writes"] >= 30 and read["queries"] >= 100
    assert read["served_from_cache"] > 0  # the cache was really in play
    assert read["final_stale"] == 0
    if url.startswith("sqlite"):
        assert lags == []
    else:
        assert max(lags, default=0) <= 0.05 + 0.02, lags  # max_staleness, plus the write's own duration


def test_postgres_with_max_staleness_zero_serves_no_stale_result(pg_url, tmp_path):
    """max_staleness=0: every PostgreSQL hit checks the database, so not one stale result."""
    suffix = uuid.uuid4().hex[:10]
    t, o, v, forms = _counter_db(pg_url, suffix)
    try:
        read, wrote = _run_pair(pg_url, suffix, forms, t, None, tmp_path, max_staleness=0)
    finally:
        _drop(pg_url, v, t, o, f"objs_{suffix}")
    print(f"\n[consistency] postgresql max_staleness=0: writes={wrote['writes']} queries={read['queries']} "
          f"served_from_cache={read['served_from_cache']} stale={len(read['stale'])}")
    assert wrote["writes"] >= 30 and read["served_from_cache"] > 0
    assert read["stale"] == [] and read["final_stale"] == 0


_OPEN = "import sys\nfrom noodle.store import MathStore\nMathStore(sys.argv[1], table=sys.argv[2], redis_url=None).close()\n"


def test_processes_opening_a_new_store_at_once_all_succeed(db_url, table):
    """Four processes open the same new store together (a job fanning out): each must get a
    working store, not 'database is locked' (SQLite's switch to WAL) or a unique violation in
    pg_type (PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against a concurrent one)."""
    for n in range(4):   # a new database or table each round: the race is in creating them
        url, name = (db_url.replace("store.db", f"store{n}.db"), f"{table}_{n}")
        procs = [subprocess.Popen([sys.executable, "-c", _OPEN, url, name], stderr=subprocess.PIPE, text=True)
                 for _ in range(6)]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert all(p.returncode == 0 for p in procs), [e.strip().splitlines()[-1:] for e in errors if e.strip()]
    with MathStore(url, table=name, redis_url=None) as store:
        store.put("x", np.arange(3.0))
        np.testing.assert_array_equal(store.get("x").array, np.arange(3.0))
    if db_url.startswith("postgresql"):   # the fixture drops ``table``; these are ours
        import psycopg

        with psycopg.connect(db_url, autocommit=True) as conn:
            for n in range(4):
                conn.execute(f"DROP TABLE IF EXISTS {table}_{n}")


@pytest.fixture
def one_value_table(pg_url):
    """A PostgreSQL table ``(v INTEGER)`` holding 1, a raw autocommit connection to change it, and its name."""
    t = f"one_{uuid.uuid4().hex[:10]}"
    raw = _raw(pg_url)
    raw.execute(f"CREATE TABLE {t} (v INTEGER)")
    raw.execute(f"INSERT INTO {t} VALUES (1)")
    try:
        yield raw, t
    finally:
        raw.execute(f"DROP TABLE IF EXISTS {t}")
        raw.execute(f"DROP TABLE IF EXISTS objs_{t}")
        raw.close()


def test_postgres_dropped_and_recreated_table_is_not_served_from_cache(pg_url, one_value_table):
    """DROP and CREATE fire no trigger: the listener's trigger fingerprint must forget the old table."""
    import time

    raw, t = one_value_table
    with MathStore(pg_url, table=f"objs_{t}", redis_url=None) as store:
        sql = f"SELECT v FROM {t}"
        assert store.query(sql) == [(1,)] and store.query(sql) == [(1,)]
        assert store.served_from_cache == 1
        raw.execute(f"DROP TABLE {t}")
        raw.execute(f"CREATE TABLE {t} (v INTEGER)")
        raw.execute(f"INSERT INTO {t} VALUES (2)")  # no trigger of ours on the new table yet
        time.sleep(store.max_staleness + 0.02)
        assert store.query(sql) == [(2,)]
        raw.execute(f"UPDATE {t} SET v = 3")
        time.sleep(store.max_staleness + 0.02)
        assert store.query(sql) == [(3,)]


def test_postgres_lost_listener_falls_back_to_checking_every_hit(pg_url, one_value_table):
    """The listening connection is killed: hits must check the database (never trust stale knowledge),
    and the store reconnects its listener."""
    import time

    raw, t = one_value_table
    with MathStore(pg_url, table=f"objs_{t}", redis_url=None) as store:
        sql = f"SELECT v FROM {t}"
        assert store.query(sql) == [(1,)] and store.query(sql) == [(1,)]
        pid = store._tracker._listener.info.backend_pid
        raw.execute("SELECT pg_terminate_backend(%s)", (pid,))
        raw.execute(f"UPDATE {t} SET v = 2")  # its notification goes nowhere
        time.sleep(store.max_staleness + 0.02)
        assert store.query(sql) == [(2,)]
        hits = store.served_from_cache
        assert store.query(sql) == [(2,)] and store.served_from_cache == hits + 1
        time.sleep(1.1)
        assert store.query(sql) == [(2,)]
        assert store._tracker._listener is not None  # listening again
        raw.execute(f"UPDATE {t} SET v = 3")
        time.sleep(store.max_staleness + 0.02)
        assert store.query(sql) == [(3,)]
