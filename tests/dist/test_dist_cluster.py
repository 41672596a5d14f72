"""Cluster lifecycle: joining an existing scheduler by address, clean shutdown, interpreter exit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import dist_workfns as w
import psutil
import pytest
from distributed import Client, LocalCluster

from noodle.cli import main as cli_main
from noodle.dist import Processor
from noodle.errors import DistError


@pytest.fixture(scope="module")
def external_cluster():
    """A Dask cluster noodle did not start (as a remote cluster would be)."""
    cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                           scheduler_port=0, dashboard_address="127.0.0.1:0")
    yield cluster
    cluster.close()


def test_join_an_existing_scheduler_by_address(external_cluster):
    address = external_cluster.scheduler_address
    with Processor(address=address) as proc:
        assert proc.scheduler_address == address
        assert proc.map(w.square, range(30), chunk_size=4) == [x * x for x in range(30)]
        infos = proc.workers()
        assert len(infos) == 1 and infos[0].nthreads == 2
    # closing the Processor only disconnected: the cluster it joined still works
    with Client(address, set_as_default=False) as client:
        assert client.submit(w.square, 9, pure=False).result() == 81


def test_workers_command_reports_health_as_json(external_cluster, capsys):
    assert cli_main(["workers", "--address", external_cluster.scheduler_address, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["workers"]
    assert len(rows) == 1
    assert rows[0]["status"] == "running" and rows[0]["pid"] and rows[0]["memory_bytes"] > 0
    assert rows[0]["heartbeat_age_s"] < 30


def test_workers_command_starts_a_local_cluster_when_given_no_address(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps narrow tables
    assert cli_main(["workers", "--n-workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "running" in out and "heartbeat" in out and "dashboard: http://127.0.0.1:" in out


def test_unreachable_scheduler_is_a_clear_error():
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DistError, match="cannot reach the Dask scheduler"):
        Processor(address=f"tcp://127.0.0.1:{port}").start()


def test_close_shuts_the_local_cluster_down():
    proc = Processor(n_workers=1, port=0)
    assert proc._client is None  # nothing starts until first use
    assert proc.submit(w.square, 5).result() == 25
    pids = list(proc.worker_pids().values())
    proc.close()
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(psutil.pid_exists(p) for p in pids)


def test_interpreter_exit_shuts_the_local_cluster_down(tmp_path):
    script = tmp_path / "use_dist.py"
    script.write_text(textwrap.dedent("""
        import os
        from noodle.dist import Processor

        if __name__ == "__main__":
            proc = Processor(n_workers=1, port=0)
            assert proc.map(abs, [-1, -2]) == [1, 2]
            print(*proc.worker_pids().values())
            # no close(): the atexit hook must do it
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    pids = [int(p) for p in out.stdout.split()]
    assert pids
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(psutil.pid_exists(p) for p in pids)
