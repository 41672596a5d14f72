"""The HTTP API and dashboard: a small asyncio HTTP/1.1 server on 127.0.0.1 by default.

Why asyncio from the standard library and not ``ThreadingHTTPServer``: a
dashboard is polled by many tabs and scraped by Prometheus, and one slow or
stalled client must not cost a thread, nor hold a file descriptor forever.
Here an idle or stalled connection costs one coroutine and one descriptor:

- the listen backlog is 1024, so bursts of connections queue in the kernel
  instead of being dropped into SYN retries (seconds of delay each);
- every read has a timeout (``read_timeout``): a client that connects and
  sends nothing, or half a request line, gets a 408 and is closed;
- open connections are capped below the process's open-file limit; when the
  cap is reached the connection idle the longest is closed to make room, so a
  flood of stalled sockets cannot starve a normal client or the sampler;
- route handlers run on a small bounded thread pool, so a slow answer (an HTML
  flame graph) never blocks the event loop that reads other requests;
- HTTP/1.1 keep-alive, so a polling dashboard reuses one connection.

Every error, including a malformed request line or oversized headers, gets a
JSON body ``{"error": ..., "status": ...}`` that says what was wrong, never a
traceback or an HTML page. A client that disconnects early is counted in
``noodle_monitor_http_disconnects_total``, not logged as a failure.

Routes: ``/`` (dashboard), ``/metrics`` (Prometheus text), ``/api/metrics``,
``/api/history?since=``, ``/api/alerts``, ``/api/bottlenecks?window=``,
``/api/summary?window=``, ``/api/profile?format=json|speedscope|html``,
``/api/status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import math
import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from noodle.errors import MonitorError
from noodle.monitor.core import Monitor, get_monitor
from noodle.monitor.profiler import latest_profile

log = logging.getLogger("noodle.monitor.http")

BACKLOG = 1024  # pending connections the kernel queues for us (capped by net.core.somaxconn)
MAX_HEAD = 16 * 1024  # request line + headers, bytes
MAX_BODY = 64 * 1024  # a GET with a body is odd but legal; larger ones are refused
FD_RESERVE = 64  # descriptors kept free for the sampler, NVML, logs and the listening socket
_METHOD = re.compile(r"^[A-Z]{1,20}$")
_VERSION = re.compile(r"^HTTP/(\d)\.(\d)$")

Response = tuple[int, str, bytes]  # status, content type, body


class _BadRequest(Exception):
    """A request the API refuses, with the HTTP status to answer."""

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


def _json(status: int, data: Any) -> Response:
    return status, "application/json", json.dumps(data, default=str).encode("utf-8")


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message, "status": status})


# routes: (monitor, query) -> response ------------------------------------------------------------------

def r_dashboard(m: Monitor, query: dict[str, list[str]]) -> Response:
    return 200, "text/html; charset=utf-8", _dashboard_html()


def r_prometheus(m: Monitor, query: dict[str, list[str]]) -> Response:
    return 200, "text/plain; version=0.0.4; charset=utf-8", m.prometheus_text().encode("utf-8")


def r_metrics(m: Monitor, query: dict[str, list[str]]) -> Response:
    events = [{"kind": e.kind, "time": e.time, "data": e.data} for e in m.registry.events()[-100:]]
    return _json(200, {"time": time.time(), "resources": m.resources(), "metrics": m.registry.snapshot(),
                       "events": events})


def r_history(m: Monitor, query: dict[str, list[str]]) -> Response:
    since = _float_param(query, "since", 0.0)
    assert since is not None
    if since < 0:  # relative: since=-60 means the last minute
        since = time.time() + since
    return _json(200, {"time": time.time(), "interval": m.interval, "points": m.history.since(since)})


def r_alerts(m: Monitor, query: dict[str, list[str]]) -> Response:
    since = _float_param(query, "since", 0.0)
    return _json(200, {"active": [a.to_json() for a in m.alerts.active()],
                       "recent": [a.to_json() for a in m.alerts.history(since or 0.0)][-200:]})


def r_bottlenecks(m: Monitor, query: dict[str, list[str]]) -> Response:
    window = _float_param(query, "window", 300.0, lo=1.0)
    assert window is not None
    return _json(200, {"window": window, "bottlenecks": [b.to_json() for b in m.bottlenecks(window)]})


def r_summary(m: Monitor, query: dict[str, list[str]]) -> Response:
    return _json(200, m.summary(_float_param(query, "window", None, lo=1.0)))


def r_profile(m: Monitor, query: dict[str, list[str]]) -> Response:
    fmt = (query.get("format") or ["json"])[0]
    if fmt not in ("json", "speedscope", "html"):
        raise _BadRequest(400, f"format must be json, speedscope or html, got {fmt!r}")
    session = latest_profile()
    if session is None:
        raise _BadRequest(404, "no profile has been taken in this process yet "
                          "(use nd.profile() or noodle run --profile)")
    from noodle.monitor.render import to_html, to_speedscope

    if fmt == "html":
        return 200, "text/html; charset=utf-8", to_html(session).encode("utf-8")
    return _json(200, session.to_json() if fmt == "json" else to_speedscope(session))


def r_status(m: Monitor, query: dict[str, list[str]]) -> Response:
    return _json(200, {"time": time.time(), "started": m.started, "interval": m.interval,
                       "retention": m.retention, "alert_threshold": m.threshold,
                       "sampling": m.running, "gpu": m.sampler.has_gpu, "points": len(m.history)})


ROUTES: dict[str, tuple[Callable[[Monitor, dict[str, list[str]]], Response], tuple[str, ...]]] = {
    "/": (r_dashboard, ()),
    "/metrics": (r_prometheus, ()),
    "/api/metrics": (r_metrics, ()),
    "/api/history": (r_history, ("since",)),
    "/api/alerts": (r_alerts, ("since",)),
    "/api/bottlenecks": (r_bottlenecks, ("window",)),
    "/api/summary": (r_summary, ("window",)),
    "/api/profile": (r_profile, ("format",)),
    "/api/status": (r_status, ()),
}


def dispatch(monitor: Monitor, target: str) -> Response:
    """Answer one GET for ``target`` (path and query); every failure becomes a JSON error."""
    url = urlsplit(target)
    try:
        query = parse_qs(url.query, keep_blank_values=True, strict_parsing=False)
        route = ROUTES.get(url.path.rstrip("/") or "/")
        if route is None:
            raise _BadRequest(404, f"no such path {url.path!r}; try one of: {', '.join(sorted(ROUTES))}")
        handler, allowed = route
        unknown = sorted(set(query) - set(allowed))
        if unknown:
            raise _BadRequest(400, f"unknown parameter(s) {unknown} for {url.path}; allowed: {list(allowed)}")
        return handler(monitor, query)
    except _BadRequest as exc:
        return _error(exc.status, str(exc))
    except MonitorError as exc:
        return _error(400, str(exc))
    except Exception as exc:  # keep the server up; say what broke
        log.exception("monitor API %s failed", target)
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")


def _fd_budget(wanted: int) -> int:
    """How many client connections fit under the open-file limit, leaving ``FD_RESERVE`` spare."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return wanted
    if soft == resource.RLIM_INFINITY:
        return wanted
    try:
        import psutil

        in_use = psutil.Process().num_fds()
    except Exception:  # not on this platform: assume a modest baseline
        in_use = 64
    return max(8, min(wanted, soft - in_use - FD_RESERVE))


