"""One contract every local policy must honour (lru, lfu, ttl, adaptive), alone and in front of Redis."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from noodle.cache import CacheManager
from noodle.errors import CacheError

POLICIES = ["lru", "lfu", "ttl", "adaptive"]


def make(policy: str, **kw) -> CacheManager:
    kw.setdefault("ttl", 60)
    return CacheManager(policy=policy, snapshot=False, redis_url=None, **kw)


@pytest.fixture(params=["local", "redis"])
def tier(request) -> str:
    """Each contract test runs on a local-only manager and on one with a Redis tier (same contract)."""
    return request.param


@pytest.fixture
def build(tier, request):
    """A manager factory for ``tier`` (a fresh namespace per test; closed at the end)."""
    made: list[CacheManager] = []

    def factory(policy: str, **kw) -> CacheManager:
        if tier == "local":
            c = make(policy, **kw)
        else:
            kw.setdefault("ttl", 60)
            c = CacheManager(policy=policy, snapshot=False, redis_url=request.getfixturevalue("redis_url"),
                             namespace=request.getfixturevalue("namespace"), **kw)
        made.append(c)
        return c

    yield factory
    for c in made:
        c.close()


@pytest.mark.parametrize("policy", POLICIES)
def test_set_get_delete_clear(policy, build, tier):
    c = build(policy, max_entries=100)
    assert c.get("missing") is None
    assert c.get("missing", 7) == 7
    c.set("a", 1)
    c.set("b", None)
    assert c.get("a") == 1
    assert c.get("b", "dflt") is None  # None is a value, not a miss
    c.set("a", 2)
    assert c.get("a") == 2 and len(c) == 2
    c.delete("a")
    assert c.get("a") is None
    c.clear()
    assert len(c) == 0 and c.get("b", 5) == 5


@pytest.mark.parametrize("policy", POLICIES)
def test_entry_bound_holds(policy, build, tier):
    c = build(policy, max_entries=50)
    for i in range(500):
        c.set(i, i)
        c.get(i)
        assert len(c) <= 50
    assert c.stats()["evictions"] >= 450


@pytest.mark.parametrize("policy", POLICIES)
def test_byte_bound_counts_array_nbytes(policy, build, tier):
    c = build(policy, max_entries=1000, max_bytes=100_000)
    for i in range(40):
        c.set(i, np.zeros(1000))  # 8000 bytes each
        assert c.stats()["bytes"] <= 100_000
    assert 0 < len(c) <= 12
    c.set("huge", np.zeros(20_000))  # bigger than the whole bound: not kept locally
    assert "huge" not in c._policy._data if hasattr(c._policy, "_data") else True
    if tier == "local":
        assert c.get("huge") is None
    else:  # the shared tier holds it; the local tier still may not
        assert c.get("huge").shape == (20_000,) and c.stats()["bytes"] <= 100_000


@pytest.mark.parametrize("policy", POLICIES)
def test_ttl_expiry(policy, build, tier):
    c = build(policy, max_entries=10)
    c.set("short", 1, ttl=0.05)
    c.set("long", 2)
    assert c.get("short") == 1
    time.sleep(0.08)
    assert c.get("short") is None
    assert c.get("long") == 2


@pytest.mark.parametrize("policy", POLICIES)
def test_usage_limits(policy, build, tier):
    c = build(policy, max_entries=10)
    c.set("twice", 1, max_hits=2)
    assert c.get("twice") == 1 and c.get("twice") == 1
    assert c.get("twice") is None
    c.set("idle", 1, max_idle=0.05)
    assert c.get("idle") == 1
    time.sleep(0.08)
    assert c.get("idle") is None


@pytest.mark.parametrize("policy", POLICIES)
def test_tags_and_dependency_cascade(policy, build, tier):
    c = build(policy, max_entries=100)
    c.set("x", 1, tags=("t1",))
    c.set("y", 2, tags=("t1", "t2"))
    c.set("z", 3, tags=("t2",))
    assert c.invalidate(tag="t1") == 2
    assert c.get("x") is None and c.get("y") is None and c.get("z") == 3
    c.set("base", 10)
    c.set("mid", 11, depends_on=["base"])
    c.set("top", 12, depends_on=["mid"])
    c.set("other", 13)
    assert c.invalidate(key="base") == 3
    assert [c.get(k) for k in ("base", "mid", "top", "other")] == [None, None, None, 13]
    with pytest.raises(CacheError):
        c.invalidate()


@pytest.mark.parametrize("policy", POLICIES)
def test_stats_count_hits_and_misses(policy, build, tier):
    c = build(policy, max_entries=10)
    c.set("a", 1)
    for _ in range(5):
        c.get("a")
    for _ in range(3):
        c.get("nope")
    s = c.stats()
    assert s["hits"] == 5 and s["misses"] == 3 and s["policy"] == policy


@pytest.mark.parametrize("policy", POLICIES)
def test_thread_safety(policy, build, tier):
    c = build(policy, max_entries=200, max_bytes=50_000)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for k in rng.integers(0, 500, 3000 if tier == "local" else 400).tolist():
                if c.get(k) is None:
                    c.set(k, np.full(8, k), tags=(f"g{k % 7}",))
                elif k % 13 == 0:
                    c.invalidate(tag=f"g{k % 7}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(c) <= 200 and c.stats()["bytes"] <= 50_000
    for k in range(500):  # whatever survived is the right value
        v = c.get(k)
        assert v is None or int(v[0]) == k


@pytest.mark.parametrize("policy", POLICIES)
def test_get_or_load_runs_loader_once_under_concurrency(policy, build, tier):
    c = build(policy, max_entries=10)
    calls = []
    gate = threading.Event()

    def loader():
        calls.append(1)
        gate.wait(1.0)
        return 42

    results = []
    threads = [threading.Thread(target=lambda: results.append(c.get_or_load("k", loader))) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    gate.set()
    for t in threads:
        t.join()
    assert results == [42] * 8 and len(calls) == 1


def test_bad_arguments_are_clear_errors():
    with pytest.raises(CacheError, match="unknown cache policy"):
        CacheManager(policy="fifo", snapshot=False)
    with pytest.raises(CacheError, match="max_entries|capacity"):
        CacheManager(policy="lru", max_entries=0, snapshot=False)
    with pytest.raises(CacheError, match="ttl"):
        CacheManager(policy="ttl", ttl=0, snapshot=False)
    c = make("lru", max_entries=10)
    with pytest.raises(CacheError, match="hashable"):
        c.get(["list"])
    with pytest.raises(CacheError, match="ttl"):
        c.set("a", 1, ttl=-1)
    with pytest.raises(CacheError, match="redis://"):
        CacheManager(policy="lru", redis_url="http://localhost:6379", snapshot=False)


def test_distributed_setting_without_url_is_a_clear_error(monkeypatch):
    from noodle import config

    monkeypatch.setenv("NOODLE_SYNTAX_FIXER_DISTRIBUTED_CACHE", "true")
    monkeypatch.delenv("NOODLE_REDIS_URL", raising=False)
    config.reload()
    with pytest.raises(CacheError, match="NOODLE_REDIS_URL"):
        CacheManager(policy="lru", snapshot=False)


def test_advanced_is_adaptive_and_settings_defaults(monkeypatch):
    from noodle import config

    monkeypatch.setenv("NOODLE_SYNTAX_FIXER_CACHE_STRATEGY", "advanced")
    monkeypatch.setenv("NOODLE_SYNTAX_FIXER_CACHE_SIZE", "123")
    config.reload()
    c = CacheManager(snapshot=False, redis_url=None)
    assert c.policy_name == "adaptive" and c.max_entries == 123


def test_adaptive_resists_a_scan():
    """A hot set survives a long one-time scan under adaptive but not under LRU."""
    results = {}
    for policy in ("lru", "adaptive"):
        c = make(policy, max_entries=100)
        hot = [f"hot{i}" for i in range(50)]
        for _ in range(20):
            for k in hot:
                if c.get(k) is None:
                    c.set(k, 1)
        for i in range(1000):
            c.set(f"scan{i}", 1)
        results[policy] = sum(c.get(k) is not None for k in hot)
    assert results["adaptive"] >= 45 and results["lru"] == 0
