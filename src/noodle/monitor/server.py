"""The HTTP API and dashboard: stdlib ``ThreadingHTTPServer`` on 127.0.0.1 by default.

Why the standard library: the API is a handful of read-only JSON routes over
data the monitor already holds; a web framework would add a dependency and
startup time for nothing. Every malformed request (unknown path, bad query
value, unknown parameter, a method other than GET) gets a 4xx JSON body that
says what was wrong, never a traceback.

Routes: ``/`` (dashboard), ``/metrics`` (Prometheus text), ``/api/metrics``,
``/api/history?since=``, ``/api/alerts``, ``/api/bottlenecks?window=``,
``/api/summary?window=``, ``/api/profile?format=json|speedscope|html``,
``/api/status``.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from noodle.errors import MonitorError
from noodle.monitor.core import Monitor, get_monitor
from noodle.monitor.profiler import latest_profile

log = logging.getLogger("noodle.monitor.http")


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _float_param(query: dict[str, list[str]], name: str, default: float | None,
                 lo: float | None = None) -> float | None:
    values = query.get(name)
    if not values:
        return default
    if len(values) > 1:
        raise _BadRequest(400, f"parameter {name!r} given {len(values)} times; give it once")
    try:
        value = float(values[0])
    except ValueError:
        raise _BadRequest(400, f"parameter {name!r} must be a number, got {values[0]!r}") from None
    if not math.isfinite(value) or (lo is not None and value < lo):
        raise _BadRequest(400, f"parameter {name!r} must be a finite number"
                          + (f" >= {lo}" if lo is not None else "") + f", got {values[0]!r}")
    return value


def _dashboard_html() -> bytes:
    return resources.files("noodle.monitor").joinpath("static/dashboard.html").read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server_version = "noodle-monitor"
    monitor: Monitor  # set on the subclass made per server

    def log_message(self, fmt: str, *args: Any) -> None:  # route access logs to logging, not stderr
        log.debug("%s " + fmt, self.address_string(), *args)

    # plumbing -------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data, default=str).encode("utf-8"), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message, "status": status})

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urlsplit(self.path)
        try:
            query = parse_qs(url.query, keep_blank_values=True, strict_parsing=False)
            route = ROUTES.get(url.path.rstrip("/") or "/")
            if route is None:
                raise _BadRequest(404, f"no such path {url.path!r}; try one of: {', '.join(sorted(ROUTES))}")
            handler, allowed = route
            unknown = sorted(set(query) - set(allowed))
            if unknown:
                raise _BadRequest(400, f"unknown parameter(s) {unknown} for {url.path}; allowed: {list(allowed)}")
            handler(self, query)
        except _BadRequest as exc:
            self._error(exc.status, str(exc))
        except MonitorError as exc:
            self._error(400, str(exc))
        except Exception as exc:  # keep the server up; say what broke
            log.exception("monitor API %s failed", self.path)
            self._error(500, f"internal error: {type(exc).__name__}: {exc}")

    do_HEAD = do_GET

    def _not_allowed(self) -> None:
        self._error(405, f"method {self.command} not allowed: the monitor API is read-only (GET)")

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed

    # routes ---------------------------------------------------------------
    def r_dashboard(self, query: dict[str, list[str]]) -> None:
        self._send(200, _dashboard_html(), "text/html; charset=utf-8")

    def r_prometheus(self, query: dict[str, list[str]]) -> None:
        text = self.monitor.registry.prometheus_text()
        self._send(200, text.encode("utf-8"), "text/plain; version=0.0.4; charset=utf-8")

    def r_metrics(self, query: dict[str, list[str]]) -> None:
        events = [{"kind": e.kind, "time": e.time, "data": e.data} for e in self.monitor.registry.events()[-100:]]
        self._json(200, {"time": time.time(), "metrics": self.monitor.registry.snapshot(), "events": events})

    def r_history(self, query: dict[str, list[str]]) -> None:
        since = _float_param(query, "since", 0.0)
        assert since is not None
        if since < 0:  # relative: since=-60 means the last minute
            since = time.time() + since
        self._json(200, {"time": time.time(), "interval": self.monitor.interval,
                         "points": self.monitor.history.since(since)})

    def r_alerts(self, query: dict[str, list[str]]) -> None:
        since = _float_param(query, "since", 0.0)
        self._json(200, {"active": [a.to_json() for a in self.monitor.alerts.active()],
                         "recent": [a.to_json() for a in self.monitor.alerts.history(since or 0.0)][-200:]})

    def r_bottlenecks(self, query: dict[str, list[str]]) -> None:
        window = _float_param(query, "window", 300.0, lo=1.0)
        self._json(200, {"window": window, "bottlenecks": [b.to_json() for b in self.monitor.bottlenecks(window)]})

    def r_summary(self, query: dict[str, list[str]]) -> None:
        window = _float_param(query, "window", None, lo=1.0)
        self._json(200, self.monitor.summary(window))

    def r_profile(self, query: dict[str, list[str]]) -> None:
        fmt = (query.get("format") or ["json"])[0]
        if fmt not in ("json", "speedscope", "html"):
            raise _BadRequest(400, f"format must be json, speedscope or html, got {fmt!r}")
        session = latest_profile()
        if session is None:
            raise _BadRequest(404, "no profile has been taken in this process yet "
                              "(use nd.profile() or noodle run --profile)")
        from noodle.monitor.render import to_html, to_speedscope

        if fmt == "html":
            self._send(200, to_html(session).encode("utf-8"), "text/html; charset=utf-8")
        else:
            self._json(200, session.to_json() if fmt == "json" else to_speedscope(session))

    def r_status(self, query: dict[str, list[str]]) -> None:
        m = self.monitor
        self._json(200, {"time": time.time(), "started": m.started, "interval": m.interval,
                         "retention": m.retention, "alert_threshold": m.threshold,
                         "sampling": m.running, "gpu": m.sampler.has_gpu, "points": len(m.history)})


ROUTES: dict[str, tuple[Callable[[_Handler, dict[str, list[str]]], None], tuple[str, ...]]] = {
    "/": (_Handler.r_dashboard, ()),
    "/metrics": (_Handler.r_prometheus, ()),
    "/api/metrics": (_Handler.r_metrics, ()),
    "/api/history": (_Handler.r_history, ("since",)),
    "/api/alerts": (_Handler.r_alerts, ("since",)),
    "/api/bottlenecks": (_Handler.r_bottlenecks, ("window",)),
    "/api/summary": (_Handler.r_summary, ("window",)),
    "/api/profile": (_Handler.r_profile, ("format",)),
    "/api/status": (_Handler.r_status, ()),
}


class MonitorServer:
    """The API server on a background thread. ``port=0`` picks a free port (see ``.port``/``.url``).

    Example::

        server = MonitorServer(monitor, port=0).start()
        print(server.url); ...; server.stop()
    """

    def __init__(self, monitor: Monitor | None = None, host: str = "127.0.0.1", port: int = 8080) -> None:
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise MonitorError(f"port {port!r} must be an integer in 0..65535 (0 = any free port)")
        self.monitor = monitor or get_monitor()
        handler = type("MonitorHandler", (_Handler,), {"monitor": self.monitor})
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise MonitorError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                               "pick another --port (or 0 for any free one)") from None
        self.httpd.daemon_threads = True
        self.host = host
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> MonitorServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="noodle-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (what ``noodle serve`` does)."""
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def serve(monitor: Monitor | None = None, host: str = "127.0.0.1", port: int = 8080) -> MonitorServer:
    """Start the API and dashboard in the background and return the running server."""
    return MonitorServer(monitor, host, port).start()
