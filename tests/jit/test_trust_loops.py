"""Untrusted bytecode with loops runs within limits: a loop that never ends is stopped, not run forever.

A ``while_loop``'s trip count is data, so unlike shapes it cannot be bounded before the run. The
Executor counts iterations (``NOODLE_EXEC_MAX_ITERATIONS``) and the elements they process
(``NOODLE_EXEC_MAX_ELEMENTS``) as the program runs, interpreted or compiled, and stops it with
``NBCResourceError`` naming the setting to raise. A user's own jitted code is trusted: not bounded.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import noodle as nd
from noodle import config
from noodle.errors import ConfigError, NBCResourceError
from noodle.exec.interpreter import run_program
from noodle.exec.limits import bounded_loops, check_resources, estimate
from noodle.ir.graph import Builder, SubProgram
from noodle.trace import trace

STOPS_WITHIN_S = 30.0   # a bound, not a benchmark: 1000 iterations of a tiny body take milliseconds


@pytest.fixture(autouse=True)
def _fresh_settings():
    config.reload()
    yield
    config.reload()


def _use(**env: str) -> None:
    config.reload({**os.environ, **env})


def _i(v: int) -> np.ndarray:
    """A 0-d int64 array: a traced argument (a NumPy scalar would be a static value)."""
    return np.array(v, dtype=np.int64)


def _endless() -> bytes:
    """An int64 counter that counts up while it is >= 0: never ends (2**63 iterations)."""
    return nd.nbc.dumps(trace(lambda c: nd.while_loop(lambda i: i >= 0, lambda i: i + 1, c),
                              (_i(0),)))


def _count_to() -> bytes:
    """Counts while below the second argument: the trip count is the caller's data."""
    return nd.nbc.dumps(trace(lambda c, n: nd.while_loop(lambda i: i < n, lambda i: i + 1, c),
                              (_i(0), _i(5))))


def test_a_loop_that_never_ends_is_stopped_naming_the_setting() -> None:
    _use(NOODLE_EXEC_MAX_ITERATIONS="1000")
    ex = nd.Executor(backend="interpret")
    t0 = time.monotonic()
    with pytest.raises(NBCResourceError, match=r"NOODLE_EXEC_MAX_ITERATIONS=1000.*raise\s+NOODLE_EXEC_MAX_ITERATIONS"):
        ex.execute(_endless(), _i(0))
    assert time.monotonic() - t0 < STOPS_WITHIN_S


def test_the_default_bounds_iterations() -> None:
    from noodle.config import get_settings

    assert get_settings().exec_max_iterations == 10**6
    with pytest.raises(ConfigError, match="NOODLE_EXEC_MAX_ITERATIONS"):
        _use(NOODLE_EXEC_MAX_ITERATIONS="0")


def test_a_loop_within_the_limit_runs_and_the_limit_counts_every_iteration() -> None:
    _use(NOODLE_EXEC_MAX_ITERATIONS="100")
    ex = nd.Executor(backend="interpret")
    data = _count_to()
    assert int(ex.execute(data, _i(0), _i(100))) == 100     # exactly at the limit
    with pytest.raises(NBCResourceError, match="past 100 iterations"):
        ex.execute(data, _i(0), _i(101))
    assert int(ex.execute(data, _i(0), _i(7))) == 7          # each run has its own budget


def test_iterations_of_large_bodies_count_against_the_element_limit() -> None:
    x = np.ones(10**5)
    data = nd.nbc.dumps(trace(lambda a, n: nd.while_loop(lambda c: c[0] < n, lambda c: (c[0] + 1, c[1] * 1.0),
                                                          (_i(0), a))[1], (x, _i(3))))
    _use(NOODLE_EXEC_MAX_ELEMENTS=str(10**7))
    ex = nd.Executor(backend="interpret")
    np.testing.assert_array_equal(ex.execute(data, x, _i(3)), x)
    with pytest.raises(NBCResourceError, match=r"NOODLE_EXEC_MAX_ELEMENTS=10000000"):
        ex.execute(data, x, _i(10**4))   # 10**4 iterations of 10**5 elements


def test_the_compiled_runner_is_bounded_too() -> None:
    _use(NOODLE_EXEC_MAX_ITERATIONS="50")
    ex = nd.Executor(hot_threshold=1, backend="numba")
    data = _count_to()
    assert int(ex.execute(data, _i(0), _i(5))) == 5
    st = ex.state(data)
    deadline = time.monotonic() + 60
    while st.status in ("interpreted", "queued", "compiling") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert st.status == "compiled", st.error
    with pytest.raises(NBCResourceError, match="NOODLE_EXEC_MAX_ITERATIONS=50"):
        ex.execute(data, _i(0), _i(10**9))
    assert st.status == "compiled" and st.runner is not None   # a refused run is not a backend failure
    assert int(ex.execute(data, _i(0), _i(9))) == 9


def test_a_hostile_instruction_inside_a_loop_body_is_refused_before_running() -> None:
    body = Builder()
    x = body.input(0, (1,), "float64")
    wide = body.add("broadcast_to", x, shape=(2**20, 2**20))
    s = body.add("reshape", body.add("sum", wide), shape=(1,))
    body_prog = body.finish([s])
    cond = Builder()
    cond.input(0, (1,), "float64")
    t = cond.const(np.array(True))
    cond_prog = cond.finish([t])
    b = Builder()
    loop = b.add("while_loop", b.input(0, (1,), "float64"), cond=SubProgram(cond_prog), body=SubProgram(body_prog),
                 carry=1)
    program = b.finish([b.add("loop_result", loop, item=0)])
    with pytest.raises(NBCResourceError, match=r"in the body of loop .*sum"):
        check_resources(program)
    assert estimate(program).work_elements >= 2**40


def test_trusted_jitted_code_is_not_bounded() -> None:
    _use(NOODLE_EXEC_MAX_ITERATIONS="10")
    f = nd.jit(lambda n: nd.fori_loop(0, n, lambda i, c: c + i, np.int64(0)))
    assert int(f(_i(100))) == sum(range(100))


def test_bounded_loops_costs_nothing_without_loops() -> None:
    program = trace(lambda a: a + 1.0, (np.ones(3),))
    with bounded_loops(program) as budget:
        assert budget is None
        np.testing.assert_array_equal(run_program(program, (np.ones(3),))[0], np.full(3, 2.0))
