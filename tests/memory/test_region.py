"""Regions: escapes stay valid, cycles die at exit without gc, threads, nesting, eager and jitted outputs.

NumPy is the oracle for every value; no test measures time.
"""

from __future__ import annotations

import gc
import importlib.util
import threading
import warnings
import weakref

import numpy as np
import pytest

import noodle as nd
from noodle.errors import DeviceError, DTypeError, RegionError, RegionEscapeError, ShapeError
from noodle.memory import RegionAllocator, RegionEscapeWarning, RegionManager, current_region

N = 1 << 17            # 1 MiB of float64: above small_bytes, below a dedicated chunk
BIG = 1 << 20          # 8 MiB of float64: a chunk of its own
KEEP: list = []        # a global: what lands here escaped its region


@pytest.fixture(autouse=True)
def _clean_globals():
    KEEP.clear()
    yield
    KEEP.clear()


class Node:
    """A math object of the kind the seed means: data plus links to other objects."""

    def __init__(self, data):
        self.data = data
        self.peer = None


def _no_region_warnings(record):
    return [w for w in record if issubclass(w.category, RegionEscapeWarning)]


# --------------------------------------------------------------------------- escapes
def test_escaped_view_reads_the_right_data_after_exit_and_after_reuse():
    mgr = RegionManager()
    with pytest.warns(RegionEscapeWarning, match="test_region.py"):
        with mgr.create_region("s") as r:
            x = r.empty(BIG)
            x[:] = np.arange(BIG, dtype=np.float64)
            KEEP.append(x[10:])        # a view of a view: the chunk's base counts it too
            del x
    escaped = KEEP[0]
    assert mgr.stats()["escaped_bytes"] >= BIG * 8
    for k in range(4):             # later regions of the same scope must not hand that memory out
        with mgr.create_region("s") as r:
            y = r.full(BIG, -1.0 - k)
            assert not np.shares_memory(y, escaped)
            del y
    np.testing.assert_array_equal(escaped, np.arange(10, BIG, dtype=np.float64))
    KEEP.clear()
    del escaped
    st = mgr.stats()        # once the view died, its chunk went back warm to the scope
    assert st["escaped_bytes"] == 0 and st["scopes"]["s"]["free_chunks"] == 2


def test_locals_of_the_with_block_are_not_reported_but_stay_valid():
    mgr = RegionManager()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with mgr.create_region(strict=True) as r:
            x = r.full(N, 2.0)
            m = nd.Matrix(np.ones(N), allocator=r)
            parts = [r.zeros(N), r.zeros(N)]
        assert _no_region_warnings(record) == []
    assert float(x.sum()) == 2.0 * N and float(m.numpy().sum()) == N and parts[1].sum() == 0
    assert r.stats()["escaped_bytes"] > 0       # held past the region, released when they die
    del x, m, parts
    mgr.collect()
    assert mgr.stats()["escaped_bytes"] == 0


def test_a_value_returned_from_inside_the_block_is_an_escape():
    mgr = RegionManager()

    def make():
        with mgr.create_region() as r:
            y = r.full(N, 5.0)
            return y

    with pytest.warns(RegionEscapeWarning):
        got = make()
    np.testing.assert_array_equal(got, np.full(N, 5.0))


def test_strict_raises_naming_the_site_and_the_data_stays_valid():
    mgr = RegionManager()
    with pytest.raises(RegionEscapeError, match=r"test_region\.py:\d+") as info:
        with mgr.create_region(strict=True) as r:
            KEEP.append(r.full(N, 7.0))
    assert "export" in str(info.value)
    for _ in range(3):
        with mgr.create_region() as r:
            r.full(N, -1.0)
    np.testing.assert_array_equal(KEEP[0], np.full(N, 7.0))


def test_strict_does_not_mask_an_exception_from_the_block():
    mgr = RegionManager()
    with pytest.raises(KeyError), warnings.catch_warnings():
        warnings.simplefilter("ignore", RegionEscapeWarning)
        with mgr.create_region(strict=True) as r:
            KEEP.append(r.zeros(N))
            raise KeyError("boom")
    assert KEEP[0].sum() == 0


