"""The Redis tier against a real server: sharing, cross-process invalidation, outages, hostile payloads."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import redis

from noodle.cache import CacheManager

sys.path.insert(0, os.path.dirname(__file__))
import _peer  # noqa: E402
from _peer import wait_for  # noqa: E402


def make(url, namespace, **kw):
    kw.setdefault("policy", "lru")
    kw.setdefault("max_entries", 100)
    kw.setdefault("ttl", 60)
    return CacheManager(redis_url=url, namespace=namespace, snapshot=False, **kw)


@pytest.fixture
def peer(redis_url, namespace):
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_peer.serve, args=(child, redis_url, namespace), daemon=True)
    proc.start()
    assert parent.poll(60) and parent.recv() == "ready"

    def call(*msg):
        parent.send(msg)
        assert parent.poll(30), f"peer did not answer {msg}"
        return parent.recv()

    yield call
    try:
        call("stop")
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()


def test_values_round_trip_through_redis_with_ttl(redis_url, namespace):
    a = make(redis_url, namespace)
    b = make(redis_url, namespace)
    arr = np.arange(6, dtype=np.int16).reshape(2, 3)
    a.set("arr", arr, ttl=30)
    got = b.get("arr")  # b's local tier is empty: this came from Redis
    assert np.array_equal(got, arr) and got.dtype == arr.dtype
    assert b.stats()["redis_hits"] == 1
    ttl_ms = redis.Redis.from_url(redis_url).pttl(f"noodle:{namespace}:arr")
    assert 0 < ttl_ms <= 30_000
    a.set("short", 1, ttl=0.2)
    time.sleep(0.3)
    assert b.get("short") is None
    a.close()
    b.close()


def test_invalidation_reaches_another_process(redis_url, namespace, peer):
    a = make(redis_url, namespace)
    a.set("k", "v1", tags=("grp",))
    # the peer may hear a's publish only after its first read (then it skips caching that read): retry
    assert wait_for(lambda: peer("get", "k") == "v1" and peer("local", "k") == "v1")
    a.set("k", "v2")  # an overwrite is published: the peer drops its stale copy
    assert wait_for(lambda: peer("local", "k") is None)
    assert peer("get", "k") == "v2"
    peer("set", "p", "from-peer", ["grp"])
    assert a.get("p") == "from-peer"
    a.invalidate(tag="grp")
    assert wait_for(lambda: peer("local", "p") is None)
    assert peer("get", "p") is None and a.get("p") is None
    a.close()


def test_dependency_cascade_across_processes(redis_url, namespace, peer):
    a = make(redis_url, namespace)
    a.set("base", 1)
    a.set("derived", 2, depends_on=["base"])
    assert wait_for(lambda: peer("get", "derived") == 2 and peer("local", "derived") == 2)
    a.invalidate(key="base")
    assert wait_for(lambda: peer("local", "derived") is None)
    assert peer("get", "derived") is None
    a.close()


def test_loader_runs_once_across_processes(redis_url, namespace, peer):
    counter = f"noodle:test:{namespace}:loads"
    r = redis.Redis.from_url(redis_url)
    a = make(redis_url, namespace)
    import threading

    results = []
    t = threading.Thread(target=lambda: results.append(peer("load", "expensive", counter)))
    t.start()
    time.sleep(0.1)

    def loader():
        r.incr(counter)
        return "loaded"

    results.append(a.get_or_load("expensive", loader))
    t.join()
    assert results == ["loaded", "loaded"]
    assert int(r.get(counter)) == 1
    r.delete(counter)
    a.close()


def test_dead_lock_holder_does_not_block_forever(redis_url, namespace):
    a = make(redis_url, namespace, lock_timeout=0.5)
    r = redis.Redis.from_url(redis_url)
    r.set(f"noodle:{namespace}:__lock__:x", "dead-holder", px=500)  # a holder that never finishes
    t0 = time.monotonic()
    assert a.get_or_load("x", lambda: 5) == 5
    assert time.monotonic() - t0 < 5
    a.close()


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("kind", ["pickle", "garbage", "wrong-shape"])
def test_planted_payloads_are_misses_and_run_nothing(redis_url, namespace, tmp_path, kind):
    marker = tmp_path / "pwned"
    Evil.path = str(marker)
    payload = {"pickle": pickle.dumps(Evil()), "garbage": os.urandom(64),
               "wrong-shape": b"ND\x01" + b"\x93\x00\x90"}[kind]
    r = redis.Redis.from_url(redis_url)
    r.set(f"noodle:{namespace}:victim", payload)
    c = make(redis_url, namespace)
    assert c.get("victim", "default") == "default"
    assert c.get_or_load("victim", lambda: "fresh") == "fresh"
    assert not marker.exists()
    assert c.stats()["decode_errors"] >= 1
    from noodle import metrics

    assert metrics.registry.get("noodle_cache_decode_errors_total").total() >= 1
    c.close()


def test_payload_past_its_lifetime_is_a_redis_miss(redis_url, namespace):
    """A payload whose own expiry has passed (Redis has not dropped it yet) is served as a miss."""
    from noodle.cache.redis_tier import RedisTier

    r = redis.Redis.from_url(redis_url)
    r.set(f"noodle:{namespace}:old", RedisTier.pack("stale", time.time() - 5, ()))  # no Redis TTL
    c = make(redis_url, namespace)
    assert c.get("old", "default") == "default"
    stats = c.stats()
    assert (stats["redis_hits"], stats["redis_misses"]) == (0, 1)
    c.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_redis(binary: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    assert wait_for(lambda: _ping(client), 10), "own redis-server did not start"
    return proc


def _ping(client) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_redis_killed_and_restarted_mid_test(redis_server_binary, namespace, caplog):
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = _start_redis(redis_server_binary, port)
    try:
        a = make(url, namespace)
        b = make(url, namespace)
        a.set("k", "v1")
        assert b.get("k") == "v1"
        proc.kill()
        proc.wait()
        # both must notice the lost subscription and drop their local copies (they could not hear
        # invalidations); wait until each has marked Redis down, which follows its clear, so a's clear
        # cannot race the local-only writes below
        assert wait_for(lambda: not a._redis.up and not b._redis.up and len(b) == 0)
        with caplog.at_level("WARNING", logger="noodle.cache"):
            a.set("k", "v-down")  # no crash: local-only while Redis is away
            assert a.get("k") == "v-down"
            assert b.get("k", "absent") == "absent"
            for _ in range(5):
                a.get("missing")
                a.set("x", 1)
        assert a.stats()["redis_down"] == 1, a.stats()
        warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(warnings) <= 2, [w.getMessage() for w in warnings]  # one per manager, not per call
        proc = _start_redis(redis_server_binary, port)
        # both reconnect by themselves and clear what they cached during the outage
        assert wait_for(lambda: a._subscriber.subscribed and b._subscriber.subscribed, 10)
        assert wait_for(lambda: a.stats()["redis_up"] and len(a) == 0, 5)
        assert a.get("k") is None and b.get("k") is None, (a.stats(), b.stats())  # nothing stale
        a.set("k", "v3")
        assert b.get("k") == "v3", (a.stats(), b.stats())
        a.set("k", "v4")
        assert wait_for(lambda: b.get("k") == "v4"), (a.stats(), b.stats())
        a.close()
        b.close()
    finally:
        proc.kill()
        proc.wait()


def test_local_tier_calls_stay_in_this_process(redis_url, namespace, peer):
    """get_local/set_local/delete_local on a Redis-backed manager: never reach Redis or peers, never
    read Redis, and a peer's write of the same key still drops the local copy."""
    a = make(redis_url, namespace)
    raw = redis.Redis.from_url(redis_url)
    assert a.set_local("mine", [1, 2]) is True
    assert a.get_local("mine") == [1, 2] and a.get("mine") == [1, 2]
    assert raw.exists(f"noodle:{namespace}:mine") == 0  # not written to Redis
    assert peer("get", "mine") is None  # nor visible to a peer
    peer("set", "theirs", "v", [])
    assert a.get_local("theirs") is None  # get_local does not read Redis
    assert a.get("theirs") == "v"
    peer("set", "mine", "peer-value", [])  # a peer's write of the key invalidates the local copy
    assert wait_for(lambda: a.get_local("mine") is None)
    a.set_local("gone", 1)
    a.delete_local("gone")
    assert a.get_local("gone") is None
    a.set("base", 1)
    a.set("dep", 2, depends_on=["base"])
    a.set_local("base", 3)  # overwriting a key drops what depends on it, here
    assert a.get_local("dep") is None
    a.close()
