"""Regions in the rest of noodle: per-task regions on real Dask workers, the store loading into a region
(real SQLite, and PostgreSQL when the test servers run), and the ``noodle run`` report's Regions section.

NumPy is the oracle for every value. Worker memory is judged by the region's own counts (chunks mapped
fresh vs served warm, escaped bytes), which are deterministic; RSS is asserted only with a wide margin.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
import warnings

import cloudpickle
import numpy as np
import pytest

import noodle as nd
from noodle import metrics
from noodle.errors import DistArgumentError, ObjectNotFoundError, RegionEscapeError, StoreError
from noodle.memory import RegionEscapeWarning, current_region

BIG = 1 << 20          # float64 elements of an 8 MiB array (a chunk of its own)
MID = 1 << 17          # 1 MiB: an eager output that lands in the region's shared chunk
KEPT: list = []        # a global: what lands here escaped its region

# the workers get this module's functions by value, whatever their sys.path
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Node:
    """A math object in a reference cycle, as in the region tests."""

    def __init__(self, data):
        self.data = data
        self.peer = None


class Holder:
    """A result type the copy-out cannot look into: its region array must escape, and stay valid."""

    def __init__(self, data):
        self.data = data


# --------------------------------------------------------------------------- functions run on workers
def produce(i):
    """Cyclic objects around 8 MiB arrays, eager ops, and a 1 MiB array (plus nested copies) as the result."""
    r = current_region()
    x = np.full(BIG, float(i)) if r is None else r.full(BIG, float(i))
    a, b = Node(x), Node(nd.add(x, 1.0))
    a.peer, b.peer = b, a
    if r is not None:
        r.create(a)
        r.create(b)
    y = nd.multiply(b.data[:MID], 2.0)
    return {"y": y, "pair": (y[:10], nd.Matrix(nd.add(y, 0.0))), "owned": r is not None and r.owns(y)}


def expected(i):
    y = (np.full(MID, float(i)) + 1.0) * 2.0
    return y


def held_in_object(i):
    r = current_region()
    return Holder(r.full(BIG, float(i)))


def worker_state(scope):
    """This worker's region counts for ``scope`` and its RSS."""
    from noodle.memory import default_manager
    from noodle.metrics.process import rss_bytes

    def value(name, *labels):
        m = metrics.registry.get(name)
        return m.value(*labels) if m is not None else 0.0

    st = default_manager().stats()
    return {"escaped": st["escaped_bytes"], "mapped": value("noodle_region_chunks_mapped_total", scope),
            "reused": value("noodle_region_chunks_reused_total", scope),
            "regions": value("noodle_region_regions_total", scope),
            "cleared": value("noodle_region_objects_cleared_total", scope), "rss": rss_bytes()}


def add_in_region(a, b, scale=1.0):
    r = current_region()
    return {"sum": nd.multiply(nd.add(a, b), scale), "in_region": r is not None}


# --------------------------------------------------------------------------- dist
@pytest.fixture(scope="module")
def proc():
    from noodle.dist import Processor

    with Processor(n_workers=2, threads_per_worker=1, port=0) as p:
        yield p


def _state(proc, scope):
    return proc.client.run(worker_state, scope)


def test_map_in_regions_returns_what_the_heap_map_returns(proc):
    items = list(range(9))
    plain = proc.map(produce, items, chunk_size=2)
    tasks = metrics.registry.get("noodle_dist_region_tasks_total")
    before = tasks.value() if tasks is not None else 0.0
    in_regions = proc.map(produce, items, chunk_size=2, region=True)
    streamed = dict(proc.map(produce, items, chunk_size=4, region="itest-stream", ordered=False))
    for i in items:
        for got in (plain[i], in_regions[i], streamed[i]):
            np.testing.assert_array_equal(got["y"], expected(i))
            np.testing.assert_array_equal(got["pair"][0], expected(i)[:10])
            np.testing.assert_array_equal(got["pair"][1].numpy(), expected(i))
    assert not any(r["owned"] for r in plain) and all(r["owned"] for r in in_regions)
    # each chunk's region figures came back with its results
    assert metrics.registry.get("noodle_dist_region_tasks_total").value() == before + 5 + 3
    total = proc.map(produce, items, chunk_size=2, region=True,
                     reduce=lambda a, b: {"y": a["y"] + b["y"], "pair": a["pair"], "owned": a["owned"]})
    np.testing.assert_array_equal(total["y"], sum(expected(i) for i in items))


