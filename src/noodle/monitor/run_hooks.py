"""What ``noodle run`` calls around a user script: monitoring, ``--profile`` and ``--dashboard``.

Why a handle with ``stop() -> dict``: the run command owns the script's
lifetime; this module owns what happens around it. ``stop()`` returns plain
data (profile file paths, alerts raised, bottlenecks found, the summary) and
also emits it as a ``monitor_run`` event, so the report section can print it
from the metrics registry without importing this package.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from noodle.monitor.core import Monitor, get_monitor
from noodle.monitor.profiler import SamplingProfiler
from noodle.monitor.server import MonitorServer

log = logging.getLogger("noodle.monitor")


class RunHandle:
    """The running monitor, profiler and server of one ``noodle run``; ``stop()`` ends them."""

    def __init__(self, monitor: Monitor, profiler: SamplingProfiler | None, server: MonitorServer | None,
                 profile_dir: Path, started_monitor: bool) -> None:
        self.monitor = monitor
        self.profiler = profiler
        self.server = server
        self.profile_dir = profile_dir
        self.started = time.time()
        self._started_monitor = started_monitor
        self._result: dict[str, Any] | None = None

    @property
    def dashboard_url(self) -> str | None:
        return self.server.url if self.server else None

    def stop(self) -> dict[str, Any]:
        """Stop everything (idempotent) and return what was found."""
        if self._result is not None:
            return self._result
        profile_paths: dict[str, str] = {}
        top: list[list[Any]] = []
        memory_peak = None
        if self.profiler is not None:
            session = self.profiler.stop()
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.started))
            profile_paths = session.save(self.profile_dir / f"profile-{stamp}")
            top = [[name, s, t] for name, s, t in session.top_functions(10)]
            memory_peak = session.memory["peak_bytes"] if session.memory else None
        try:
            self.monitor.tick()  # a last sample, so short runs still have evidence
        except Exception:
            log.exception("final monitor sample failed")
        window = max(1.0, time.time() - self.started)
        result = {
            "profile_paths": profile_paths,
            "profile_top": top,
            "memory_peak_bytes": memory_peak,
            "alerts": [a.to_json() for a in self.monitor.alerts.history(self.started)],
            "bottlenecks": [b.to_json() for b in self.monitor.bottlenecks(window)],
            "summary": self.monitor.summary(window),
            "dashboard": self.dashboard_url,
        }
        if self.server is not None:
            self.server.stop()
        if self._started_monitor:
            self.monitor.stop()
        self.monitor.registry.emit("monitor_run", **result)
        self._result = result
        global _current
        if _current is self:
            _current = None
        return result


def start(profile: bool, dashboard: bool, host: str = "127.0.0.1", port: int = 8080, *,
          profile_dir: str | None = None, monitor: Monitor | None = None) -> RunHandle:
    """Start monitoring (when enabled or a dashboard is wanted), the profiler and the dashboard server.

    Example::

        handle = start(profile=True, dashboard=False, host="127.0.0.1", port=8080)
        run_the_script()
        info = handle.stop()   # {"profile": {"html": ...}, "alerts": [...], "bottlenecks": [...], ...}
    """
    from noodle.config import get_settings

    mon = monitor or get_monitor()
    started_monitor = False
    if (get_settings().performance_monitoring or dashboard) and not mon.running:
        mon.start()
        started_monitor = True
    mon.summarizer.mark(force=True)
    server = None
    if dashboard:
        server = MonitorServer(mon, host, port).start()
        log.warning("noodle dashboard at %s/", server.url)
    profiler = SamplingProfiler(memory=True, name="noodle run").start() if profile else None
    directory = Path(profile_dir) if profile_dir else Path.cwd() / "noodle-profiles"
    global _current
    _current = RunHandle(mon, profiler, server, directory, started_monitor)
    return _current


_current: RunHandle | None = None


def current() -> RunHandle | None:
    """The handle of the ``noodle run`` in progress in this process, if any (a script can read its
    ``dashboard_url``)."""
    return _current
