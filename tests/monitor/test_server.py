"""The HTTP API over a real server on a loopback port."""

import json
import socket
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
        assert srv.httpd.server_address[0] == "127.0.0.1"
    finally:
        srv.httpd.server_close()


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


def test_garbage_on_the_socket_does_not_kill_the_server(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"\x00\x01garbage\r\n\r\n")
        s.recv(1000)
    assert get(server, "/api/status")[0] == 200


def test_port_in_use_is_a_clear_error(server, monitor):
    with pytest.raises(MonitorError, match="cannot listen"):
        MonitorServer(monitor, "127.0.0.1", server.port)
    with pytest.raises(MonitorError, match="0..65535"):
        MonitorServer(monitor, "127.0.0.1", 70000)