def test_export_returns_a_heap_copy():
    mgr = RegionManager()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with mgr.create_region(strict=True) as r:
            x = r.full((512, 512), 3.0)
            m = r.alloc(nd.Matrix, shape=(512, 512), fill=2.0)
            KEEP.append(r.export(x))
            KEEP.append(r.export(m))
            assert r.owns(x) and r.owns(m)
            assert not r.owns(KEEP[0]) and not r.owns(KEEP[1])
            assert not np.shares_memory(KEEP[0], x)
            del x, m
        assert _no_region_warnings(record) == []
    assert isinstance(KEEP[1], nd.Matrix)
    np.testing.assert_array_equal(KEEP[0], np.full((512, 512), 3.0))
    np.testing.assert_array_equal(KEEP[1].numpy(), np.full((512, 512), 2.0))
    assert mgr.stats()["escaped_bytes"] == 0


def test_a_view_held_by_another_thread_stays_valid_and_is_reported():
    mgr = RegionManager()
    got: list[float] = []
    hold = threading.Event()
    done = threading.Event()

    def reader(view):
        hold.wait()
        for _ in range(3):
            got.append(float(view.sum()))
        done.set()

    with pytest.warns(RegionEscapeWarning):
        with mgr.create_region() as r:
            x = r.full(N, 1.5)
            t = threading.Thread(target=reader, args=(x[1:],))
            t.start()
            del x
    for _ in range(3):                       # the main thread churns the scope meanwhile
        with mgr.create_region() as r:
            r.full(N, -9.0)
    hold.set()
    done.wait(10)
    t.join()
    assert got == [1.5 * (N - 1)] * 3


def test_warm_chunks_are_bounded_and_trim_gives_them_back():
    mgr = RegionManager()
    for _ in range(2):  # a scope stays warm once it repeats
        with mgr.create_region("t") as r:
            r.zeros(BIG)
            r.zeros(N)
    assert mgr.stats()["scopes"]["t"]["retained_bytes"] >= BIG * 8
    assert mgr.trim() >= BIG * 8 and mgr.stats()["retained_bytes"] == 0
    none_kept = RegionManager(max_retained_bytes=0)
    with none_kept.create_region("t") as r:
        r.zeros(BIG)
    assert none_kept.stats()["retained_bytes"] == 0 and r.stats()["peak"] >= BIG * 8


def test_close_ends_a_region_that_was_never_entered():
    mgr = RegionManager()
    r = mgr.create_region()
    x = r.full(N, 2.0)
    assert current_region() is None and r.owns(x)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        r.close()                                  # x is a local of the caller: not an escape
    assert _no_region_warnings(record) == [] and float(x.sum()) == 2.0 * N


# --------------------------------------------------------------------------- cycles
def _build_cycle(alloc, fired):
    a = alloc.create(Node(alloc.zeros(N)))
    b = alloc.create(Node(alloc.zeros(N)))
    a.peer, b.peer = b, a
    a.data += 1.0
    weakref.finalize(a, fired.append, "a")
    weakref.finalize(b, fired.append, "b")
    weakref.finalize(a.data, fired.append, "a.data")


def test_cycles_of_registered_objects_are_broken_at_exit_without_gc():
    mgr = RegionManager()
    fired: list[str] = []
    was = gc.isenabled()
    gc.disable()
    try:
        with mgr.create_region() as r:
            _build_cycle(r, fired)
            assert fired == []
        assert sorted(fired) == ["a", "a.data", "b"]
        st = r.stats()
        assert st["objects_cleared"] == 2 and st["escaped_bytes"] == 0
        assert st["peak"] > 0 and mgr.stats()["scopes"]["compute"]["retained_bytes"] == 0  # unmapped, not kept
    finally:
        if was:
            gc.enable()


def test_cycles_held_by_block_locals_survive_the_exit_and_die_at_the_next_one():
    mgr = RegionManager()
    fired: list[str] = []
    was = gc.isenabled()
    gc.disable()
    try:
        for i in range(3):
            with mgr.create_region() as r:
                a = r.create(Node(r.full(N, float(i))))
                b = r.create(Node(r.zeros(N)))
                a.peer, b.peer = b, a
                weakref.finalize(a, fired.append, i)
            assert a.peer.peer is a and a.data[0] == i     # intact after its own exit
            assert fired == list(range(i))                   # the previous iteration's pair is gone
    finally:
        if was:
            gc.enable()


