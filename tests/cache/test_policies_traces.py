"""Hit-ratio properties of each trace family, measured through a real CacheManager, and the Policy interface."""

from __future__ import annotations

import numpy as np
import pytest

from noodle.cache import simulate as sim
from noodle.cache.policies import MISSING, POLICIES, AdaptivePolicy, HitPath, LFUPolicy, Policy, make_policy

CAP = 500


def _traces() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "zipf": sim.zipf_trace(60_000, 20_000, 0.9, rng),
        "scan": sim.scan_polluted_trace(60_000, 20_000, CAP, rng),
        "loop": sim.loop_trace(60_000, CAP),
        "shifting": sim.shifting_trace(100_000, 2_500, 5, 0.9, rng),
        "bursty": sim.bursty_trace(80_000, 20_000, CAP, rng),
        "drifting": sim.drifting_trace(80_000, CAP, rng),
    }


TRACES = _traces()
# how far below the best of LRU and LFU adaptive may land
SLACK: dict[str, float] = {}


@pytest.mark.parametrize("name", sorted(TRACES))
def test_adaptive_at_least_the_best_of_lru_and_lfu(name):
    trace = TRACES[name]
    ratios = {p: sim.manager_hit_ratio(p, trace, CAP) for p in ("lru", "lfu", "adaptive")}
    assert ratios["adaptive"] >= max(ratios["lru"], ratios["lfu"]) - SLACK.get(name, 0.01), ratios
    assert ratios["adaptive"] <= sim.belady_hit_ratio(trace, CAP) + 1e-9


@pytest.mark.parametrize("policy", ["lru", "lfu", "adaptive"])
def test_replay_equals_a_real_manager(policy):
    trace = np.concatenate([TRACES["shifting"][:30_000], TRACES["loop"][:10_000], TRACES["bursty"][:20_000]])
    assert sim.hit_ratio(policy, trace, CAP) == sim.manager_hit_ratio(policy, trace, CAP)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_policy_implements_the_protocol(name):
    policy = make_policy(name, 8)
    assert isinstance(policy, Policy)
    path = policy.hit_path()
    assert path is None or isinstance(path, HitPath)
    for k in range(20):
        if policy.get(k) is MISSING:
            policy.put(k, k)
    assert len(policy) <= 8
    assert all(policy.peek(k) == k for k in policy.keys())


def test_lfu_evicts_the_least_used_and_buffered_hits_count_like_locked_ones():
    eager, buffered = LFUPolicy(3), LFUPolicy(3)
    path = buffered.hit_path()
    assert path is not None
    for p in (eager, buffered):
        for k in "abc":
            p.put(k, k)
    for k in "aabbbc":  # counts: a 3, b 4, c 2
        eager.get(k)
        assert path.lookup(k, MISSING) == k
        path.buffer.append(k)  # type: ignore[union-attr]
    for p in (eager, buffered):
        assert [k for k, _ in p.put("d", "d")] == ["c"]
        assert [k for k, _ in p.put("e", "e")] == ["d"]  # the newcomer has the smallest count
        assert p.hottest(2) == ["b", "a"]
        assert p.pop("a") == "a" and "a" not in p


def test_adaptive_counts_the_managers_double_look_as_one_miss():
    policy = make_policy("adaptive", 64)
    assert policy.get("x") is MISSING and policy.get("x") is MISSING
    assert policy.sketch.frequency("x") == 1


def _first_lru_jump(name: str, n: int) -> int | None:
    policy = make_policy("adaptive", CAP)
    for i, k in enumerate(TRACES[name][:n].tolist()):
        if policy.get(k) is MISSING:
            policy.put(k, k)
        if policy._window_max == CAP - 1:
            return i
    return None


def test_adaptive_jumps_to_lru_before_its_first_sample_only_on_a_large_gap():
    # the first sample at the initial 1% window cost drifting traces most of their gap to LRU: the
    # shadow-LRU test also runs on each chunk of sampled requests before it ends
    first_sample = int(AdaptivePolicy.PERIOD_FACTOR * CAP)
    jump = _first_lru_jump("drifting", first_sample)
    assert jump is not None and jump < first_sample - 1  # the first sample's own test: at its last access
    # a cold sketch on a frequency-heavy trace is no reason to go to LRU
    assert _first_lru_jump("zipf", first_sample) is None
