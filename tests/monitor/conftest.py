"""Fixtures for the monitor tests: a private registry and monitor, so tests never share state."""

from __future__ import annotations

import pytest

from noodle.metrics import Registry
from noodle.monitor import Monitor


@pytest.fixture
def reg() -> Registry:
    return Registry()


@pytest.fixture
def monitor(reg: Registry):
    m = Monitor(interval=1.0, retention=3600, threshold=0.8, registry=reg)
    yield m
    m.stop()


def _plant_ops(reg: Registry, op: str = "add", n: int = 200, seconds: float = 2e-5) -> None:
    """Record ``n`` eager-op latencies the way the array layer reports them."""
    h = reg.histogram("noodle_op_seconds", "eager op latency", ("op", "device", "backend"))
    for i in range(n):
        h.labels(op, "cpu", "numpy").observe(seconds * (1 + (i % 5) / 10))


@pytest.fixture
def plant_ops():
    """``plant_ops(reg, op, n, seconds)``: planted op latencies in a registry."""
    return _plant_ops