def test_worker_regions_reuse_their_chunks_and_memory_returns_to_baseline(proc):
    scope = f"itest-{uuid.uuid4().hex[:8]}"
    proc.map(produce, range(4), chunk_size=1, region=scope)          # warm-up: one task per worker at least
    base = _state(proc, scope)
    n = 40
    out = proc.map(produce, range(n), chunk_size=1, region=scope)
    assert [float(r["y"][0]) for r in out] == [float(expected(i)[0]) for i in range(n)]
    del out
    after = _state(proc, scope)
    regions = sum(a["regions"] - base[w]["regions"] for w, a in after.items())
    reused = sum(a["reused"] - base[w]["reused"] for w, a in after.items())
    cleared = sum(a["cleared"] - base[w]["cleared"] for w, a in after.items())
    # every task used three chunks (two 8 MiB arrays, one shared chunk) and gave them back at its end, so a
    # worker maps at most one task's chunks (none if the warm-up ran there) and serves the rest warm
    assert regions == n and cleared == 2 * n
    assert reused >= 3 * n - 3 * len(after)
    for w, a in after.items():
        assert a["mapped"] - base[w]["mapped"] <= 3
        assert a["escaped"] == 0
        grew = a["rss"] - base[w]["rss"]
        print(f"worker {w}: RSS {base[w]['rss'] / 2**20:.1f} -> {a['rss'] / 2**20:.1f} MiB")
        assert grew < 64 << 20, f"worker {w} RSS grew by {grew / 2**20:.1f} MiB over 40 region tasks"
    escaped = metrics.registry.get("noodle_dist_region_escaped_bytes")
    assert all(child.value == 0 for _, child in escaped.children())
    assert metrics.registry.get("noodle_dist_region_copied_bytes_total").value() > 0


