"""The worker_stalled alert on real maps: it fires while a map is active and no chunk finishes, and it
resolves when chunks finish again or the map ends, however it ends (issue 10, point 19).

The alert's floor is lowered from 60 s to about a second so each test takes a few seconds; the
monitor is ticked by hand (what its sampler thread does every interval).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import cloudpickle
import pytest

from noodle import metrics
from noodle.dist import Processor
from noodle.dist.progress import MAPS_ACTIVE
from noodle.errors import TaskTimeoutError
from noodle.monitor import Monitor
from noodle.monitor.alerts import STALL_FIELD, stall_fields

# the workers get this module's functions by value, whatever their sys.path
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def gated(x: int, gates: dict[int, str], fail: frozenset[int] = frozenset(), seconds: float = 0.0) -> int:
    """``x`` after ``seconds``, once the file ``gates[x]`` exists (if any); raises for items in ``fail``."""
    path = gates.get(x)
    deadline = time.monotonic() + 30
    while path is not None and not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(seconds)
    if x in fail:
        raise ValueError(f"item {x} failed")
    return x


@pytest.fixture(scope="module")
def proc():
    with Processor(n_workers=2, threads_per_worker=1, port=0) as p:
        yield p


@pytest.fixture
def mon():
    m = Monitor(interval=1.0, retention=600, threshold=0.8, registry=metrics.registry, gpu=False)
    m.stall_seconds = 1.0
    yield m
    m.stop()


def _stalled(mon: Monitor) -> list[Any]:
    return [a for a in mon.alerts.active() if a.rule == "worker_stalled"]


def _tick_until(mon: Monitor, cond: Callable[[], bool], seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        mon.tick()
        if cond():
            return True
        time.sleep(0.1)
    return False


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _assert_idle(mon: Monitor) -> None:
    mon.tick()
    assert MAPS_ACTIVE.value() == 0
    assert stall_fields(metrics.registry, time.time(), mon.stall_seconds) == {STALL_FIELD: 0.0}
    assert _stalled(mon) == []


def test_a_stalled_map_fires_and_resolves_when_chunks_finish_again(proc, mon, tmp_path):
    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    gates = {2: first, 3: first, 4: second, 5: second}  # 0 and 1 finish; then both workers wait
    fn = functools.partial(gated, gates=gates)
    thread, out = _in_thread(lambda: proc.map(fn, range(6), chunk_size=1, timeout=60, progress=False))
    try:
        assert _tick_until(mon, lambda: bool(_stalled(mon))), "no worker_stalled alert while the map stalled"
        assert MAPS_ACTIVE.value() == 1 and thread.is_alive()
        open(first, "w").close()  # chunks 2 and 3 finish; 4 and 5 wait again
        assert _tick_until(mon, lambda: not _stalled(mon)), "the alert did not resolve when chunks finished"
        assert thread.is_alive(), "the map ended: the resolution was not the chunks finishing again"
        history = [(a.rule, a.state) for a in mon.alerts.history() if a.rule == "worker_stalled"]
        assert history == [("worker_stalled", "firing"), ("worker_stalled", "resolved")]
    finally:
        open(first, "w").close()
        open(second, "w").close()
        thread.join(30)
    assert out == {"value": list(range(6))}
    _assert_idle(mon)


def test_failed_timed_out_and_abandoned_maps_leave_nothing_firing(proc, mon, tmp_path):
    gate = str(tmp_path / "gate")
    failing = functools.partial(gated, gates={2: gate}, fail=frozenset({2}))
    thread, out = _in_thread(lambda: proc.map(failing, range(4), chunk_size=1, timeout=60, progress=False))
    try:
        assert _tick_until(mon, lambda: bool(_stalled(mon)))
    finally:
        open(gate, "w").close()  # chunk 2 now raises: the map fails
        thread.join(30)
    assert isinstance(out.get("error"), ValueError), out
    _assert_idle(mon)

    gate2 = str(tmp_path / "gate2")
    stuck = functools.partial(gated, gates={2: gate2})
    try:
        with pytest.raises(TaskTimeoutError):  # its own stall timeout cancels it
            proc.map(stuck, range(3), chunk_size=1, timeout=1.5, progress=False)
    finally:
        open(gate2, "w").close()  # the cancelled chunk still runs on its worker: let it go
    _assert_idle(mon)

    stream = proc.map(functools.partial(gated, gates={}), range(4), chunk_size=1, ordered=False, progress=False)
    assert _tick_until(mon, lambda: MAPS_ACTIVE.value() == 0, 10), "a stream never read stayed active"
    del stream
    _assert_idle(mon)


def test_a_healthy_map_never_fires_even_with_chunks_longer_than_the_floor(proc, mon):
    mon.stall_seconds = 0.5  # each chunk takes 0.8 s: the floor alone would fire between chunks
    fn = functools.partial(gated, gates={}, seconds=0.8)
    thread, out = _in_thread(lambda: proc.map(fn, range(6), chunk_size=1, timeout=60, progress=False))
    ratios = []
    while thread.is_alive():
        mon.tick()
        ratios.append(stall_fields(metrics.registry, time.time(), mon.stall_seconds).get(STALL_FIELD))
        assert _stalled(mon) == [], ratios
        time.sleep(0.1)
    thread.join()
    assert out == {"value": list(range(6))}
    assert [a for a in mon.alerts.history() if a.rule == "worker_stalled"] == []
    _assert_idle(mon)