def test_an_object_escaping_via_a_global_keeps_working_with_its_cycle():
    mgr = RegionManager()
    with pytest.warns(RegionEscapeWarning):
        with mgr.create_region() as r:
            a = r.create(Node(r.full(N, 4.0)))
            b = r.create(Node(r.full(N, 5.0)))
            a.peer, b.peer = b, a
            KEEP.append(a)
            del a, b
    a = KEEP[0]
    assert a.peer.peer is a
    np.testing.assert_array_equal(a.data, np.full(N, 4.0))
    np.testing.assert_array_equal(a.peer.data, np.full(N, 5.0))
    with mgr.create_region() as r:       # later regions neither clear it nor reuse its memory
        r.full(N, -1.0)
    assert a.peer.peer is a and a.peer.data[0] == 5.0


def test_registered_matrix_and_alloc():
    mgr = RegionManager()
    src = np.arange(N, dtype=np.float32)
    with mgr.create_region() as r:
        m = nd.Matrix(src, allocator=r)
        assert r.owns(m) and not np.shares_memory(m.data, src)
        np.testing.assert_array_equal(m.numpy(), src)
        a = r.alloc(np.ndarray, shape=(256, 512), dtype="int32", fill=3)
        assert a.dtype == np.int32 and int(a.sum()) == 3 * 256 * 512 and r.owns(a)
        mm = r.alloc(nd.Matrix, shape=(4, 4))                 # small: heap, but registered
        assert isinstance(mm, nd.Matrix) and mm.numpy().sum() == 0
        s = (m + m).numpy()
        np.testing.assert_array_equal(s, src + src)
        del m, mm, a, s
    assert r.stats()["objects_cleared"] == 2


# --------------------------------------------------------------------------- threads, nesting
def test_a_region_used_from_another_thread_raises_and_other_threads_use_the_heap():
    mgr = RegionManager()
    errors: list[Exception] = []
    results: dict[str, object] = {}
    x = np.ones(N)
    with mgr.create_region() as r:
        def other():
            for what in (lambda: r.empty(N), lambda: r.create(Node(None)), lambda: r.__enter__()):
                try:
                    what()
                except RegionError as exc:
                    errors.append(exc)
            results["sum"] = nd.add(x, x)         # not redirected into the main thread's region
            results["current"] = current_region()
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert len(errors) == 3 and all("another thread" in str(e) for e in errors)
        assert results["current"] is None and not r.owns(results["sum"])
        np.testing.assert_array_equal(results["sum"], x + x)
        assert r.owns(nd.add(x, x))


def test_regions_nest_and_inner_memory_ends_at_the_inner_exit():
    mgr = RegionManager()
    a = np.random.default_rng(0).random(N)
    with mgr.create_region("outer") as outer:
        o = nd.add(a, 1.0)
        with mgr.create_region("inner") as inner:
            assert current_region() is inner
            i = nd.multiply(a, 2.0)
            assert inner.owns(i) and not outer.owns(i)
            del i
        assert current_region() is outer
        assert inner.stats()["state"] == "closed" and inner.stats()["escaped_bytes"] == 0
        assert mgr.stats()["scopes"]["inner"]["retained_bytes"] == 0  # its first region: unmapped at exit
        o2 = nd.subtract(a, 1.0)
        assert outer.owns(o) and outer.owns(o2)
        with pytest.raises(RegionError, match="inner region"):
            with mgr.create_region("x"):
                outer.close()
        del o, o2
    assert current_region() is None


def test_a_region_is_entered_once_and_not_used_after_its_end():
    mgr = RegionManager()
    r = mgr.create_region()
    with r:
        with pytest.raises(RegionError, match="already entered"):
            r.__enter__()
    with pytest.raises(RegionError, match="after the region ended"):
        r.empty(10)
    with pytest.raises(RegionError, match="after the region ended"):
        with r:
            pass
    r.close()     # a second end does nothing


# --------------------------------------------------------------------------- eager ops and jit
_DTYPES = ["float64", "float32", "int64", "int32", "uint8", "bool", "complex128"]
_BINARY = [nd.add, nd.subtract, nd.multiply, nd.divide, nd.maximum, nd.minimum, nd.power]
_NUMPY = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
          "maximum": np.maximum, "minimum": np.minimum, "power": np.power}


