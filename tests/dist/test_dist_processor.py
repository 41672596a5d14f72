"""Processor on a real local cluster of worker processes: map, submit, priorities, retries, timeouts."""

from __future__ import annotations

import functools
import operator
import time

import dist_workfns as w
import pytest

from noodle import metrics
from noodle.dist import Processor
from noodle.dist.progress import want_bar
from noodle.errors import DistError, TaskTimeoutError


def test_map_returns_results_in_input_order(proc):
    items = list(range(-50, 53))
    assert proc.map(w.square, items, chunk_size=7) == [x * x for x in items]


def test_map_default_chunk_size_and_single_item_chunks(proc):
    assert proc.map(w.square, range(250)) == [x * x for x in range(250)]
    assert proc.map(w.square, range(5), chunk_size=1) == [0, 1, 4, 9, 16]
    assert proc.map(w.square, []) == []


def test_map_runs_on_worker_processes_not_here(proc):
    import os

    pids = set(proc.map(w.where, range(40), chunk_size=1))
    assert os.getpid() not in pids
    assert pids <= set(proc.worker_pids().values())


def test_unordered_map_streams_each_index_exactly_once(proc):
    pairs = list(proc.map(w.slow_square, range(30), chunk_size=4, ordered=False))
    assert sorted(i for i, _ in pairs) == list(range(30))
    assert all(v == i * i for i, v in pairs)


def test_reduce_on_workers_keeps_input_order(proc):
    words = [f"{i}," for i in range(200)]
    # concatenation is associative but not commutative: any reordering would show
    assert proc.map(str, words, chunk_size=9, reduce=w.concat) == "".join(words)
    assert proc.map(w.square, range(1000), chunk_size=13, reduce=max) == 999 * 999
    with pytest.raises(DistError, match="at least one item"):
        proc.map(w.square, [], reduce=max)


def test_reduce_of_a_single_chunk_returns_its_value(proc):
    """One chunk: the reduction's result is that chunk's own future, which must not be released
    before it is read (it was, once finished chunks were released as they arrived)."""
    assert proc.map(len, ["tasks", "on", "dask"], reduce=operator.add) == 11
    assert proc.map(w.square, [7], reduce=max) == 49


def test_a_raising_item_names_its_chunk_and_keeps_its_type(proc):
    with pytest.raises(ValueError, match="item 7 is bad") as info:
        proc.map(w.bad_item, range(20), chunk_size=5)
    assert any("chunk 1 (items 5..9)" in note for note in getattr(info.value, "__notes__", []))


def test_submit_and_gather(proc):
    assert proc.submit(pow, 3, 4).result() == 81
    tasks = [proc.submit(w.square, i, priority=i % 3) for i in range(20)]
    assert proc.gather(tasks) == [i * i for i in range(20)]
    assert proc.submit(divmod, 7, 2).key and tasks[0].done()


def test_priority_moves_tasks_ahead_on_a_saturated_cluster(proc):
    # both single-thread workers are busy with blockers; then low-priority tasks are queued
    # first and high-priority ones after them: the high ones must start first
    blockers = [proc.submit(w.started_at, "block", 0.8) for _ in range(2)]
    time.sleep(0.2)
    low = [proc.submit(w.started_at, "low", 0.02, priority=0) for _ in range(10)]
    high = [proc.submit(w.started_at, "high", 0.02, priority=10) for _ in range(10)]
    proc.gather(blockers)
    starts = sorted(proc.gather(low + high), key=lambda r: r[1])
    first_ten = [tag for tag, _, _ in starts[:10]]
    assert first_ten.count("high") >= 8, first_ten


def test_retries_recover_a_flaky_task(proc, tmp_path):
    state = tmp_path / "calls"
    assert proc.submit(w.flaky, str(state), 2, retries=2).result() == "ok after 2 failures"
    assert state.read_text() == "3"
    state2 = tmp_path / "calls2"
    with pytest.raises(ConnectionError, match="flaky failure 2 of 3"):
        proc.submit(w.flaky, str(state2), 3, retries=1).result()
    state3 = tmp_path / "calls3"
    assert proc.map(w.flaky_item, [(str(state3), 1)], chunk_size=1, retries=1) == ["ok after 1 failures"]


def test_submit_timeout_cancels_and_reports(proc):
    before = metrics.registry.get("noodle_dist_tasks_total").value("timeout")
    task = proc.submit(w.slow_square, 3, 1.0, timeout=0.2)
    t0 = time.monotonic()
    with pytest.raises(TaskTimeoutError, match="did not finish within 0.2 s and was cancelled"):
        task.result()
    assert time.monotonic() - t0 < 0.9  # it did not wait for the task
    assert task.status == "cancelled"
    assert metrics.registry.get("noodle_dist_tasks_total").value("timeout") == before + 1
    assert any(e.kind == "dist_timeout" for e in metrics.events("dist_timeout"))
    with pytest.raises(TaskTimeoutError):
        proc.gather([proc.submit(w.slow_square, 2, 1.0, timeout=0.2)])
    time.sleep(1.0)  # let the abandoned sleeps finish so later tests get free workers


