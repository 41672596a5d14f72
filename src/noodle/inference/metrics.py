"""The engine's numbers in the noodle metrics registry (and so on ``/metrics`` and the dashboard).

Why labels ``variant`` and ``device``: the question an operator asks is "did
the INT8 model on the CPU get slower", so latency and batch size are kept per
variant and device. Optimizer decisions are registry *events*
(``inference_decision``) beside a gauge of the chosen variant, so a report shows
what was chosen and why.

Metrics: ``noodle_inference_requests_total{variant,device}``,
``noodle_inference_queue_delay_seconds{variant,device}``,
``noodle_inference_batch_rows{variant,device}``,
``noodle_inference_run_seconds{variant,device,mode}`` (mode ``batch`` or ``infer``),
``noodle_inference_cache_total{result}``, ``noodle_inference_split_fallbacks_total``,
``noodle_inference_load_total{action}`` (``delay`` or ``shed``),
``noodle_inference_chosen{variant,device}``.

Example::

    from noodle import metrics
    print(metrics.registry.get("noodle_inference_batch_rows"))
"""

from __future__ import annotations

from typing import Any

from noodle import metrics

_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)

REQUESTS = metrics.counter("noodle_inference_requests_total", "requests served by the inference engine",
                           ["variant", "device"])
QUEUE_DELAY = metrics.histogram("noodle_inference_queue_delay_seconds",
                                "time a request waited in the batcher's queue", ["variant", "device"])
BATCH_ROWS = metrics.histogram("noodle_inference_batch_rows", "rows per model run of the dynamic batcher",
                               ["variant", "device"], buckets=_ROW_BUCKETS)
RUN_SECONDS = metrics.histogram("noodle_inference_run_seconds", "model run latency",
                                ["variant", "device", "mode"])
CACHE = metrics.counter("noodle_inference_cache_total", "results-cache lookups by result (hit/miss)", ["result"])
SPLIT_FALLBACKS = metrics.counter("noodle_inference_split_fallbacks_total",
                                  "batches re-run request by request (a failure, or outputs without one row per row)")
LOAD = metrics.counter("noodle_inference_load_total", "requests delayed or shed above the CPU threshold",
                       ["action"])
CHOSEN = metrics.gauge("noodle_inference_chosen", "1 for the variant and device the optimizer chose",
                       ["variant", "device"])


class EngineMetrics:
    """Reports one engine's requests, batches, latencies and cache lookups (label values fixed per engine)."""

    def __init__(self, variant: str, device: str) -> None:
        self._labels = (variant, device)

    def cache(self, hit: bool) -> None:
        CACHE.inc(1.0, "hit" if hit else "miss")

    def latency(self, seconds: float, rows: int) -> None:
        REQUESTS.inc(1.0, *self._labels)
        RUN_SECONDS.observe(seconds, *self._labels, "infer")

    def batch(self, stats: Any) -> None:
        REQUESTS.inc(float(stats.requests), *self._labels)
        BATCH_ROWS.observe(float(stats.rows), *self._labels)
        RUN_SECONDS.observe(stats.run_s, *self._labels, "batch")
        for d in stats.queue_delays_s:
            QUEUE_DELAY.observe(d, *self._labels)
        if not stats.split_ok:
            SPLIT_FALLBACKS.inc()

    def load(self, action: str) -> None:
        LOAD.inc(1.0, action)


def record_decision(decision: Any) -> None:
    """Publish an optimizer decision: the chosen-variant gauge and an ``inference_decision`` event."""
    CHOSEN.set(1.0, decision.variant, decision.placement.name)
    metrics.emit("inference_decision", variant=decision.variant, device=decision.placement.name,
                 max_batch_size=decision.max_batch_size, from_cache=decision.from_cache,
                 reasons=list(decision.lines))
