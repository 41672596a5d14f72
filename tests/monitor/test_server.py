"""The HTTP API over a real server on a loopback port."""

import http.client
import json
import socket
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from noodle.errors import MonitorError
from noodle.monitor import MonitorServer, profile


@pytest.fixture
def server(monitor, plant_ops):
    plant_ops(monitor.registry)
    monitor.registry.counter("noodle_cache_hits_total", "hits", ("tier",)).labels("memory").inc(5)
    monitor.tick()
    monitor.tick()
    srv = MonitorServer(monitor, "127.0.0.1", 0).start()
    yield srv
    srv.stop()


def get(srv, path, method="GET"):
    req = urllib.request.Request(srv.url + path, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type"), exc.read()


def test_binds_loopback_by_default(monitor):
    srv = MonitorServer(monitor, port=0)
    try:
        assert srv.sock.getsockname()[0] == "127.0.0.1"
    finally:
        srv.stop()


def test_prometheus_text_parses(server):
    status, ctype, body = get(server, "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    ops = fams["noodle_op_seconds"]
    count = [s for s in ops.samples if s.name == "noodle_op_seconds_count"]
    assert count[0].value == 200 and count[0].labels == {"op": "add", "device": "cpu", "backend": "numpy"}
    assert fams["noodle_cache_hits"].type == "counter"
    assert "noodle_monitor_tick_seconds" in fams


def test_json_routes(server):
    status, ctype, body = get(server, "/api/metrics")
    data = json.loads(body)
    assert status == 200 and ctype == "application/json"
    assert data["metrics"]["noodle_op_seconds"]["series"][0]["count"] == 200

    hist = json.loads(get(server, "/api/history?since=-3600")[2])
    assert len(hist["points"]) == 2 and "cpu" in hist["points"][0]
    newest = hist["points"][-1]["t"]
    assert json.loads(get(server, f"/api/history?since={newest + 1}")[2])["points"] == []

    server.monitor.alerts.raise_alert("planted", "critical", "planted by the test")
    alerts = json.loads(get(server, "/api/alerts")[2])
    assert [a["rule"] for a in alerts["active"]][0] == "planted"

    bn = json.loads(get(server, "/api/bottlenecks?window=60")[2])
    assert bn["window"] == 60 and isinstance(bn["bottlenecks"], list)

    summary = json.loads(get(server, "/api/summary?window=30")[2])
    assert summary["ops"]["add/cpu/numpy"]["count"] == 200 and summary["cache"]["hits"] == 5

    st = json.loads(get(server, "/api/status")[2])
    assert st["interval"] == 1.0 and st["points"] == 2


def test_dashboard_page_is_self_contained(server):
    status, ctype, body = get(server, "/")
    html = body.decode()
    assert status == 200 and ctype.startswith("text/html")
    import re

    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # nothing fetched from elsewhere
    assert "<script>" in html and "/api/history" in html


def test_profile_route(server):
    from noodle.monitor import profiler as prof_mod

    prof_mod._latest = None
    status, _, body = get(server, "/api/profile")
    assert status == 404 and "no profile" in json.loads(body)["error"]
    with profile(interval=0.002):
        sum(i * i for i in range(300_000))
    data = json.loads(get(server, "/api/profile")[2])
    assert data["format"] == "noodle-profile/1" and data["sample_count"] > 0
    sc = json.loads(get(server, "/api/profile?format=speedscope")[2])
    assert sc["profiles"][0]["type"] == "sampled"
    status, ctype, body = get(server, "/api/profile?format=html")
    assert status == 200 and b"<svg" in body


@pytest.mark.parametrize("path, status, words", [
    ("/api/history?since=abc", 400, "must be a number"),
    ("/api/history?since=nan", 400, "finite"),
    ("/api/history?since=1&since=2", 400, "once"),
    ("/api/history?until=5", 400, "unknown parameter"),
    ("/api/bottlenecks?window=0", 400, ">= 1.0"),
    ("/api/profile?format=svg", 400, "format must be"),
    ("/api/nope", 404, "no such path"),
    ("/etc/passwd", 404, "no such path"),
])
def test_malformed_requests_get_json_errors(server, path, status, words):
    code, ctype, body = get(server, path)
    assert code == status and ctype == "application/json"
    err = json.loads(body)
    assert words in err["error"] and err["status"] == status


def test_write_methods_are_refused(server):
    code, ctype, body = get(server, "/api/alerts", method="POST")
    assert code == 405 and "read-only" in json.loads(body)["error"]


def _raw(port: int, data: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the answer until the server closes; status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("data, status, words", [
    (b"\x00\x01garbage\r\n\r\n", 400, "malformed request line"),
    (b"GET /api/status HTTP/2.0\r\n\r\n", 505, "not supported"),
    (b"GET /api/status SPDY/3\r\n\r\n", 400, "HTTP version"),
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 431, "exceed"),
    (b"GET /api/status HTTP/1.1\r\nno colon here\r\n\r\n", 400, "malformed header"),
    (b"BREW /api/status HTTP/1.1\r\n\r\n", 405, "read-only"),
    (b"GET /api/status HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501, "chunked"),
    (b"GET /api/status HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413, "too large"),
])
def test_malformed_http_gets_json_errors(server, data, status, words):
    code, headers, body = _raw(server.port, data)
    assert code == status and headers["content-type"] == "application/json"
    err = json.loads(body)
    assert words in err["error"] and err["status"] == status
    assert get(server, "/api/status")[0] == 200  # and the server is still there


def test_stalled_client_is_answered_408_and_closed(monitor):
    srv = MonitorServer(monitor, "127.0.0.1", 0, read_timeout=0.5).start()
    try:
        t0 = time.perf_counter()
        code, headers, body = _raw(srv.port, b"GET /api/sta")  # half a request line, then nothing
        assert code == 408 and "no complete request" in json.loads(body)["error"]
        assert time.perf_counter() - t0 < 5
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:  # sends nothing at all
            s.settimeout(10)
            assert b"408" in s.recv(1000).split(b"\r\n")[0]
        assert monitor.registry.get("noodle_monitor_http_closed_total").value("timeout") == 2
    finally:
        srv.stop()


def test_keep_alive_serves_many_requests_on_one_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for path in ("/api/status", "/api/metrics", "/api/nope", "/api/status"):
            conn.request("GET", path)
            resp = conn.getresponse()
            json.loads(resp.read())
            assert resp.getheader("Connection") == "keep-alive"
        conn.request("HEAD", "/api/status")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b"" and int(resp.getheader("Content-Length")) > 0
    finally:
        conn.close()


def test_connections_over_the_cap_evict_the_longest_idle(monitor):
    srv = MonitorServer(monitor, "127.0.0.1", 0, max_connections=8).start()
    idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(20)]
    try:
        time.sleep(0.3)
        assert get(srv, "/api/status")[0] == 200
        assert monitor.registry.get("noodle_monitor_http_connections").value() <= 8
        assert monitor.registry.get("noodle_monitor_http_closed_total").value("evicted") >= 12
        assert idle[0].recv(10) == b""  # the oldest was closed to make room
    finally:
        for s in idle:
            s.close()
        srv.stop()


def test_port_in_use_is_a_clear_error(server, monitor):
    with pytest.raises(MonitorError, match="cannot listen"):
        MonitorServer(monitor, "127.0.0.1", server.port)
    with pytest.raises(MonitorError, match="0..65535"):
        MonitorServer(monitor, "127.0.0.1", 70000)
    with pytest.raises(MonitorError, match="read_timeout"):
        MonitorServer(monitor, "127.0.0.1", 0, read_timeout=0)
