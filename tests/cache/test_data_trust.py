"""Issue 10, points 6-9 and 11: memoize keys, frozen results, snapshot expiry, argument checks, key rules."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from noodle.cache import CacheManager, codec, memoize
from noodle.cache.entries import Invalidation, keys_to_drop, parse_invalidation
from noodle.errors import CacheEncodingError, CacheError


def local(**kw):
    kw.setdefault("policy", "lru")
    kw.setdefault("max_entries", 100)
    kw.setdefault("ttl", 60)
    return CacheManager(redis_url=None, snapshot=False, **kw)


def shared(url, namespace, **kw):
    kw.setdefault("policy", "lru")
    kw.setdefault("max_entries", 100)
    kw.setdefault("ttl", 60)
    return CacheManager(redis_url=url, namespace=namespace, snapshot=False, **kw)


# 6: memoize keys on the function's code, closure and defaults ------------------------------------

def test_closures_of_one_factory_and_lambdas_do_not_share_results():
    cache = local()

    def make(scale):
        @memoize(cache=cache)
        def f(x):
            return x * scale
        return f

    double, triple = make(2), make(3)
    assert double(5) == 10 and triple(5) == 15
    lams = [memoize(cache=cache)(lambda x: x + 1), memoize(cache=cache)(lambda x: x + 2)]
    assert [g(1) for g in lams] == [2, 3]

    @memoize(cache=cache)
    def with_default(x, k=1):
        return x + k

    assert with_default(1) == 2
    with_default.__wrapped__.__defaults__ = (10,)
    assert with_default(1) == 11


def test_edited_function_does_not_serve_old_snapshot_results(tmp_path):
    """Two runs of a program whose memoized function changed in between: the second computes anew."""
    src = tmp_path / "prog.py"
    snap = tmp_path / "snap.ndcache"

    def run(body: str) -> str:
        src.write_text(textwrap.dedent(f"""
            from pathlib import Path
            from noodle.cache import CacheManager, memoize
            cache = CacheManager(policy="lru", max_entries=10, redis_url=None, snapshot=False, namespace="edit")
            cache.load_snapshot(Path({str(snap)!r}))
            @memoize(cache=cache)
            def f(x):
                return {body}
            print(f(2))
            cache.save_snapshot(Path({str(snap)!r}))
        """))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        return subprocess.run([sys.executable, str(src)], capture_output=True, text=True, env=env,
                              check=True, timeout=60).stdout.strip()

    assert run("x + 1") == "3"
    assert run("x + 1") == "3"
    assert run("x * 100") == "200"  # same name, edited code: not the cached 3


def test_closure_over_a_counter_is_keyed_by_identity_for_this_process():
    cache = local()
    calls: list[int] = []

    @memoize(cache=cache)
    def f(x):
        calls.append(1)
        return x

    f(1)
    f(1)
    assert len(calls) == 1
    assert f.cache_key(1) == f.cache_key(1)
    calls_before = list(calls)
    calls.append(0)  # the list is keyed by identity, not content: appending is no new key
    f(1)
    assert len(calls) == len(calls_before) + 1


# 7: results are not shared mutable state -----------------------------------------------------

def test_mutating_a_memoized_result_does_not_poison_later_hits():
    cache = local()

    @memoize(cache=cache)
    def f(n):
        return {"rows": [1, 2, 3], "arr": np.arange(n)}, [n]

    first = f(3)
    first[0]["rows"].append(99)
    first[1].append(7)
    first[0]["new"] = 1
    with pytest.raises(ValueError):
        first[0]["arr"][0] = 5  # arrays come back read-only
    again = f(3)
    assert again[0]["rows"] == [1, 2, 3] and again[1] == [3] and "new" not in again[0]
    assert np.array_equal(again[0]["arr"], np.arange(3))


def test_arrays_from_redis_are_read_only(redis_url, namespace):
    a, b = shared(redis_url, namespace), shared(redis_url, namespace)
    a.set("arr", np.arange(4.0))
    got = b.get("arr")
    with pytest.raises(ValueError):
        got[0] = 1
    assert np.array_equal(b.get("arr"), np.arange(4.0))
    a.close()
    b.close()


# 8: snapshots keep absolute expiry; a new manager loads only when asked ---------------------------

def test_snapshot_keeps_absolute_expiry_and_loads_only_when_asked():
    c = CacheManager(policy="lru", max_entries=10, redis_url=None, snapshot=True, namespace="expiry")
    c.set("short", 1, ttl=0.5)
    c.set("long", 2, ttl=60)
    c.set("limited", 3, max_hits=5)  # usage counts are per process: not saved
    c.close()
    fresh = CacheManager(policy="lru", max_entries=10, redis_url=None, namespace="expiry")
    assert len(fresh) == 0  # snapshot=None never loads implicitly
    fresh.close()
    time.sleep(0.7)
    d = CacheManager(policy="lru", max_entries=10, redis_url=None, snapshot=True, namespace="expiry")
    assert d.get("short") is None and d.get("long") == 2 and d.get("limited") is None
    d.close()
    e = CacheManager(policy="lru", max_entries=10, redis_url=None, snapshot=False, namespace="expiry")
    assert len(e) == 0 and e.load_snapshot() == 1 and e.get("long") == 2


# 9: argument checks, closed managers, keys, types, bad URLs ----------------------------------------

@pytest.mark.parametrize("tier", ["local", "redis"])
def test_overwrite_invalidates_dependents(tier, redis_url, namespace):
    c = local() if tier == "local" else shared(redis_url, namespace)
    c.set("base", 1)
    c.set("mid", 2, depends_on=["base"])
    c.set("top", 3, depends_on=["mid"])
    c.set("base", 10)  # the value they were derived from changed
    assert c.get("mid") is None and c.get("top") is None and c.get("base") == 10
    c.close()


@pytest.mark.parametrize("tier", ["local", "redis"])
def test_bad_keys_and_lifetimes_are_cache_errors(tier, redis_url, namespace):
    c = local() if tier == "local" else shared(redis_url, namespace)
    for call in (lambda: c.set(["k"], 1), lambda: c.delete({"k": 1}), lambda: c.invalidate(key=[1]),
                 lambda: c.get([1]), lambda: c.get_or_load([1], lambda: 1)):
        with pytest.raises(CacheError, match="hashable|must be a str"):
            call()
    for ttl in ("abc", math.nan, math.inf, -1, True, [1]):
        with pytest.raises(CacheError, match="ttl"):
            c.set("k", 1, ttl=ttl)
        with pytest.raises(CacheError, match="ttl"):
            c.get_or_load("k", lambda: 1, ttl=ttl)
    for ttl in ("60", math.nan):
        with pytest.raises(CacheError, match="ttl"):
            CacheManager(policy="lru", ttl=ttl, redis_url=None, snapshot=False)
        with pytest.raises(CacheError, match="ttl"):
            memoize(ttl=ttl)
    with pytest.raises(CacheError, match="max_idle"):
        c.set("k", 1, max_idle=math.nan)
    c.close()


@pytest.mark.parametrize("tier", ["local", "redis"])
def test_closed_manager_refuses_work(tier, redis_url, namespace):
    c = local() if tier == "local" else shared(redis_url, namespace)
    c.set("k", 1)
    c.close()
    for call in (lambda: c.get("k"), lambda: c.set("k", 2), lambda: c.delete("k"), lambda: c.clear(),
                 lambda: c.invalidate(tag="t"), lambda: c.get_or_load("k", lambda: 1), lambda: "k" in c):
        with pytest.raises(CacheError, match="closed"):
            call()
    c.close()  # closing twice is fine


@pytest.mark.parametrize("tier", ["local", "redis"])
def test_equal_keys_are_one_key_in_every_tier(tier, redis_url, namespace):
    """Python's dict rule everywhere: 1 == 1.0 == True == np.int64(1); "1" is another key."""
    c = local() if tier == "local" else shared(redis_url, namespace)
    c.set(1, "one")
    assert c.get(1.0) == "one" and c.get(np.int64(1)) == "one" and c.get(True) == "one"
    assert c.get("1") is None
    c.set((2, 0.5), "t")
    assert c.get((2.0, 0.5)) == "t"
    if tier == "redis":
        other = shared(redis_url, namespace)  # through Redis, not the local tier
        assert other.get(1.0) == "one" and other.get((2.0, 0.5)) == "t"
        with pytest.raises(CacheError, match="NaN"):
            c.set(math.nan, 1)
        other.close()
    c.close()