class _Conn:
    """One client connection: its writer and whether it is waiting for a request (idle)."""

    __slots__ = ("writer", "idle")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.idle = True


class MonitorServer:
    """The API server on a background thread. ``port=0`` picks a free port (see ``.port``/``.url``).

    ``read_timeout`` bounds every wait for a client (request head, body, or the next request on a
    kept-alive connection) and every write; ``max_connections`` caps open client connections (lowered
    to fit the open-file limit); ``workers`` is the size of the thread pool that runs route handlers.

    Example::

        server = MonitorServer(monitor, port=0).start()
        print(server.url); ...; server.stop()
    """

    def __init__(self, monitor: Monitor | None = None, host: str = "127.0.0.1", port: int = 8080, *,
                 read_timeout: float = 10.0, max_connections: int = 1024, workers: int = 8) -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise MonitorError(f"port {port!r} must be an integer in 0..65535 (0 = any free port)")
        if not (isinstance(read_timeout, (int, float)) and math.isfinite(read_timeout) and read_timeout > 0):
            raise MonitorError(f"read_timeout {read_timeout!r} must be a number of seconds > 0")
        if not isinstance(max_connections, int) or max_connections < 1:
            raise MonitorError(f"max_connections {max_connections!r} must be an integer >= 1")
        if not isinstance(workers, int) or workers < 1:
            raise MonitorError(f"workers {workers!r} must be an integer >= 1")
        self.monitor = monitor or get_monitor()
        self.read_timeout = float(read_timeout)
        self.workers = workers
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self.sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
        except OSError as exc:
            raise MonitorError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                               "pick another --port (or 0 for any free one)") from None
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.max_connections = _fd_budget(max_connections)
        reg = self.monitor.registry
        self._requests = reg.counter("noodle_monitor_http_requests_total", "Monitor API answers by status",
                                     ("code",))
        self._closed = reg.counter("noodle_monitor_http_closed_total",
                                   "Monitor API connections the server closed, by reason "
                                   "(timeout, evicted, bad_request, full)", ("reason",))
        self._disconnects = reg.counter("noodle_monitor_http_disconnects_total",
                                        "Monitor API clients that disconnected before their answer was sent")
        self._open = reg.gauge("noodle_monitor_http_connections", "Monitor API client connections open now")
        self._open.set(0)
        self._conns: OrderedDict[_Conn, None] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._date = ("", 0)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # lifecycle --------------------------------------------------------------------------------------
    def start(self) -> MonitorServer:
        """Serve on a daemon thread; returns once the server accepts connections."""
        self._thread = threading.Thread(target=self._run, name="noodle-http", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise MonitorError(f"the monitor server on {self.url} did not start within 10 s; "
                               "see the noodle.monitor.http log")
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (what ``noodle serve`` does); Ctrl-C raises
        KeyboardInterrupt after the server has closed."""
        self._run()

    def stop(self) -> None:
        """Stop serving, close every connection and the listening socket (idempotent)."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.sock.close()

    def _run(self) -> None:
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="noodle-http-worker")
        try:
            with asyncio.Runner() as runner:
                runner.get_loop().set_exception_handler(self._loop_error)
                runner.run(self._main())
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self.sock.close()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._connection, sock=self.sock, limit=MAX_HEAD)
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for conn in list(self._conns):
                conn.writer.transport.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Connection-level OS errors are the clients' business: count them, no traceback."""
        exc = context.get("exception")
        if isinstance(exc, OSError):
            if isinstance(exc, (ConnectionError, TimeoutError)):
                self._disconnects.inc()
            else:  # EMFILE on accept and the like: say it once per occurrence, briefly
                log.warning("monitor server: %s: %s", context.get("message", "socket error"), exc)
            return
        loop.default_exception_handler(context)

    # connections ------------------------------------------------------------------------------------
    def _admit(self, conn: _Conn) -> bool:
        """Make room for ``conn``: close the connection idle the longest when at the cap."""
        self._conns[conn] = None
        while len(self._conns) > self.max_connections:
            victim = next((c for c in self._conns if c.idle and c is not conn), None)
            if victim is None:  # everyone is busy being answered: refuse the newcomer
                self._conns.pop(conn, None)
                return False
            self._conns.pop(victim, None)
            victim.writer.transport.abort()
            self._closed.labels("evicted").inc()
        self._open.set(len(self._conns))
        return True

    def _http_date(self) -> str:
        now = int(time.time())
        text, at = self._date
        if at != now:
            text = email.utils.formatdate(now, usegmt=True)
            self._date = (text, now)
        return text

    async def _send(self, conn: _Conn, response: Response, head_only: bool, keep_alive: bool,
                    extra: str = "") -> None:
        status, ctype, body = response
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        head = (f"HTTP/1.1 {status} {reason}\r\nServer: noodle-monitor\r\nDate: {self._http_date()}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\nCache-Control: no-store\r\n"
                f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n{extra}\r\n").encode("latin-1")
        conn.writer.write(head if head_only else head + body)
        self._requests.labels(str(status)).inc()
        await asyncio.wait_for(conn.writer.drain(), self.read_timeout)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer)
        clean = False
        try:
            if not self._admit(conn):
                self._closed.labels("full").inc()
                await self._send(conn, _error(503, f"the monitor server has {self.max_connections} connections "
                                              "open and all are busy; retry in a moment"), False, False)
                clean = True
                return
            while await self._one_request(conn, reader):
                pass
            clean = True
        except (ConnectionError, asyncio.IncompleteReadError):
            self._disconnects.inc()
        except TimeoutError:  # a client that does not read its answer
            self._closed.labels("timeout").inc()
        except asyncio.CancelledError:  # the server is stopping
            pass
        finally:
            self._conns.pop(conn, None)
            self._open.set(len(self._conns))
            if clean:  # flush the last answer, then close
                writer.close()
            else:  # a client that is gone or does not read: drop the socket and its buffer now
                writer.transport.abort()

    async def _one_request(self, conn: _Conn, reader: asyncio.StreamReader) -> bool:
        """Read and answer one request; True when the connection stays open for another."""
        conn.idle = True
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.read_timeout)
        except TimeoutError:
            self._closed.labels("timeout").inc()
            await self._send(conn, _error(408, f"no complete request within {self.read_timeout:g} s; "
                                          "send the request line and headers promptly"), False, False)
            return False
        except asyncio.LimitOverrunError:
            self._closed.labels("bad_request").inc()
            await self._send(conn, _error(431, f"request line and headers exceed {MAX_HEAD} bytes; "
                                          "send a shorter request"), False, False)
            return False
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():  # a request cut off mid-way: the client hung up
                self._disconnects.inc()
            return False
        conn.idle = False
        self._conns.move_to_end(conn)
        try:
            method, target, keep_alive = await self._parse(head, reader)
        except _BadRequest as exc:
            self._closed.labels("bad_request").inc()
            await self._send(conn, _error(exc.status, str(exc)), False, False)
            return False
        if method not in ("GET", "HEAD"):
            await self._send(conn, _error(405, f"method {method} not allowed: the monitor API is read-only "
                                          "(GET or HEAD)"), False, False, "Allow: GET, HEAD\r\n")
            return False
        assert self._loop is not None and self._pool is not None
        response = await self._loop.run_in_executor(self._pool, dispatch, self.monitor, target)
        await self._send(conn, response, method == "HEAD", keep_alive)
        return keep_alive

    async def _parse(self, head: bytes, reader: asyncio.StreamReader) -> tuple[str, str, bool]:
        """Method, target and keep-alive from a request head; reads (and drops) a small body."""
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not _METHOD.match(parts[0]) or not parts[1] or parts[1][0] not in "/*h":
            raise _BadRequest(400, f"malformed request line {lines[0][:80]!r}; expected 'GET /path HTTP/1.1'")
        method, target, version = parts
        match = _VERSION.match(version)
        if match is None:
            raise _BadRequest(400, f"malformed HTTP version {version[:20]!r}; expected HTTP/1.1 or HTTP/1.0")
        if match.group(1) != "1":
            raise _BadRequest(505, f"HTTP version {version} is not supported; use HTTP/1.1 or HTTP/1.0")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _BadRequest(400, f"malformed header line {line[:80]!r}; expected 'Name: value'")
            headers[name.lower()] = value.strip()
        if target.startswith("http://") or target.startswith("https://"):  # absolute form
            target = urlsplit(target)._replace(scheme="", netloc="").geturl() or "/"
        if "transfer-encoding" in headers:
            raise _BadRequest(501, "chunked request bodies are not supported; the API takes GET requests "
                              "without a body")
        length_text = headers.get("content-length", "0")
        if not length_text.isdigit():
            raise _BadRequest(400, f"Content-Length {length_text[:20]!r} is not a non-negative integer")
        length = int(length_text)
        if length > MAX_BODY:
            raise _BadRequest(413, f"request body of {length} bytes is too large (at most {MAX_BODY}); "
                              "the API takes GET requests without a body")
        if length and method in ("GET", "HEAD"):
            await asyncio.wait_for(reader.readexactly(length), self.read_timeout)
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection if match.group(2) != "0" else "keep-alive" in connection
        return method, target, keep_alive and not (length and method not in ("GET", "HEAD"))


def serve(monitor: Monitor | None = None, host: str = "127.0.0.1", port: int = 8080) -> MonitorServer:
    """Start the API and dashboard in the background and return the running server."""
    return MonitorServer(monitor, host, port).start()