def test_gather_judges_each_task_by_its_own_deadline(proc):
    # the quick task's short deadline passes while the slow task (long deadline) is still running:
    # gather must keep waiting for the slow one, not cancel it at the nearest deadline
    quick = proc.submit(w.slow_square, 2, 0.0, timeout=0.3)
    slow = proc.submit(w.slow_square, 3, 0.8, timeout=30)
    assert proc.gather([quick, slow]) == [4, 9]
    assert slow.status == "finished"


def test_slow_stream_consumer_is_not_a_stall(proc):
    # the stall limit counts chunks finishing on the cluster, not the caller's pace: chunks keep
    # finishing every ~0.5 s (10 chunks, 2 workers), while the caller sits on the first result for
    # longer than the limit; nothing may be cancelled and no timeout may be counted
    before = metrics.registry.get("noodle_dist_tasks_total").value("timeout")
    stream = proc.map(functools.partial(w.slow_square, seconds=0.5), range(10), chunk_size=1,
                      ordered=False, timeout=1.5, progress=False)
    pairs = [next(stream)]
    time.sleep(2.5)
    pairs.extend(stream)
    assert sorted(pairs) == [(i, i * i) for i in range(10)]
    assert metrics.registry.get("noodle_dist_tasks_total").value("timeout") == before


def test_map_stall_timeout_cancels_every_outstanding_chunk(proc):
    with pytest.raises(TaskTimeoutError, match="no chunk finished within 0.3 s"):
        proc.map(functools.partial(w.slow_square, seconds=1.0), [1, 2, 3, 4], chunk_size=1, timeout=0.3,
                 progress=False)
    time.sleep(1.0)
    # the cluster is still usable afterwards
    assert proc.map(w.square, range(4)) == [0, 1, 4, 9]


def test_progress_and_per_worker_counts_reach_the_registry(proc):
    reg = metrics.registry

    def per_worker() -> dict[str, float]:
        gauge = reg.get("noodle_dist_worker_tasks")
        return {k[0]: c.value for k, c in gauge.children()} if gauge else {}

    completed_before = reg.get("noodle_dist_tasks_total").value("completed")
    workers_before = per_worker()
    proc.map(w.square, range(100), chunk_size=10, progress=False)
    assert reg.get("noodle_dist_progress_ratio").value() == 1.0
    assert reg.get("noodle_dist_tasks_total").value("completed") == completed_before + 10
    after = per_worker()
    delta = {k: v - workers_before.get(k, 0.0) for k, v in after.items() if v != workers_before.get(k, 0.0)}
    assert sum(delta.values()) == 10, delta  # one count per chunk, none twice
    assert set(delta) <= {i.address for i in proc.workers(pids=False)}, (delta, proc.workers(pids=False))


def test_progress_bar_only_on_a_terminal_or_when_asked(proc, capsys):
    import io

    from rich.console import Console

    from noodle.dist.progress import MapProgress

    assert want_bar(None) is False  # pytest's stderr is not a terminal
    assert want_bar(True) is True and want_bar(False) is False
    assert proc.map(w.square, range(30), chunk_size=5, progress=True) == [x * x for x in range(30)]
    out = io.StringIO()
    with MapProgress(30, 6, show_bar=True, console=Console(file=out, force_terminal=True, width=100)) as bar:
        for _ in range(6):
            bar.chunk_done(5, "tcp://127.0.0.1:1")
    assert "noodle map" in out.getvalue() and "30/30" in out.getvalue()
    quiet = MapProgress(30, 6, show_bar=False)
    quiet.chunk_done(30, "tcp://127.0.0.1:1")
    assert quiet._bar is None and metrics.registry.get("noodle_dist_progress_ratio").value() == 1.0


def test_workers_report_health(proc):
    infos = proc.workers()
    assert len(infos) == 2
    for info in infos:
        assert info.status == "running" and info.nthreads == 1
        assert info.memory_bytes > 0 and info.pid and info.heartbeat_age < 30


def test_bad_arguments_are_clear_errors():
    with pytest.raises(DistError, match="MAX_WORKERS"):
        Processor(n_workers=10_000)
    with pytest.raises(DistError, match="tcp://host:port"):
        Processor(address="127.0.0.1:8786")
    with pytest.raises(DistError, match="n_workers"):
        Processor(n_workers=0)


def test_disabled_distributed_processing_is_refused():
    import os

    import noodle.config as config

    try:
        config.reload({**os.environ, "NOODLE_SYNTAX_FIXER_DISTRIBUTED_PROCESSING": "false"})
        with pytest.raises(DistError, match="disabled"):
            Processor()
    finally:
        config.reload()


def test_report_section_shows_the_distributed_work(proc):
    from rich.console import Console

    from noodle.report import section_dist

    proc.map(w.square, range(20), chunk_size=5, progress=False)
    console = Console(record=True, width=200)
    console.print(section_dist.render(metrics.registry))
    text = console.export_text()
    assert "Distributed work" in text and "completed" in text
    assert any(i.address in text for i in proc.workers(pids=False))
    assert section_dist.render(metrics.Registry()) is None  # nothing to say without dist work