def test_a_region_array_inside_an_object_escapes_stays_valid_and_comes_back(proc):
    scope = f"itest-{uuid.uuid4().hex[:8]}"
    out = proc.map(held_in_object, range(4), chunk_size=1, region=scope)
    for i, h in enumerate(out):
        np.testing.assert_array_equal(h.data, np.full(BIG, float(i)))
    deadline = time.monotonic() + 20
    while True:   # Dask drops the released results on the workers a moment later: the chunks come back
        state = _state(proc, scope)
        if all(s["escaped"] == 0 for s in state.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert all(s["escaped"] == 0 for s in state.values()), state


def fail_after_allocating(i):
    y = nd.add(np.ones(BIG), float(i))          # region memory, held by this frame when it raises
    if i == 3:
        raise ValueError(f"item {i} failed at {float(y[0])}")
    return float(y[0])


def test_a_failing_task_raises_its_error_and_its_region_memory_is_not_left_escaped(proc):
    scope = f"itest-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ValueError, match=r"item 3 failed at 4\.0"):
        proc.map(fail_after_allocating, range(6), chunk_size=1, region=scope)
    assert all(s["escaped"] == 0 for s in _state(proc, scope).values())


def test_submit_in_a_region(proc):
    a, b = np.arange(MID, dtype=np.float64), np.ones(MID)
    got = proc.submit(add_in_region, a, b, region=True, scale=3.0).result()
    assert got["in_region"]
    np.testing.assert_array_equal(got["sum"], (a + b) * 3.0)
    plain = proc.submit(add_in_region, a, b).result()
    assert not plain["in_region"]
    np.testing.assert_array_equal(plain["sum"], a + b)


@nd.jit
def _axpy(a, x, y):
    return a * x + y


def test_jitted_map_in_regions(proc):
    rng = np.random.default_rng(5)
    items = [(np.full(MID, 1.5), rng.standard_normal(MID), rng.standard_normal(MID)) for _ in range(3)]
    out = proc.map(_axpy, items, chunk_size=2, region=True)
    for (a, x, y), got in zip(items, out, strict=True):
        np.testing.assert_allclose(got, a * x + y, rtol=1e-12)


@pytest.mark.parametrize("bad", [1, "", 2.5, ["scope"]])
def test_bad_region_arguments_raise_dist_argument_errors(proc, bad):
    with pytest.raises(DistArgumentError, match="region must be True"):
        proc.map(produce, range(2), region=bad)
    with pytest.raises(DistArgumentError, match="region must be True"):
        proc.submit(produce, 1, region=bad)


# --------------------------------------------------------------------------- store
@pytest.fixture
def store(request, tmp_path, isolated_settings):
    from noodle.store import MathStore

    table = "objs_" + uuid.uuid4().hex[:12]
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        if not os.environ.get("NOODLE_TEST_PG_URL") and not (os.environ.get("MAKELEVEL") or os.environ.get("CI")):
            pytest.skip("PostgreSQL: NOODLE_TEST_PG_URL is not set (scripts/services.sh start, then source "
                        ".noodle-services/env)")
        url = request.getfixturevalue("pg_url")
    s = MathStore(url, table=table, redis_url=None)
    yield s
    s.close()
    if request.param == "postgresql":
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


BACKENDS = pytest.mark.parametrize("store", ["sqlite", "postgresql"], indirect=True)


@BACKENDS
def test_store_get_loads_into_region_memory_valid_after_the_region(store):
    rng = np.random.default_rng(11)
    big = rng.standard_normal((512, 300))                    # 1.2 MB: region memory
    ints = np.arange(MID, dtype=">i4")                       # a byte order of its own
    small = np.arange(10.0)                                  # below small_bytes: the heap
    words = np.array(["region", "heap"])                     # not numeric: the heap
    for name, arr in (("big", big), ("ints", ints), ("small", small), ("words", words)):
        store.put(name, arr, {"name": name})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RegionEscapeWarning)   # locals of the block are not escapes
        with nd.region("store", strict=True) as r:
            obj = store.get("big", allocator=r)
            got_ints = store.get("ints", allocator=r).array
            got_small = store.get("small", allocator=r).array
            got_words = store.get("words", allocator=r).array
            assert r.owns(obj.array) and r.owns(got_ints)
            assert not r.owns(got_small) and not r.owns(got_words)
            assert obj.metadata == {"name": "big"} and obj.array.flags.writeable
            kept = r.export(obj.array)
            assert not r.owns(kept)
    for _ in range(3):                                       # later regions of the scope reuse its memory
        with nd.region("store") as r2:
            r2.full(BIG, -1.0)
    np.testing.assert_array_equal(obj.array, big)
    np.testing.assert_array_equal(kept, big)
    np.testing.assert_array_equal(got_ints, ints)
    assert got_ints.dtype == ints.dtype
    np.testing.assert_array_equal(got_small, small)
    np.testing.assert_array_equal(got_words, words)
    np.testing.assert_array_equal(store.get("big").array, big)   # the plain get is unchanged


@BACKENDS
def test_store_array_returned_out_of_its_region_is_an_escape_and_stays_valid(store):
    data = np.linspace(0.0, 1.0, BIG)
    store.put("w", data)
    KEPT.clear()

    def load():
        with nd.region("store-escape", strict=True) as r:
            KEPT.append(store.get("w", allocator=r).array)    # a global holds it: an escape

    with pytest.raises(RegionEscapeError, match=r"test_region_integration\.py:\d+"):
        load()
    for _ in range(3):
        with nd.region("store-escape") as r:
            r.full(BIG, 7.0)
    np.testing.assert_array_equal(KEPT.pop(), data)


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_store_get_bad_allocator_and_missing_names(store):
    store.put("x", np.ones(3))
    with pytest.raises(StoreError, match="expected a region"):
        store.get("x", allocator=object())
    with pytest.raises(StoreError, match="expected a region"):
        store.get("x", allocator="region")
    with nd.region() as r, pytest.raises(ObjectNotFoundError):
        store.get("nope", allocator=r)


