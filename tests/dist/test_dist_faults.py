"""Fault injection on real worker processes: SIGKILL mid-map, tasks that crash workers, GPU routing.

This module has its own cluster because it kills workers: two single-thread
worker processes, the first declaring a (label-only) GPU, and allowed_failures=1
so a task that crashes every worker is failed after two deaths instead of four.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time

import dist_workfns as w
import pytest

from noodle.dist import Processor
from noodle.errors import DistError, WorkerCrashError


@pytest.fixture(scope="module")
def fproc():
    with Processor(n_workers=2, threads_per_worker=1, gpus=1, allowed_failures=1, port=0) as p:
        yield p


def _wait_for_two_workers(proc: Processor) -> None:
    proc.client.wait_for_workers(2, timeout=30)
    deadline = time.monotonic() + 30
    while len(proc.worker_pids()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)


def test_gpu_work_lands_only_on_the_worker_that_declared_a_gpu(fproc):
    infos = fproc.workers()
    gpu_workers = [i for i in infos if i.resources.get("GPU") == 1]
    assert len(infos) == 2 and len(gpu_workers) == 1
    gpu_pid = gpu_workers[0].pid
    tasks = [fproc.submit(w.where, i, resources={"GPU": 1}) for i in range(12)]
    assert set(fproc.gather(tasks)) == {gpu_pid}
    assert set(fproc.map(w.where, range(12), chunk_size=1, resources={"GPU": 1})) == {gpu_pid}
    # without the resource both workers take work
    pids = set(fproc.map(functools.partial(w.square_and_pid, seconds=0.05), range(20), chunk_size=1))
    assert {pid for _, pid in pids} == {i.pid for i in infos}


def test_worker_killed_by_pid_mid_map_loses_and_duplicates_nothing(fproc):
    _wait_for_two_workers(fproc)
    pids = fproc.worker_pids()
    victim = sorted(pids.values())[0]
    killer = threading.Timer(0.6, os.kill, (victim, signal.SIGKILL))
    killer.start()
    results = fproc.map(functools.partial(w.square_and_pid, seconds=0.1), range(40), chunk_size=1)
    killer.join()
    assert [v for v, _ in results] == [x * x for x in range(40)]
    ran_on = [pid for _, pid in results]
    assert victim in ran_on, "the victim did work before it was killed"
    assert ran_on[-1] != victim, "the tail of the map ran elsewhere after the kill"
    _wait_for_two_workers(fproc)
    assert victim not in fproc.worker_pids().values()  # the nanny started a new process


def test_worker_killed_while_streaming_unordered_results(fproc):
    _wait_for_two_workers(fproc)
    victim = sorted(fproc.worker_pids().values())[-1]
    seen: list[int] = []
    stream = fproc.map(functools.partial(w.square_and_pid, seconds=0.1), range(30), chunk_size=2, ordered=False)
    for index, (value, _pid) in stream:
        assert value == index * index
        seen.append(index)
        if len(seen) == 4:
            os.kill(victim, signal.SIGKILL)
    assert sorted(seen) == list(range(30))  # every index once: none lost, none twice
    _wait_for_two_workers(fproc)


def test_task_that_always_crashes_its_worker_ends_in_a_clear_error(fproc):
    _wait_for_two_workers(fproc)
    with pytest.raises(WorkerCrashError, match=r"killed 2 worker process\(es\).*allowed-failures=1"):
        fproc.submit(w.crash).result()
    _wait_for_two_workers(fproc)
    with pytest.raises(WorkerCrashError, match=r"killed 2 worker process\(es\)") as info:
        fproc.map(w.crash_on, range(6), chunk_size=2)
    assert isinstance(info.value, DistError)
    # item 3 is in chunk 1; Dask may also blame a chunk that ran beside it on a dying worker,
    # and noodle then names both
    assert "chunk 1 (items 2..3)" in str(info.value), str(info.value)
    _wait_for_two_workers(fproc)
    assert fproc.map(w.square, range(6)) == [0, 1, 4, 9, 16, 25]  # the cluster recovered