def _operands(dtype, rng):
    a = (rng.random(N) * 3 + 1).astype(dtype)
    b = (rng.random(N) * 3 + 1).astype(dtype)
    return [(a, b), (a, 2), (a, 1.5), (a.reshape(512, 256), b[:256]), (a.reshape(-1, 1)[:512], b[:300]),
            (np.float32(1.5), a), (a, np.int8(3))]


def _raised(call):
    try:
        call()
    except Exception as exc:
        return type(exc)
    return None


def _same(got, want):
    assert type(got) is type(want) and got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want, equal_nan=got.dtype.kind in "fc")


def test_eager_outputs_live_in_the_region_and_equal_numpy_bit_for_bit():
    rng = np.random.default_rng(1)
    mgr = RegionManager()
    for dtype in _DTYPES:
        for x, y in _operands(dtype, rng):
            for op in _BINARY:
                fn = _NUMPY[op.__name__]
                try:
                    with np.errstate(all="ignore"):
                        want = fn(x, y)
                except (TypeError, ValueError, OverflowError):   # NumPy refuses: the op does, alike
                    outside = _raised(lambda: op(x, y))  # noqa: B023 - called at once
                    with mgr.create_region():
                        assert _raised(lambda: op(x, y)) is outside is not None  # noqa: B023
                    continue
                with mgr.create_region() as r, np.errstate(all="ignore"):
                    got = op(x, y)
                    if want.nbytes >= r.eager_min_bytes:
                        assert r.owns(got), (op.__name__, dtype)
                    _same(got, want)
                    del got
    x = rng.random(N)
    for name in ("exp", "log", "sqrt", "sin", "cos", "tanh", "abs", "negative"):
        fn = getattr(np, "absolute" if name == "abs" else name)
        for arr in (x, x.astype(np.float32), (x * 100).astype(np.int64)):
            with np.errstate(all="ignore"):
                want = fn(arr)
            with mgr.create_region() as r, np.errstate(all="ignore"):
                got = getattr(nd, name)(arr) if name != "negative" else nd.array.ops.negative(arr)
                assert r.owns(got) == (want.nbytes >= r.eager_min_bytes)
                _same(got, want)
                del got
    a, b = rng.random((300, 400)), rng.random((400, 500))
    with mgr.create_region() as r:
        got = nd.matmul(a, b)
        assert r.owns(got)
        _same(got, np.matmul(a, b))
        del got


def test_outside_any_region_nothing_changes():
    x = np.random.default_rng(2).random(N)
    got = nd.add(x, x)
    assert current_region() is None and got.base is None
    _same(got, x + x)
    with RegionManager().create_region() as r:
        pass
    assert not r.owns(nd.exp(x))


def test_jitted_outputs_live_in_the_region_and_equal_numpy():
    rng = np.random.default_rng(3)
    x, y = rng.random(N), rng.random(N)
    f = nd.jit(lambda a, b: a * b + 1.0, hot_threshold=10**9)
    assert f.compile(x, y) == "numba"
    mgr = RegionManager()
    with mgr.create_region() as r:
        out = f(x, y)
        assert r.owns(out)
        np.testing.assert_array_equal(out, x * y + 1.0)
        del out
    outside = f(x, y)
    assert not r.owns(outside)
    np.testing.assert_array_equal(outside, x * y + 1.0)


# --------------------------------------------------------------------------- bad arguments
def test_bad_arguments_raise_noodle_errors_with_advice():
    mgr = RegionManager()
    with mgr.create_region() as r:
        with pytest.raises(RegionError, match="numpy.ndarray or noodle.Matrix"):
            r.alloc(dict, shape=3)
        with pytest.raises(RegionError, match="unknown argument"):
            r.alloc(np.ndarray, shape=3, colour="red")
        with pytest.raises(ShapeError, match="shape= is required"):
            r.alloc(np.ndarray)
        with pytest.raises(ShapeError, match="negative"):
            r.empty((3, -1))
        with pytest.raises(ShapeError, match="tuple of ints"):
            r.zeros("big")
        with pytest.raises(DTypeError, match="not a dtype"):
            r.empty(3, "float99")
        with pytest.raises(DTypeError, match="cannot live in region memory"):
            r.empty(3, object)
        with pytest.raises(DTypeError, match="cannot fill"):
            r.alloc(np.ndarray, shape=3, fill="x")
        with pytest.raises(RegionError, match="not math objects"):
            r.create(None)
        with pytest.raises(RegionError, match="cannot copy"):
            r.export("text")
        with pytest.raises(RegionError, match="allocator must be a region"):
            nd.Matrix(np.ones(3), allocator=object())
    with pytest.raises(DeviceError, match="'cpu', 'cuda'"):
        mgr.create_region(device="tpu")
    with pytest.raises(RegionError, match="non-empty string"):
        mgr.create_region("")
    with pytest.raises(RegionError, match="int >= 0"):
        RegionManager(max_retained_bytes=-1)
    with pytest.raises(RegionError, match="huge page"):
        RegionManager(chunk_bytes=4096)


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_cuda_region_without_cupy_says_what_to_do():
    from noodle.errors import DeviceUnavailableError

    with pytest.raises(DeviceUnavailableError, match="device='cpu'"):
        nd.region(device="cuda")


