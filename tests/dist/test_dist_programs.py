"""noodle programs on workers: NBC bytes travel, workers validate and run them, kernels come from the shared cache."""

from __future__ import annotations

import numpy as np
import pytest

import noodle as nd
from noodle.dist import Processor
from noodle.dist import tasks as worker_tasks
from noodle.errors import DistError, NBCFormatError


@nd.jit
def axpy(a, x, y):
    return a * x + y


def _items(n: int) -> list[tuple[np.ndarray, ...]]:
    rng = np.random.default_rng(7)
    return [(np.full(8, 1.5), rng.standard_normal(8), rng.standard_normal(8)) for _ in range(n)]


def test_jitted_function_mapped_over_data_on_workers(proc):
    items = _items(12)
    out = proc.map_program(axpy, items, chunk_size=3)
    assert len(out) == 12
    for (a, x, y), got in zip(items, out, strict=True):
        np.testing.assert_allclose(got, a * x + y, rtol=1e-12)


def test_plain_map_of_a_jitted_function_sends_nbc_not_pickled_code(proc):
    items = [(np.full(8, 2.0), np.arange(8.0), np.ones(8))]
    out = proc.map(axpy, items)
    np.testing.assert_allclose(out[0], 2.0 * np.arange(8.0) + 1.0)
    stats = proc.program_stats()  # the workers ran it as an NBC program on their Executor
    assert any(s["programs"] for s in stats.values())
    with pytest.raises(DistError, match="reduce= is not supported"):
        proc.map(axpy, items, reduce=max)


OFFSET = np.zeros(8)


def test_mapped_jitted_function_sees_captured_arrays_and_scalar_arguments(proc):
    def shifted(x, s):
        return x * s + OFFSET

    jf = nd.jit(shifted)
    rng = np.random.default_rng(3)
    items = [(rng.standard_normal(8), 0.5 * i) for i in range(6)]
    OFFSET[:] = 3.0   # changed after decoration: the workers must use the value at map time
    out = proc.map_program(jf, items, chunk_size=2)
    for (x, s), got in zip(items, out, strict=True):
        np.testing.assert_array_equal(got, shifted(x, s))


def test_nbc_bytes_interpreted_and_streamed(proc):
    items = _items(7)
    nbc = axpy.bytecode(*items[0])
    assert isinstance(nbc, bytes)
    pairs = list(proc.map_program(nbc, items, chunk_size=2, ordered=False, compile=False))
    assert sorted(i for i, _ in pairs) == list(range(7))
    for i, got in pairs:
        a, x, y = items[i]
        np.testing.assert_allclose(got, a * x + y, rtol=1e-12)


def test_bad_programs_are_refused_before_and_on_the_workers(proc):
    with pytest.raises(NBCFormatError):
        proc.map_program(b"not an NBC program at all", _items(2))
    with pytest.raises(DistError, match="NBC bytes, a noodle Program or a @noodle.jit"):
        proc.map_program(object(), _items(2))
    # a worker never trusts its input either: hand it garbage directly
    with pytest.raises(NBCFormatError):
        proc.client.submit(worker_tasks.run_program_chunk, b"NBC\x00garbage", [(np.ones(2),)], False,
                           pure=False).result()
    # wrong argument shapes are the executor's clear error, raised from the worker
    nbc = axpy.bytecode(*_items(1)[0])
    with pytest.raises(nd.errors.ExecutionError, match="expects"):
        proc.map_program(nbc, [(np.ones(3), np.ones(3), np.ones(3))])


def test_workers_load_kernels_another_worker_built_from_the_shared_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NOODLE_CACHE_DIR", str(tmp_path))  # spawned workers inherit it
    items = _items(4)
    with Processor(n_workers=1, port=0) as first:
        out = first.map_program(axpy, items)
        assert all(np.allclose(o, a * x + y) for (a, x, y), o in zip(items, out, strict=True))
        (stats,) = first.program_stats().values()
        assert stats["kernel_builds"].get("compiled", 0) >= 1
        assert all(p["backend"] == "numba" for p in stats["programs"].values())
    assert list((tmp_path / "kernels").glob("k_*.py")), "the kernel was written to the shared cache"
    with Processor(n_workers=1, port=0) as second:  # a fresh worker process, same cache path
        out = second.map_program(axpy, items)
        assert all(np.allclose(o, a * x + y) for (a, x, y), o in zip(items, out, strict=True))
        (stats,) = second.program_stats().values()
        assert stats["kernel_builds"].get("disk", 0) >= 1 and not stats["kernel_builds"].get("compiled")
