"""Cache statistics reach noodle.metrics (in bulk) and the run report shows them."""

from __future__ import annotations

import io

from noodle import metrics
from noodle.cache import CacheManager, publish


def test_counts_are_published_to_the_registry_and_reported():
    import gc

    gc.collect()
    publish()  # flush what earlier managers counted, so the deltas below are this test's alone
    hits = metrics.registry.get("noodle_cache_hits_total")
    before_hits = hits.value("local") if hits is not None else 0.0
    misses = metrics.registry.get("noodle_cache_misses_total")
    before_misses = misses.value("local") if misses is not None else 0.0
    c = CacheManager(policy="lru", max_entries=2, redis_url=None, snapshot=False, ttl=60)
    c.set("a", 1)
    for _ in range(7):
        c.get("a")
    c.get("nope")
    c.set("b", 2)
    c.set("c", 3)  # evicts one
    publish()
    reg = metrics.registry
    assert reg.get("noodle_cache_hits_total").value("local") - before_hits == 7
    assert reg.get("noodle_cache_misses_total").value("local") - before_misses == 1
    assert reg.get("noodle_cache_evictions_total").value("local") >= 1
    assert reg.get("noodle_cache_bytes").value("local") > 0
    assert "noodle_cache_hits_total" in reg.prometheus_text()
    publish()  # publishing twice adds nothing new
    assert reg.get("noodle_cache_hits_total").value("local") - before_hits == 7

    from rich.console import Console

    from noodle.report import render_report

    out = io.StringIO()
    render_report(console=Console(file=out, width=140))
    text = out.getvalue()
    assert "cache tiers" in text and "local" in text
