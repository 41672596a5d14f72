"""BufferPool: recycling by size and dtype, tracked reuse of dropped outputs, bounds, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from noodle import metrics
from noodle.memory.pool import BufferPool, Region, default_pool


def test_give_then_take_reuses_the_same_memory() -> None:
    pool = BufferPool(min_bytes=0)
    a = pool.take((100, 100), "float64")
    addr = a.ctypes.data
    assert pool.give(a)
    b = pool.take((10_000,), np.float64)  # same nbytes and dtype, other shape
    assert b.ctypes.data == addr and b.shape == (10_000,)
    assert pool.stats()["hits"] == 1 and pool.stats()["misses"] == 1


def test_other_dtype_or_size_is_a_miss() -> None:
    pool = BufferPool(min_bytes=0)
    a = pool.take(1000, "float64")
    pool.give(a)
    c = pool.take(1000, "int64")  # same nbytes, other dtype
    d = pool.take(999, "float64")
    assert c.ctypes.data != a.ctypes.data and d.ctypes.data != a.ctypes.data
    assert pool.stats()["misses"] == 3


def test_tracked_buffer_is_reused_only_when_nobody_holds_it() -> None:
    pool = BufferPool(min_bytes=0)
    a = pool.take((1000,), "float64", track=True)
    addr = a.ctypes.data
    b = pool.take((1000,), "float64", track=True)
    assert b.ctypes.data != addr  # a is still alive
    view = a[::2]
    del a
    c = pool.take((1000,), "float64", track=True)
    assert c.ctypes.data != addr  # a view keeps it alive
    del view, c
    d = pool.take((1000,), "float64", track=True)
    assert d.ctypes.data == addr
    d[:] = 1.0
    assert b.ctypes.data != d.ctypes.data


def test_memoryview_keeps_a_tracked_buffer_alive() -> None:
    pool = BufferPool(min_bytes=0)
    a = pool.take((64,), "float64", track=True)
    addr = a.ctypes.data
    mv = memoryview(a)
    del a
    assert pool.take((64,), "float64", track=True).ctypes.data != addr
    del mv


def test_bounded_and_refuses_partial_views() -> None:
    pool = BufferPool(max_bytes=8000, min_bytes=0)
    assert pool.give(np.empty(1000))
    assert not pool.give(np.empty(1000))  # over the bound
    assert pool.bytes_held == 8000
    big = np.empty(100)
    assert not pool.give(big[:50])  # part of a buffer: the rest may be in use
    assert not pool.give(np.empty((10, 10))[:, ::2])
    pool.clear()
    assert pool.bytes_held == 0


def test_small_buffers_bypass_the_pool() -> None:
    pool = BufferPool(min_bytes=1 << 16)
    x = pool.take(16, "float64")
    assert x.shape == (16,) and not pool.give(x)
    assert pool.stats()["hits"] == 0 and pool.stats()["misses"] == 0


def test_threads_never_get_the_same_buffer() -> None:
    pool = BufferPool(min_bytes=0)
    seen: list[int] = []
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        for _ in range(200):
            arr = pool.take(512, "float64")
            addr = arr.ctypes.data
            with lock:
                if addr in seen:
                    errors.append("two holders of one buffer")
                seen.append(addr)
            arr[:] = 1
            with lock:
                seen.remove(addr)
            pool.give(arr)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    st = pool.stats()
    assert st["hits"] + st["misses"] == 800 and st["hits"] > 0


def test_region_returns_its_buffers() -> None:
    pool = BufferPool(min_bytes=0)
    with Region(pool) as r:
        a = r.take((256,), "float32")
        addr = a.ctypes.data
    assert pool.take((256,), "float32").ctypes.data == addr


def test_metrics_report_hits_and_misses() -> None:
    before_hits = metrics.registry.get("noodle_buffer_pool_hits_total").total()
    pool = BufferPool(min_bytes=0)
    pool.give(pool.take(100, "float64"))
    pool.take(100, "float64")
    assert metrics.registry.get("noodle_buffer_pool_hits_total").total() == before_hits + 1
    assert default_pool() is default_pool()


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        BufferPool(max_bytes=-1)


def test_free_buffer_taken_tracked_keeps_the_byte_count_honest() -> None:
    # a given-back buffer handed out again with track=True must be counted once, as a tracked
    # buffer, so bytes_held does not creep up to max_bytes while the pool holds nothing
    pool = BufferPool(min_bytes=0, max_tracked_per_key=1)
    for _ in range(5):
        a = pool.take(1000, "float64")
        pool.give(a)
        b = pool.take(1000, "float64", track=True)
        del a, b
    stats = pool.stats()
    assert stats["bytes_held"] == 8000 * (stats["free_buffers"] + stats["tracked_buffers"])
    assert stats["tracked_buffers"] == 1
    hits = stats["hits"]
    c = pool.take(1000, "float64", track=True)  # the dropped tracked buffer comes back
    assert pool.stats()["hits"] == hits + 1
    del c
