"""Untrusted NBC cannot hang the Executor or exhaust memory: programs are bounded before they run.

Every hostile program here is well formed (it passes ``nbc.loads`` and the verifier) and
tiny as bytes; what makes it hostile is what its declared shapes ask for. The Executor
must refuse it with ``NBCResourceError`` from the shapes alone, quickly and without
allocating, and say which instruction and how much.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import noodle as nd
from noodle import config, nbc
from noodle.errors import ConfigError, ExecutionError, NBCResourceError, NoodleError, ShapeError
from noodle.exec import interpreter
from noodle.exec.limits import current_limits, estimate
from noodle.ir.graph import Builder
from noodle.passes.fuse import fuse
from noodle.passes.memplan import plan_memory
from noodle.trace import trace

try:
    from numpy._core._exceptions import _ArrayMemoryError  # what NumPy raises when malloc fails
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core._exceptions import _ArrayMemoryError

REFUSE_WITHIN_S = 1.0  # a resource bound, not a benchmark: the check is one walk over the nodes


@pytest.fixture(autouse=True)
def _fresh_settings():
    """Each test starts and ends with settings read from the real environment."""
    config.reload()
    yield
    config.reload()


def _use(**env: str) -> None:
    """Apply settings for this test only (the autouse fixture restores them)."""
    config.reload({**os.environ, **env})


# ---------------------------------------------------------------- hostile programs

def _huge_broadcast_sum():
    b = Builder()
    x = b.input(0, (1,), "float64")
    wide = b.add("broadcast_to", x, shape=(2**20, 2**20))   # 2**40 elements, a free view
    # refused at the sum: it would read the 2**40-element view as float64 (16 TiB)
    return b.finish([b.add("sum", wide)]), (np.ones(1),), "sum"


def _huge_reshape():
    b = Builder()
    x = b.input(0, (1,), "float64")
    wide = b.add("broadcast_to", x, shape=(2**15, 2**15))
    return b.finish([b.add("reshape", wide, shape=(2**30,))]), (np.ones(1),), "reshape"


def _outer_product():
    b = Builder()
    col = b.input(0, (10**6, 1), "float64")
    row = b.input(1, (1, 10**6), "float64")
    return (b.finish([b.add("multiply", col, row)]), (np.ones((10**6, 1)), np.ones((1, 10**6))),
            "multiply")


def _long_chain():
    b = Builder()
    x = b.input(0, (10**6,), "float64")
    for _ in range(5000):
        x = b.add("negative", x)
    return b.finish([x]), (np.ones(10**6),), "negative"


HOSTILE = [_huge_broadcast_sum, _huge_reshape, _outer_product, _long_chain]


@pytest.mark.parametrize("make", HOSTILE, ids=lambda f: f.__name__.strip("_"))
def test_hostile_program_is_refused_quickly_without_allocating(make):
    program, args, op = make()
    data = nbc.dumps(program)
    if make is _huge_reshape:   # 8 GiB: refuse it on bytes whatever this machine has
        _use(NOODLE_EXEC_MAX_BYTES=str(2**30))
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    with pytest.raises(NBCResourceError) as info:
        nd.Executor(backend="interpret").execute(data, *args, use_jit=False)
    elapsed = time.perf_counter() - t0
    grown = proc.memory_info().rss - rss0
    assert elapsed < REFUSE_WITHIN_S, f"refusing took {elapsed:.2f} s"
    assert grown < current_limits().max_bytes
    assert grown < 256 * 2**20, f"RSS grew by {grown / 2**20:.0f} MiB while refusing"
    message = str(info.value)
    assert f"= {op} %" in message                                   # the instruction, as printed
    assert any(unit in message for unit in ("GiB", "TiB", "elements"))
    assert "NOODLE_EXEC_MAX_" in message                            # what to raise if trusted
    assert isinstance(info.value, MemoryError) and isinstance(info.value, NoodleError)


def test_hostile_program_is_refused_every_time_not_cached():
    program, args, _ = _huge_broadcast_sum()
    ex = nd.Executor(backend="interpret")
    for _ in range(2):
        with pytest.raises(NBCResourceError):
            ex.execute(nbc.dumps(program), *args)
    assert ex.stats() == {}


def test_peak_over_the_limit_is_refused_even_when_each_instruction_fits():
    b = Builder()
    x = b.input(0, (2**19,), "float64")                      # 4 MiB values
    ys = [b.add("negative", x), b.add("exp", x), b.add("sqrt", x)]
    data = nbc.dumps(b.finish(ys))                           # all three live at the end: 12 MiB
    _use(NOODLE_EXEC_MAX_BYTES=str(10 * 2**20))
    with pytest.raises(NBCResourceError, match=r"at once .*%3 = sqrt %0.*10\.0 MiB"):
        nd.Executor().execute(data, np.ones(2**19))
    _use(NOODLE_EXEC_MAX_BYTES=str(16 * 2**20))
    out = nd.Executor().execute(data, np.ones(2**19), use_jit=False)
    np.testing.assert_array_equal(out[2], np.ones(2**19))


def test_a_program_object_is_checked_too():
    program, args, _ = _outer_product()
    with pytest.raises(NBCResourceError, match="multiply"):
        nd.Executor().execute(program, *args)


def test_normal_programs_still_run_and_match_numpy():
    rng = np.random.default_rng(7)
    a, w = rng.random((1000, 64)), rng.random((64, 8))
    f = lambda a, w: np.maximum(a @ w - 0.5, 0.0).sum(axis=0) / np.exp(a).mean()  # noqa: E731
    program = trace(f, (a, w))
    ex = nd.Executor(backend="interpret")
    np.testing.assert_allclose(ex.execute(nbc.dumps(program), a, w), f(a, w), rtol=1e-12)
    np.testing.assert_allclose(ex.execute(program, a, w), f(a, w), rtol=1e-12)


def test_a_1e7_element_float64_chain_is_not_refused():
    """80 MB values and a few 1e7-element steps: an ordinary workload stays well inside the defaults."""
    x = np.linspace(0.0, 1.0, 10**7)
    program = trace(lambda a: np.sqrt(a * 2.0 + 1.0).sum(), (x,))
    est = estimate(program)
    assert est.peak_bytes <= 4 * 8 * 10**7 and est.work_elements < current_limits().max_elements
    got = nd.Executor(backend="interpret").execute(program, x, use_jit=False)
    np.testing.assert_allclose(got, np.sqrt(x * 2.0 + 1.0).sum(), rtol=1e-9)


@pytest.mark.parametrize("f,args", [
    (lambda a, b: (a @ b).T.reshape(-1) + 1.0, (np.ones((30, 20)), np.ones((20, 10)))),
    (lambda a: (np.exp(a) - a.mean(axis=0)).astype(np.float32).sum(axis=1), (np.ones((50, 40)),)),
    (lambda a, b: np.where(a > b, a, b * 2.0).max(), (np.ones((64, 64)), np.zeros(64))),
])
def test_estimate_bounds_the_eager_memory_plan(f, args):
    """The refusal bound is never below what memplan says eager execution needs at peak."""
    program = trace(f, args)
    assert estimate(program).peak_bytes >= plan_memory(fuse(program))["unfused_peak_bytes"]


# ---------------------------------------------------------------- errors while running

def test_memory_error_inside_an_op_becomes_a_noodle_error_naming_it(monkeypatch):
    data = nbc.dumps(trace(lambda a: np.exp(a) + 1.0, (np.ones(4),)))

    def refuse(node, vals, xp=np):
        raise _ArrayMemoryError((2**40,), np.dtype("float64"))

    monkeypatch.setattr(interpreter, "eval_node", refuse)
    with pytest.raises(NBCResourceError, match=r"%1 = exp %0.*ran out of memory") as info:
        nd.Executor(backend="interpret").execute(data, np.ones(4))
    assert isinstance(info.value.__cause__, MemoryError)


def test_other_low_level_errors_become_execution_errors_and_noodle_errors_pass(monkeypatch):
    program = trace(lambda a: np.exp(a), (np.ones(4),))

    def broken(node, vals, xp=np):
        raise IndexError("simulated low-level bug")

    monkeypatch.setattr(interpreter, "eval_node", broken)
    with pytest.raises(ExecutionError, match=r"exp %0.*IndexError: simulated"):
        interpreter.run_program(program, (np.ones(4),))

    own = ShapeError("already a noodle error")

    def noodle_error(node, vals, xp=np):
        raise own

    monkeypatch.setattr(interpreter, "eval_node", noodle_error)
    with pytest.raises(ShapeError) as info:
        interpreter.run_program(program, (np.ones(4),))
    assert info.value is own


def _overcommit_refuses_huge_allocations() -> bool:
    try:
        return Path("/proc/sys/vm/overcommit_memory").read_text().strip() in ("0", "2")
    except OSError:
        return False


@pytest.mark.skipif(not _overcommit_refuses_huge_allocations(),
                    reason="the OS might grant an 8 TB allocation lazily and kill the process later")
def test_a_real_failed_allocation_with_limits_raised_is_a_noodle_error():
    program, args, _ = _outer_product()
    _use(NOODLE_EXEC_MAX_BYTES=str(2**62), NOODLE_EXEC_MAX_ELEMENTS=str(2**62))
    with pytest.raises(NBCResourceError, match=r"%2 = multiply %0, %1.*ran out of memory"):
        nd.Executor(backend="interpret").execute(nbc.dumps(program), *args, use_jit=False)


# ---------------------------------------------------------------- settings and load time

def test_limits_are_settings_listed_by_noodle_config():
    names = {env for _, env, _, _ in config.get_settings().describe()}
    assert {"NOODLE_EXEC_MAX_BYTES", "NOODLE_EXEC_MAX_ELEMENTS", "NOODLE_NBC_MAX_NODES"} <= names
    with pytest.raises(ConfigError, match="NOODLE_EXEC_MAX_ELEMENTS"):
        _use(NOODLE_EXEC_MAX_ELEMENTS="0")
    _use(NOODLE_EXEC_MAX_BYTES="12345")
    assert current_limits().max_bytes == 12345
    _use(NOODLE_EXEC_MAX_BYTES="0")
    assert 0 < current_limits().max_bytes <= psutil.virtual_memory().total


def test_raising_the_work_limit_lets_a_trusted_program_run():
    b = Builder()
    x = b.input(0, (1,), "float64")
    data = nbc.dumps(b.finish([b.add("sum", b.add("broadcast_to", x, shape=(1000, 1000)))]))
    _use(NOODLE_EXEC_MAX_ELEMENTS=str(10**6))
    with pytest.raises(NBCResourceError, match=r"2,000,000|2\.00e\+06"):
        nd.Executor().execute(data, np.ones(1))
    _use(NOODLE_EXEC_MAX_ELEMENTS=str(3 * 10**6))
    assert nd.Executor().execute(data, np.full(1, 2.0), use_jit=False) == 2.0 * 10**6


def _chain_nbc(n_nodes: int) -> bytes:
    b = Builder()
    x = b.input(0, (4,), "float64")
    for _ in range(n_nodes - 1):
        x = b.add("negative", x)
    return nbc.dumps(b.finish([x]))


def test_too_many_instructions_are_refused_before_decoding():
    _use(NOODLE_NBC_MAX_NODES="1000")
    data = _chain_nbc(1001)
    t0 = time.perf_counter()
    with pytest.raises(NBCResourceError, match="1,001 instructions.*NOODLE_NBC_MAX_NODES"):
        nbc.loads(data)
    assert time.perf_counter() - t0 < REFUSE_WITHIN_S
    assert len(nbc.loads(_chain_nbc(1000)).nodes) == 1000


def test_loading_the_most_instructions_allowed_stays_bounded():
    """Decoding, verifying and checking are linear: the default maximum loads in about a second."""
    n = int(config.get_settings().nbc_max_nodes)
    data = _chain_nbc(n)
    t0 = time.perf_counter()
    ex = nd.Executor(backend="interpret")
    out = ex.execute(data, np.ones(4), use_jit=False)
    elapsed = time.perf_counter() - t0
    np.testing.assert_array_equal(out, np.ones(4) * (-1) ** (n - 1))
    assert elapsed < 20.0, f"{n} instructions took {elapsed:.1f} s to load, check and run"


def test_a_large_but_ordinary_matmul_is_within_the_default_work_limit():
    """A 2000^3 product runs in a fraction of a second through BLAS: it must not be refused,
    while a hostile 2**40-element broadcast still is."""
    b = Builder()
    x, w = b.input(0, (2000, 2000), "float64"), b.input(1, (2000, 2000), "float64")
    program = b.finish([b.add("matmul", x, w)])
    assert estimate(program).work_elements <= current_limits().max_elements
    from noodle.exec.limits import check_resources

    check_resources(program)   # does not raise


def test_a_reduction_of_a_broadcast_counts_the_float64_copy_it_makes(monkeypatch):
    """The defined-order sum reads a broadcast view as float64 laid out with the reduced axes last:
    2 GiB for a (2, 8192, 8192) float32 view of a 64 KiB input. The estimate must see that."""
    monkeypatch.setenv("NOODLE_EXEC_MAX_BYTES", str(64 * 2**20))
    config.reload()
    try:
        b = Builder()
        x = b.input(0, (2, 1, 8192), "float32")
        s = b.add("sum", b.add("broadcast_to", x, shape=(2, 8192, 8192)), axis=(1, 2), keepdims=False)
        data = nbc.dumps(b.finish([s]))
        with pytest.raises(NBCResourceError, match="sum"):
            nd.Executor().execute(data, np.ones((2, 1, 8192), np.float32))
    finally:
        monkeypatch.delenv("NOODLE_EXEC_MAX_BYTES")
        config.reload()
