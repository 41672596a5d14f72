"""Alerts and bottlenecks: a custom rule with hysteresis, a callback, and bottleneck findings.

    python examples/monitor_alerts.py

Feeds a recorded memory series that hovers around the 80 % threshold: the rule raises exactly one
alert and resolves it once, not a flapping stream. Then it plants cache metrics that thrash and a
busy-CPU history and asks for bottlenecks: a saturated CPU is a bottleneck (a finding with advice),
not an alert. It prints:

    -> firing memory_high [warning] mem=0.81
    -> resolved memory_high [warning] mem=0.74
    alerts raised: 1
    bottlenecks: cache_thrashing, cpu_bound (with evidence and what to do)
"""

from __future__ import annotations

import logging
import time

from noodle.metrics import Registry
from noodle.monitor import AlertManager, AlertRule, detect


def main() -> None:
    # this example shows each alert through its callback; keep the alert manager's own log line
    # (logger "noodle.monitor", shown on stderr when logging is not configured) from repeating it
    logging.getLogger("noodle.monitor").addHandler(logging.NullHandler())
    reg = Registry()  # a private registry, so the example does not touch the process-wide one
    alerts = AlertManager([AlertRule("memory_high", "mem", {"warning": 0.8}, "memory nearly full",
                                     hysteresis=0.05)], reg)
    alerts.on_alert(lambda a: print(f"  -> {a.state} {a.rule} [{a.severity}] mem={a.value:.2f}"))
    now = time.time()
    print("feeding a memory series that hovers at 80 %:")
    for i, mem in enumerate([0.5, 0.79, 0.81, 0.79, 0.82, 0.80, 0.78, 0.80, 0.74, 0.5]):
        alerts.evaluate({"t": now + i, "mem": mem})
    print("alerts raised:", sum(a.state == "firing" for a in alerts.history()))
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