# --------------------------------------------------------------------------- API shape
def test_noodle_region_is_the_default_managers_region():
    for _ in range(2):
        with nd.region("api") as r:
            assert isinstance(r, RegionAllocator) and current_region() is r
            assert r.scope == "api" and r.device == "cpu" and not r.strict
            x = r.zeros(N)
            assert r.stats()["bytes_allocated"] == x.nbytes
            del x
    assert nd.memory.default_manager().stats()["scopes"]["api"]["retained_bytes"] > 0


def test_metrics_count_bytes_reuse_and_escapes():
    from noodle import metrics

    mgr = RegionManager()
    escaped = metrics.registry.get("noodle_region_escaped_bytes")
    before = escaped.value()
    for _ in range(2):  # the second exit makes the scope warm
        with mgr.create_region("metrics-scope") as r:
            r.zeros(N)
    with pytest.warns(RegionEscapeWarning), mgr.create_region("metrics-scope") as r:
        KEEP.append(r.zeros(N))
    assert metrics.registry.get("noodle_region_bytes_allocated_total").value("metrics-scope") == 3 * N * 8
    assert metrics.registry.get("noodle_region_chunks_reused_total").value("metrics-scope") == 1
    assert metrics.registry.get("noodle_region_peak_bytes").value("metrics-scope") == mgr.chunk_bytes
    assert escaped.value() == before + mgr.chunk_bytes
    KEEP.clear()
    assert escaped.value() == before


@pytest.mark.gpu
def test_cuda_region_allocates_from_its_pool_and_frees_it_at_exit():
    import cupy

    with nd.region(device="cuda") as r:
        x = r.zeros((1024, 1024))
        y = x + 1.0                                # CuPy's own output comes from the region's pool
        assert isinstance(x, cupy.ndarray) and r.owns(x)
        pool = r._gpu.pool
        assert pool.used_bytes() >= 2 * x.nbytes
        keep = r.export(y)
        m = nd.Matrix(np.ones((64, 64)), allocator=r)
        assert isinstance(m.data, cupy.ndarray)
        del x, y, m
    assert pool.used_bytes() == 0 and pool.total_bytes() == 0
    assert float(keep.sum()) == 1024 * 1024
    with pytest.warns(RegionEscapeWarning):
        with nd.region(device="cuda") as r:
            KEEP.append(r.full((256,), 3.0))
    pool = None
    assert float(KEEP[0].sum()) == 768.0
    assert nd.memory.default_manager().stats()["gpu_pools_held"] >= 1


def test_a_scope_is_kept_warm_only_once_it_repeats():
    """A region that runs once leaves no free chunk mapped (RSS back to the live bytes); from the
    second region of a scope on, its chunks stay warm for the next one."""
    from noodle.memory import RegionManager

    mgr = RegionManager()
    big = (mgr.chunk_bytes * 2) // 8

    def one_region() -> None:
        with mgr.create_region("warm-test") as r:
            parts = [r.empty(big) for _ in range(4)]  # 4 chunks of 2 x chunk_bytes
            assert all(p.size == big for p in parts)
            del parts

    one_region()
    assert mgr.stats()["scopes"]["warm-test"]["retained_bytes"] == 0
    one_region()
    assert mgr.stats()["scopes"]["warm-test"]["retained_bytes"] >= 4 * 2 * mgr.chunk_bytes
    one_region()  # the third region finds them warm
    assert mgr.stats()["scopes"]["warm-test"]["retained_bytes"] >= 4 * 2 * mgr.chunk_bytes
    assert mgr.trim() > 0
