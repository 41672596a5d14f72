"""Alerts and bottlenecks: custom rules with hysteresis, a callback, and bottleneck findings.

    python examples/monitor_alerts.py

Feeds a recorded CPU series that hovers around the threshold (one alert, not a
flapping stream), then plants cache metrics that thrash and asks for bottlenecks.
"""

from __future__ import annotations

import time

from noodle.metrics import Registry
from noodle.monitor import AlertManager, AlertRule, detect


def main() -> None:
    reg = Registry()  # a private registry, so the example does not touch the process-wide one
    alerts = AlertManager([AlertRule("cpu_high", "cpu", {"warning": 0.8, "critical": 0.95},
                                     "CPU busy", hysteresis=0.05)], reg)
    alerts.on_alert(lambda a: print(f"  -> {a.state} {a.rule} [{a.severity}] cpu={a.value:.2f}"))
    now = time.time()
    print("feeding a CPU series that hovers at 80 %:")
    for i, cpu in enumerate([0.5, 0.79, 0.81, 0.79, 0.82, 0.97, 0.93, 0.80, 0.74, 0.5]):
        alerts.evaluate({"t": now + i, "cpu": cpu})
    print("active now:", [a.rule for a in alerts.active()])

    reg.counter("noodle_cache_hits_total", "hits", ("tier",)).labels("memory").inc(40)
    reg.counter("noodle_cache_misses_total", "misses", ("tier",)).labels("memory").inc(960)
    reg.counter("noodle_cache_evictions_total", "evictions", ("tier",)).labels("memory").inc(930)
    history = [{"t": now + i, "cpu": 0.97, "mem": 0.4} for i in range(30)]
    print("bottlenecks:")
    for b in detect(history, reg):
        print(f"  {b.kind} (severity {b.severity:.2f}): {b.evidence}\n    what to do: {b.recommendation}")


if __name__ == "__main__":
    main()