@pytest.mark.gpu
@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_store_get_into_a_cuda_region(store):
    import cupy

    data = np.random.default_rng(12).standard_normal((256, 512)).astype(np.float32)
    store.put("w", data)
    with nd.region(device="cuda") as r:
        got = store.get("w", allocator=r).array
        assert isinstance(got, cupy.ndarray) and r.owns(got)
        kept = r.export(got)
        del got
    np.testing.assert_array_equal(cupy.asnumpy(kept), data)


# --------------------------------------------------------------------------- report
def test_report_section_shows_regions_of_this_process_and_of_workers(proc):
    from rich.console import Console

    from noodle.report import section_regions

    scope = f"report-{uuid.uuid4().hex[:6]}"
    for i in range(3):
        with nd.region(scope) as r:
            a = r.create(Node(r.zeros(BIG)))
            b = r.create(Node(nd.add(a.data, float(i))))
            a.peer, b.peer = b, a
            del a, b
    proc.map(produce, range(2), chunk_size=1, region=True)
    console = Console(record=True, width=200)
    console.print(section_regions.render(metrics.registry))
    text = console.export_text()
    assert "Regions" in text and scope in text
    row = next(line for line in text.splitlines() if scope in line)
    assert "3" in row and "48.0 MiB" in row and "16.0 MiB" in row       # 3 regions, 16 MiB each
    assert "per-task regions on workers" in text and "worker RSS after its last task" in text
    assert "process RSS now" in text and "tracemalloc" in text


def test_report_section_is_absent_without_regions():
    from noodle.metrics import Registry
    from noodle.report import section_regions

    assert section_regions.render(Registry()) is None


def test_noodle_run_report_has_a_regions_section(tmp_path):
    script = tmp_path / "regions.py"
    script.write_text(
        "import numpy as np, noodle as nd\n"
        "x = np.ones(1 << 20)\n"
        "for i in range(4):\n"
        "    with nd.region('steps') as r:\n"
        "        y = nd.multiply(nd.add(x, float(i)), 2.0)\n"
        "        total = float(y.sum())\n"
        "print('total', total)\n")
    env = {**os.environ, "COLUMNS": "160"}
    out = subprocess.run([sys.executable, "-m", "noodle.cli", "run", str(script)], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "total 8388608.0" in out.stdout
    assert "Regions" in out.stdout and "steps" in out.stdout and "process RSS now" in out.stdout
    plain = tmp_path / "plain.py"
    plain.write_text("import numpy as np, noodle as nd\nnd.add(np.ones(3), 1.0)\n")
    out = subprocess.run([sys.executable, "-m", "noodle.cli", "run", str(plain)], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0 and "Regions" not in out.stdout


# --------------------------------------------------------------------------- example
def test_the_example_runs_as_written(tmp_path):
    example = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "memory_regions.py")
    env = {**os.environ, "NOODLE_SYNTAX_FIXER_COORDINATOR_PORT": "0"}
    out = subprocess.run([sys.executable, example], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "step 0: 2 objects cleared, 0 chunk(s) served warm" in out.stdout
    assert "step 3: 2 objects cleared, 3 chunk(s) served warm" in out.stdout
    assert "store.get into the region: True" in out.stdout
    assert "strict region:" in out.stdout and "the escaped array is still valid: 3.0" in out.stdout
    assert "dist map in per-task regions: 20 results, first 2.0 last 40.0" in out.stdout
    assert "tasks that ran in a region: 10.0" in out.stdout
