"""The registry's local aggregation: observations appended and folded in bulk lose nothing."""

import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from noodle.metrics import Registry
from noodle.metrics.registry import FLUSH_AT


def test_histogram_reads_see_every_pending_observation():
    reg = Registry()
    child = reg.histogram("noodle_t_seconds", "t", ("op",), buckets=(1.0, 2.0, 3.0)).labels("a")
    for v in (0.5, 1.5, 1.5, 2.5, 10.0):
        child.observe(v)
    assert child.count == 5 and child.sum == pytest.approx(16.0)
    assert child.counts == [1, 2, 1, 1]
    assert child.percentile(50) == 1.5


def test_bulk_fold_matches_one_by_one_bucketing():
    reg = Registry()
    h = reg.histogram("noodle_t_seconds", "t", ("op",))
    child = h.labels("a")
    values = [((i * 7919) % 10007) * 1e-6 for i in range(3 * FLUSH_AT + 17)]
    for v in values:
        child.observe(v)
    import bisect

    expected = [0] * (len(h.buckets) + 1)
    for v in values:
        expected[bisect.bisect_left(h.buckets, v)] += 1
    assert child.counts == expected and child.count == len(values)
    assert child.sum == pytest.approx(sum(values))


def test_concurrent_updates_are_not_lost_and_export_parses():
    reg = Registry()
    h = reg.histogram("noodle_t_seconds", "t", ("op",)).labels("a")
    c = reg.counter("noodle_t_total", "t", ("op",)).labels("a")

    def work():
        for i in range(20_000):
            h.observe(i * 1e-6)
            c.inc(2)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(20):  # readers fold while writers append
        reg.snapshot()
        reg.prometheus_text()
    for t in threads:
        t.join()
    assert h.count == 80_000 and c.value == 160_000
    samples = {s.name: s.value for f in text_string_to_metric_families(reg.prometheus_text()) for s in f.samples
               if s.name in ("noodle_t_seconds_count", "noodle_t_total")}
    assert samples == {"noodle_t_seconds_count": 80_000, "noodle_t_total": 160_000}
