"""Monitoring and profiling: resource sampler with history, alerts, bottlenecks, summary,
a sampling profiler, and an HTTP API with a live dashboard.

Everything here is opt-in and off the hot path: noodle's parts report into the
metrics registry (:mod:`noodle.metrics`), and this package reads it.

Example::

    import noodle as nd
    m = nd.monitor.get_monitor().start()           # background sampler
    server = nd.monitor.serve(m, port=8080)         # http://127.0.0.1:8080/
    with nd.profile(output="out/profile"): work()   # flame graph + speedscope
"""

from noodle.monitor.alerts import Alert, AlertManager, AlertRule, default_rules
from noodle.monitor.bottlenecks import Bottleneck, detect
from noodle.monitor.core import Monitor, get_monitor
from noodle.monitor.history import History
from noodle.monitor.profiler import ProfileSession, SamplingProfiler, gpu_range, latest_profile, profile
from noodle.monitor.sampler import Sampler
from noodle.monitor.server import MonitorServer, serve
from noodle.monitor.summary import Summarizer

__all__ = [
    "Alert", "AlertManager", "AlertRule", "Bottleneck", "History", "Monitor", "MonitorServer",
    "ProfileSession", "Sampler", "SamplingProfiler", "Summarizer", "default_rules", "detect",
    "get_monitor", "gpu_range", "latest_profile", "profile", "serve",
]
