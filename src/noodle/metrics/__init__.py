"""The metrics registry every part of noodle reports into.

Why not call prometheus-client directly on every op: an observe there costs
about a microsecond, which is a third of noodle's per-op budget. Instead every
metric here aggregates locally (plain counters and bucket arrays under a cheap
lock) and is published in bulk when someone reads it: as Prometheus text
through a prometheus-client collector, or as a JSON snapshot. A bounded ring of
recent *events* (placement decisions, compiles, fallbacks) sits beside the
numbers for reports and the dashboard.

This package is a leaf: it imports nothing from the rest of noodle.
"""

from noodle.metrics.registry import (
    Counter,
    Event,
    Gauge,
    Histogram,
    Registry,
    counter,
    emit,
    events,
    gauge,
    histogram,
    registry,
    subscribe,
    unsubscribe,
)

__all__ = [
    "Counter",
    "Event",
    "Gauge",
    "Histogram",
    "Registry",
    "counter",
    "emit",
    "events",
    "gauge",
    "histogram",
    "registry",
    "subscribe",
    "unsubscribe",
]