def test_values_keep_their_types_through_redis(redis_url, namespace):
    a, b = shared(redis_url, namespace), shared(redis_url, namespace)
    value = {"t": (1, (2.5, "x")), "f32": np.float32(1.5), "i8": np.int8(-3), "b": np.bool_(True),
             "s": {1, 2}, "fs": frozenset({"a"}), "l": [1, (2,)]}
    a.set("v", value)
    got = b.get("v")
    assert got == value
    for k, v in value.items():
        assert type(got[k]) is type(v), k
    assert type(got["t"][1]) is tuple and type(got["l"][1]) is tuple
    with pytest.raises(CacheEncodingError):
        a.set("obj", object())
    a.close()
    b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_not_a_redis_server_is_one_clear_error():
    """An HTTP-like server on the port: one CacheError naming the URL, no raw redis exception."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conn.recv(1024)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    url = f"redis://127.0.0.1:{port}/0"
    try:
        with pytest.raises(CacheError, match=f"127.0.0.1:{port}"):
            CacheManager(policy="lru", redis_url=url, snapshot=False)
    finally:
        stop.set()
        srv.close()


def test_bad_db_index_is_one_clear_error(redis_url, caplog):
    base = redis_url.rsplit("/", 1)[0]
    with caplog.at_level("WARNING", logger="noodle.cache"):
        with pytest.raises(CacheError, match="/99999"):
            CacheManager(policy="lru", redis_url=f"{base}/99999", snapshot=False)
        time.sleep(0.3)
    assert not [r for r in caplog.records if "subscriber" in r.getMessage()]


# 11: invalidation decided by a pure function; the contract holds with Redis ------------------------

def test_invalidation_is_a_pure_decision():
    import msgpack

    msg = msgpack.packb({"o": "peer", "e": 0, "k": ["a"], "t": ["g"], "c": False})
    inval = parse_invalidation(msg, "me", 0)
    assert keys_to_drop(inval, {"g": {"b", "c"}, "h": {"d"}}) and set(keys_to_drop(inval, {"g": {"b"}})) == {"a", "b"}
    assert parse_invalidation(msgpack.packb({"o": "me", "e": 2, "k": ["a"]}), "me", 2) is None  # our own, current
    late = parse_invalidation(msgpack.packb({"o": "me", "e": 1, "k": ["a"]}), "me", 2)  # ours, from before an outage
    assert late is not None and late.keys == ("a",)
    assert keys_to_drop(Invalidation(clear=True), {}) is None
    assert parse_invalidation(b"garbage", "me", 0) is None and parse_invalidation(None, "me", 0) is None
    assert codec.decode(codec.encode((1,))) == (1,)
