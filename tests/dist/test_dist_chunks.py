"""The pure bookkeeping of map: chunk plans, ordered reassembly, worker health rows (no cluster)."""

from __future__ import annotations

import pytest

from noodle.dist import OrderedResults, plan_chunks, worker_infos
from noodle.dist.chunks import group
from noodle.errors import DistError


@pytest.mark.parametrize("n,size", [(0, 3), (1, 1), (10, 3), (10, 10), (10, 100), (101, 10)])
def test_chunks_cover_every_item_once_in_order(n, size):
    chunks = plan_chunks(n, size)
    covered = [i for c in chunks for i in range(c.start, c.stop)]
    assert covered == list(range(n))
    assert all(1 <= len(c) <= size for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))


@pytest.mark.parametrize("size", [0, -1, 2.5, True, "3"])
def test_bad_chunk_size_is_a_clear_error(size):
    with pytest.raises(DistError, match="chunk_size"):
        plan_chunks(10, size)


def test_ordered_results_reassemble_any_completion_order():
    chunks = plan_chunks(7, 3)
    acc = OrderedResults(chunks)
    acc.add(2, ["g"])
    acc.add(0, ["a", "b", "c"])
    acc.add(1, ["d", "e", "f"])
    assert acc.results() == list("abcdefg")
    assert acc.items_done == 7 and acc.done == 3


def test_ordered_results_refuse_duplicates_missing_and_short_chunks():
    acc = OrderedResults(plan_chunks(4, 2))
    acc.add(0, [1, 2])
    with pytest.raises(DistError, match="twice"):
        acc.add(0, [1, 2])
    with pytest.raises(DistError, match="never came back"):
        acc.results()
    with pytest.raises(DistError, match="1 results for 2 items"):
        acc.add(1, [3])
    with pytest.raises(DistError, match="unknown chunk"):
        acc.add(5, [])


def test_group_keeps_order():
    assert group(list(range(5)), 2) == [[0, 1], [2, 3], [4]]


def test_worker_infos_from_a_scheduler_info_dict():
    info = {"workers": {
        "tcp://127.0.0.1:2": {"name": 1, "status": "running", "nthreads": 1, "memory_limit": 100,
                              "last_seen": 50.0, "resources": {"GPU": 1},
                              "metrics": {"memory": 42, "task_counts": {"executing": 1, "memory": 3}}},
        "tcp://127.0.0.1:1": {"name": 0, "status": "paused", "nthreads": 2, "metrics": {}},
    }}
    rows = worker_infos(info, {"tcp://127.0.0.1:2": 999})
    assert [r.address for r in rows] == ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"]
    busy = rows[1]
    assert (busy.status, busy.memory_bytes, busy.executing, busy.in_memory, busy.pid) == ("running", 42, 1, 3, 999)
    assert busy.resources == {"GPU": 1} and busy.heartbeat_age > 0
    assert rows[0].pid is None and rows[0].status == "paused"
    assert busy.to_json()["heartbeat_age_s"] > 0
