"""The monitor API under load, stalled sockets and rude clients, against a real ``noodle serve`` process.

Why a subprocess: the server's file-descriptor limit, its stderr and its answer times must be the
server's own, not shared with the test's client threads. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

NOODLE = [sys.executable, "-m", "noodle.cli"]
# requests per client in the load test; the figure (50 x 20,000) is run by hand with
# NOODLE_TEST_MONITOR_LOAD=20000
LOAD_PER_CLIENT = int(os.environ.get("NOODLE_TEST_MONITOR_LOAD", "200"))
LOAD_CLIENTS = 50
LOAD_PATHS = ("/api/status", "/api/metrics", "/api/alerts", "/metrics", "/api/history?since=-5")


class Served:
    """A running ``noodle serve --port 0``: its url, port, and the stderr it wrote."""

    def __init__(self, proc: subprocess.Popen, url: str, stderr_path: Path) -> None:
        self.proc, self.url, self.stderr_path = proc, url, stderr_path
        self.port = int(url.rsplit(":", 1)[1])

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()


def _serve(tmp_path: Path, nofile: int | None = None) -> Served:
    env = dict(os.environ, NOODLE_SYNTAX_FIXER_MONITORING_INTERVAL="1", NOODLE_CACHE_DIR=str(tmp_path / "c"))
    stderr_path = tmp_path / "serve.stderr"

    def limit() -> None:
        if nofile is not None:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

    proc = subprocess.Popen([*NOODLE, "serve", "--port", "0", "--interval", "1"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=stderr_path.open("w"), text=True, preexec_fn=limit)
    line = proc.stdout.readline()
    if "dashboard at http://127.0.0.1:" not in line:
        proc.kill()
        raise AssertionError(f"noodle serve did not start: {line!r} {stderr_path.read_text()[-2000:]}")
    url = line.split("dashboard at ", 1)[1].split("/ ", 1)[0].rstrip("/")
    return Served(proc, url, stderr_path)


@pytest.fixture
def served(tmp_path):
    srv = _serve(tmp_path)
    yield srv
    srv.proc.send_signal(2)
    try:
        srv.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        srv.proc.kill()


def _stop(srv: Served) -> None:
    srv.proc.send_signal(2)
    try:
        srv.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        srv.proc.kill()


# --- 50 concurrent clients ---------------------------------------------------------------------------

async def _one_client(port: int, n: int, latencies: list[float], statuses: dict[int, int]) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        for i in range(n):
            path = LOAD_PATHS[i % len(LOAD_PATHS)]
            t0 = time.perf_counter()
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            lines = head.split("\r\n")
            status = int(lines[0].split()[1])
            headers = {k.strip().lower(): v.strip() for k, v in
                       (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
            await reader.readexactly(int(headers["content-length"]))
            latencies.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
            if headers.get("connection", "").lower() == "close" or lines[0].startswith("HTTP/1.0"):
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


async def _load(port: int, clients: int, per_client: int) -> tuple[list[float], dict[int, int], float]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(_one_client(port, per_client, latencies, statuses)
                                            for _ in range(clients))), timeout=max(120, per_client))
    return latencies, statuses, time.perf_counter() - t0


def test_fifty_concurrent_clients_each_answered_within_a_second(served):
    latencies, statuses, wall = asyncio.run(_load(served.port, LOAD_CLIENTS, LOAD_PER_CLIENT))
    total = LOAD_CLIENTS * LOAD_PER_CLIENT
    print(f"\n{total} requests from {LOAD_CLIENTS} clients in {wall:.2f} s: {total / wall:.0f} req/s, "
          f"max latency {max(latencies) * 1e3:.1f} ms, p99 {sorted(latencies)[int(0.99 * len(latencies))] * 1e3:.1f} ms")
    assert statuses == {200: total}
    assert max(latencies) < 1.0, f"slowest request took {max(latencies):.2f} s (the bound is 1 s)"
    assert "Traceback" not in served.stderr()


# --- stalled sockets ---------------------------------------------------------------------------------

def _raise_nofile(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"this test needs {want} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def test_stalled_sockets_do_not_stop_a_normal_client(tmp_path):
    """1,026 sockets that send nothing or half a request line, against a server limited to 1,024 open
    files: a normal client still gets every answer quickly and the sampler keeps sampling."""
    _raise_nofile(4096)
    srv = _serve(tmp_path, nofile=1024)
    stalled: list[socket.socket] = []
    try:
        for i in range(1026):  # paced a little, as a slow trickle of clients would arrive
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(0.5)
            stalled.append(s)
            try:
                s.connect(("127.0.0.1", srv.port))
                if i % 2:  # half of them send the start of a request line and stop there
                    s.send(b"GET /api/sta")
            except OSError:  # a server that cannot take more: the normal client below must still get in
                pass
            time.sleep(0.002)
        time.sleep(1.0)
        took = []
        for _ in range(10):
            t0 = time.perf_counter()
            status, _, body = srv.get("/api/status", timeout=15)
            took.append(time.perf_counter() - t0)
            assert status == 200 and json.loads(body)["sampling"] is True
        print(f"\nnormal client behind 1,026 stalled sockets: max {max(took) * 1e3:.1f} ms, "
              f"mean {sum(took) / len(took) * 1e3:.1f} ms")
        assert max(took) < 2.0, f"a normal request took {max(took):.2f} s behind stalled sockets"
        time.sleep(2.5)  # the sampler must still tick: its newest sample is fresh
        data = json.loads(srv.get("/api/metrics")[2])
        assert time.time() - data["resources"]["t"] < 3.0
        fams = {f.name: f for f in text_string_to_metric_families(srv.get("/metrics")[2].decode())}
        open_conns = fams["noodle_monitor_http_connections"].samples[0].value
        assert open_conns < 1024, "the server kept more connections open than it has file descriptors for"
    finally:
        for s in stalled:
            s.close()
        _stop(srv)
    err = srv.stderr()
    assert "Too many open files" not in err and "Traceback" not in err, err[-3000:]


# --- rude clients ------------------------------------------------------------------------------------

def test_client_disconnects_leave_no_traceback(served):
    for i in range(30):  # ask, then reset the connection before the answer is read
        s = socket.create_connection(("127.0.0.1", served.port), timeout=5)
        s.sendall(f"GET {'/' if i % 2 else '/metrics'} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    time.sleep(1.0)
    assert served.get("/api/status")[0] == 200
    err = served.stderr()
    assert "Traceback" not in err and "BrokenPipe" not in err and "ConnectionReset" not in err, err[-3000:]


# --- resource gauges ---------------------------------------------------------------------------------

def test_both_metric_endpoints_export_resources_and_process_metrics(served):
    time.sleep(1.5)  # a second sample, so the rates exist too
    status, headers, body = served.get("/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds",
                 "process_start_time_seconds", "python_info", "python_gc_objects_collected"):
        assert name in fams, f"{name} missing from /metrics"
    for name in ("noodle_cpu_utilization_ratio", "noodle_process_cpu_utilization_ratio",
                 "noodle_memory_utilization_ratio", "noodle_memory_used_bytes",
                 "noodle_disk_read_bytes_per_second", "noodle_network_receive_bytes_per_second"):
        assert name in fams and fams[name].type == "gauge", f"{name} missing from /metrics"
    assert 0.0 <= fams["noodle_cpu_utilization_ratio"].samples[0].value <= 1.0
    assert fams["noodle_memory_used_bytes"].samples[0].value > 0
    assert fams["process_resident_memory_bytes"].samples[0].value > 0

    data = json.loads(served.get("/api/metrics")[2])
    res = data["resources"]
    assert 0.0 <= res["cpu"] <= 1.0 and 0.0 < res["mem"] <= 1.0 and res["mem_used"] > 0
    assert "disk_read_bps" in res and "net_recv_bps" in res
    assert data["metrics"]["noodle_memory_used_bytes"]["series"][0]["value"] > 0
