"""Executor and jit runtime: counters, background compile switch, failure fallback, metrics."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

import noodle as nd
from noodle import metrics
from noodle.errors import ExecutionError, NBCFormatError, OpValueError
from noodle.jit.manager import default_manager
from noodle.trace import trace


def _wait_compiled(state, timeout=60.0):
    deadline = time.monotonic() + timeout
    while state.status in ("queued", "compiling") and time.monotonic() < deadline:
        time.sleep(0.01)
    return state.status


def test_execute_bytes_counts_per_program_and_instruction():
    x = np.arange(6.0)
    data = nd.nbc.dumps(trace(lambda a, b: a * b + 1.0, (x, x)))
    ex = nd.Executor(backend="interpret")
    for _ in range(3):
        np.testing.assert_array_equal(ex.execute(data, x, x), x * x + 1.0)
    (st,) = ex.stats().values()
    assert st["calls"] == 3 and st["interpreted_calls"] == 3 and st["compiled_calls"] == 0
    assert {i["calls"] for i in st["instructions"]} == {3}
    with pytest.raises(ExecutionError, match="expects"):
        ex.execute(data, x, np.ones(5))
    with pytest.raises(NBCFormatError):
        ex.execute(data[:-1], x, x)


def test_hot_program_compiles_in_background_and_switches():
    x = np.random.default_rng(1).random(1000)
    ex = nd.Executor(hot_threshold=2)
    prog = trace(lambda a, b: np.exp(-a) * b - 0.5, (x, x))
    want = np.exp(-x) * x - 0.5
    before = metrics.registry.get("noodle_jit_calls_total").value("compiled")
    for _ in range(2):
        np.testing.assert_allclose(ex.execute(prog, x, x), want, rtol=1e-14)
    st = ex.state(prog)
    assert _wait_compiled(st) == "compiled", st.error
    np.testing.assert_allclose(ex.execute(prog, x, x), want, rtol=1e-14)
    assert st.compiled_calls == 1 and st.backend == "numba"
    assert metrics.registry.get("noodle_jit_calls_total").value("compiled") == before + 1
    assert any(e.kind == "jit_compile" and e.data.get("status") == "ok" for e in metrics.events("jit_compile"))


def test_failed_compile_is_logged_once_counted_and_stays_interpreted(caplog, monkeypatch):
    import noodle.jit.lower as lower

    def broken(program, backend):   # fault injection: the backend's compiler fails
        raise RuntimeError("injected compiler failure")

    monkeypatch.setattr(lower, "build_runner", broken)
    x = np.arange(4.0)
    f = nd.jit(lambda a: a * 3.0 + 1.0, hot_threshold=1)
    failed = metrics.registry.get("noodle_jit_compiles_total")
    before = failed.value("numba", "failed") if failed else 0.0
    with caplog.at_level(logging.WARNING, logger="noodle.jit"):
        np.testing.assert_array_equal(f(x), x * 3.0 + 1.0)
        assert default_manager().wait_idle()
        for _ in range(5):
            np.testing.assert_array_equal(f(x), x * 3.0 + 1.0)
        assert default_manager().wait_idle()
    assert f.state(x).status == "failed"
    assert f.stats()["compiled_calls"] == 0 and f.stats()["interpreted_calls"] == 6
    assert sum("stays interpreted" in r.getMessage() for r in caplog.records) == 1
    assert metrics.registry.get("noodle_jit_compiles_total").value("numba", "failed") == before + 1
    assert metrics.registry.get("noodle_jit_fallbacks_total").total() >= 1


def test_jit_api_compile_nir_bytecode_stats_memory_plan():
    x = np.random.default_rng(2).random(10_000)

    @nd.jit(hot_threshold=1000)
    def chain(a, b, c, d, e):
        return a * b + c * d - 0.5 * nd.exp(-e)

    args = (x,) * 5
    assert chain.compile(*args) == "numba"
    np.testing.assert_allclose(chain(*args), x * x + x * x - 0.5 * np.exp(-x), rtol=1e-13)
    s = chain.stats()
    assert s["compiled_calls"] == 1 and s["backend"] == "numba" and s["compile_seconds"] > 0
    assert "exp" in chain.nir(*args)
    assert nd.nbc.loads(chain.bytecode(*args)).n_inputs == 5
    assert chain.memory_plan(*args)["peak_bytes"] == x.nbytes


def test_interpret_backend_never_compiles():
    f = nd.jit(lambda a: a + 1.0, backend="interpret", hot_threshold=0)
    for _ in range(3):
        f(np.ones(3))
    assert f.compile(np.ones(3)) == "interpret"
    assert f.stats()["interpreted_calls"] == 3


def test_threads_keep_running_while_compiling_and_switch():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(3)
    x, y = rng.random((50, 40)), rng.random(40)

    @nd.jit(hot_threshold=3)
    def f(a, b):
        return (np.tanh(a) * b + 1.0).sum(axis=1)

    want = (np.tanh(x) * y + 1.0).sum(axis=1)

    def work(_):
        return [f(x, y) for _ in range(20)]

    with ThreadPoolExecutor(4) as pool:
        results = [r for batch in pool.map(work, range(4)) for r in batch]
    for r in results:
        np.testing.assert_allclose(r, want, rtol=1e-12)
    assert default_manager().wait_idle()
    st = f.state(x, y)
    assert st.status == "compiled", st.error
    f(x, y)
    s = f.stats()
    assert s["calls"] == 81 and s["compiled_calls"] >= 1 and s["interpreted_calls"] >= 3


def test_cupy_inputs_choose_the_cuda_backend():
    from noodle.exec.state import ProgramState
    from noodle.jit.manager import choose_backend

    st = ProgramState(trace(lambda a: a + 1.0, (np.ones(2),)))
    assert choose_backend(st) == "numba"
    st.array_module = "cupy"
    assert choose_backend(st) == "cuda"
    st.backend_request = "numba"
    assert choose_backend(st) == "numba"


def test_a_compiled_runner_that_raises_falls_back_to_the_interpreter(caplog):
    x = np.arange(5.0)
    f = nd.jit(lambda a: a * 2.0 - 1.0, hot_threshold=10**6)
    assert f.compile(x) == "numba"
    state = f.state(x)

    def broken(args):
        raise RuntimeError("simulated backend bug")

    state.runner = broken
    with caplog.at_level(logging.WARNING, logger="noodle.jit"):
        for _ in range(3):
            np.testing.assert_array_equal(f(x), x * 2.0 - 1.0)
    assert state.status == "failed" and "simulated backend bug" in state.error
    assert sum("runs interpreted from now on" in r.getMessage() for r in caplog.records) == 1
    assert f.stats()["interpreted_calls"] == 3


def test_interpreter_errors_name_the_instruction():
    # NumPy's ValueError (integers to negative powers) stays a ValueError: OpValueError
    with pytest.raises(OpValueError, match="power"):
        nd.jit(lambda a: a ** -1, backend="interpret")(np.arange(1, 4))


def test_results_kept_across_compiled_calls_stay_intact():
    rng = np.random.default_rng(4)
    x, y = rng.random((300, 400)), rng.random((300, 400))
    f = nd.jit(lambda a, b: (a * b + 1.0, (a - b).sum(axis=0)))
    assert f.compile(x, y) == "numba"
    r1, r2, r3 = f(x, y), f(y, y), f(x, x)
    np.testing.assert_allclose(r1[0], x * y + 1.0, rtol=1e-15)
    np.testing.assert_allclose(r2[0], y * y + 1.0, rtol=1e-15)
    np.testing.assert_allclose(r3[0], x * x + 1.0, rtol=1e-15)
    np.testing.assert_allclose(r1[1], (x - y).sum(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(r2[1], np.zeros(400))


def test_hot_threshold_tuple_halves_are_checked():
    from noodle.errors import ConfigError
    from noodle.exec.state import parse_hot_threshold

    assert parse_hot_threshold((5, 1)) == (5, 1.0)
    assert parse_hot_threshold((None, 0.5)) == (None, 0.5)
    for bad in ((10.0, 0.05), ("10", None), (3, "fast"), (True, None)):
        with pytest.raises(ConfigError, match="hot_threshold"):
            parse_hot_threshold(bad)


# ---------------------------------------------------------------- the bounded program cache


def _programs(n: int):
    x = np.arange(6.0)
    fns = [lambda a, k=k: a * float(k) + 1.0 for k in range(n)]
    return x, [nd.nbc.dumps(trace(f, (x,))) for f in fns], [x * float(k) + 1.0 for k in range(n)]


def test_program_cache_evicts_the_least_recently_used_and_reruns_it_correctly():
    x, data, want = _programs(3)
    ex = nd.Executor(backend="interpret", cache_size=2)
    a, b, c = data
    for d, w in ((a, want[0]), (b, want[1]), (a, want[0])):   # a is now the most recent
        np.testing.assert_array_equal(ex.execute(d, x), w)
    state_a = ex.state(a)
    np.testing.assert_array_equal(ex.execute(c, x), want[2])   # b goes
    assert ex.evictions == 1 and len(ex.stats()) == 2
    assert ex.state(a) is state_a and state_a.calls == 2
    # b comes back as a new program (decoded, checked, counted afresh) with the right result
    np.testing.assert_array_equal(ex.execute(b, x), want[1])
    assert ex.evictions == 2 and ex.state(b).calls == 1
    assert ex.state(a) is state_a   # a was touched after c: c went
    assert sorted(st["calls"] for st in ex.stats().values()) == [1, 2]


def test_program_cache_counts_nir_programs_and_bytes_together():
    x = np.arange(4.0)
    progs = [trace(lambda a, k=k: a - float(k), (x,)) for k in range(4)]
    ex = nd.Executor(backend="interpret", cache_size=3)
    for k, p in enumerate(progs):
        np.testing.assert_array_equal(ex.execute(p, x), x - float(k))
    np.testing.assert_array_equal(ex.execute(nd.nbc.dumps(progs[0]), x), x)
    assert len(ex.stats()) == 3 and ex.evictions == 2
    # an evicted NIR program runs again as a new entry, and results stay right
    np.testing.assert_array_equal(ex.execute(progs[0], x), x)
    np.testing.assert_array_equal(ex.execute(progs[1], x), x - 1.0)
    assert ex.evictions == 4
    # (stats are keyed by program hash: progs[0] as NIR and as bytes share one row)
    assert {st["calls"] for st in ex.stats().values()} == {1}


def test_program_cache_size_comes_from_the_setting_and_is_checked(monkeypatch):
    from noodle import config
    from noodle.errors import ConfigError

    monkeypatch.setenv("NOODLE_JIT_CACHE_SIZE", "1")
    config.reload()
    try:
        x, data, want = _programs(2)
        ex = nd.Executor(backend="interpret")
        assert ex.cache_size == 1
        for d, w in zip(data, want, strict=True):
            np.testing.assert_array_equal(ex.execute(d, x), w)
        assert len(ex.stats()) == 1 and ex.evictions == 1
        monkeypatch.setenv("NOODLE_JIT_CACHE_SIZE", "0")
        with pytest.raises(ConfigError, match="NOODLE_JIT_CACHE_SIZE"):
            config.reload()
    finally:
        monkeypatch.delenv("NOODLE_JIT_CACHE_SIZE")
        config.reload()
    assert nd.Executor().cache_size == 256
    for bad in (0, -3, 2.5, True, "8"):
        with pytest.raises(ExecutionError, match="cache_size"):
            nd.Executor(cache_size=bad)


def test_a_compiled_program_evicted_and_run_again_is_still_right():
    pytest.importorskip("numba")
    x = np.random.default_rng(3).random(500)
    prog = trace(lambda a: np.exp(-a) * a + 0.25, (x,))
    other = trace(lambda a: a * 3.0, (x,))
    ex = nd.Executor(hot_threshold=10**9, cache_size=1)
    assert default_manager().compile_now(ex.state(prog)) == "numba"
    np.testing.assert_allclose(ex.execute(prog, x), np.exp(-x) * x + 0.25, rtol=1e-14)
    assert ex.state(prog).compiled_calls == 1
    np.testing.assert_array_equal(ex.execute(other, x), x * 3.0)   # prog goes
    assert ex.evictions == 1
    st = ex.state(prog)   # a fresh state: interpreted until compiled again (the runner is reused)
    assert st.compiled_calls == 0
    np.testing.assert_allclose(ex.execute(prog, x), np.exp(-x) * x + 0.25, rtol=1e-14)
    assert default_manager().compile_now(st) == "numba"
    np.testing.assert_allclose(ex.execute(prog, x), np.exp(-x) * x + 0.25, rtol=1e-14)
    assert st.compiled_calls == 1
