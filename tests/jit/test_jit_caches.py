"""The JIT's caches are bounded LRUs sized by NOODLE_JIT_CACHE_SIZE.

Why: a long-running process that meets a stream of new signatures (or compiles a stream of
new programs) must not grow without limit; the least recently *used* entry goes (not the
first traced), and whatever is evicted is rebuilt with the same bits when it comes back.
"""

from __future__ import annotations

import numpy as np
import pytest

import noodle as nd
from noodle import config
from noodle.errors import ConfigError
from noodle.exec.state import ProgramState
from noodle.jit.manager import CompileManager
from noodle.trace import trace

N_DISTINCT = 3_000   # distinct signatures/programs pushed through a cache of 16/32 entries


@pytest.fixture
def cache_size(monkeypatch):
    """Set NOODLE_JIT_CACHE_SIZE for what is constructed inside the test."""
    def set_size(n: int) -> None:
        monkeypatch.setenv("NOODLE_JIT_CACHE_SIZE", str(n))
        config.reload()
    yield set_size
    monkeypatch.delenv("NOODLE_JIT_CACHE_SIZE", raising=False)
    config.reload()


def _counting(fn):
    """A function and how many times its body ran (with backend="interpret", once per trace)."""
    traces = []

    def body(x):
        traces.append(x.shape)
        return fn(x)
    return body, traces


def test_the_signature_cache_evicts_the_least_recently_used(cache_size):
    cache_size(3)
    body, traces = _counting(lambda x: x * 2.0 + 1.0)
    f = nd.jit(body, backend="interpret")
    assert f.cache_size == 3
    for n in (1, 2, 3):
        f(np.ones(n))
    f(np.ones(1))          # used again: now 2 is the least recently used
    f(np.ones(4))          # evicts 2, not 1 (the first traced)
    assert len(traces) == 4 and f.evictions == 1
    f(np.ones(1))
    f(np.ones(3))
    f(np.ones(4))
    assert len(traces) == 4, "a signature still cached was traced again"
    f(np.ones(2))
    assert len(traces) == 5 and traces[-1] == (2,)
    assert len(f._states) == 3


def test_the_setting_is_read_once_at_construction(cache_size):
    cache_size(2)
    f = nd.jit(lambda x: x + 1.0, backend="interpret")
    cache_size(50)
    g = nd.jit(lambda x: x + 1.0, backend="interpret")
    assert (f.cache_size, g.cache_size) == (2, 50)
    for n in range(1, 10):
        np.testing.assert_array_equal(f(np.zeros(n)), np.ones(n))
        g(np.zeros(n))
    assert len(f._states) == 2 and len(g._states) == 9


def test_a_bad_cache_size_setting_is_refused(cache_size):
    with pytest.raises(ConfigError, match="NOODLE_JIT_CACHE_SIZE"):
        cache_size(0)


def test_an_evicted_compiled_signature_gives_the_same_bits_when_it_comes_back(cache_size):
    cache_size(2)
    f = nd.jit(lambda a, b: (a - b) ** 2 * 0.5 - nd.exp(-a), hot_threshold=0)
    rng = np.random.default_rng(3)
    inputs = {n: (rng.standard_normal(n), rng.standard_normal(n)) for n in (7, 8, 9)}
    assert f.compile(*inputs[7]) == "numba"
    first = f(*inputs[7])
    for n in (8, 9):           # two more signatures: the first is evicted
        f.compile(*inputs[n])
        f(*inputs[n])
    assert f.evictions >= 1
    assert f.compile(*inputs[7]) == "numba"
    again = f(*inputs[7])
    assert again.dtype == first.dtype and again.tobytes() == first.tobytes()
    a, b = inputs[7]
    want = (a - b) ** 2 * 0.5 - np.exp(-a)
    assert again.tobytes() == want.tobytes()


@pytest.mark.slow
def test_the_signature_cache_does_not_grow_over_ten_thousand_signatures(cache_size):
    cache_size(16)
    f = nd.jit(lambda x, k: x * k + 1.0, backend="interpret", static_argnums=1)
    x = np.arange(3.0)
    most = 0
    for k in range(N_DISTINCT):
        if k % 997 == 0:
            np.testing.assert_array_equal(f(x, k), x * k + 1.0)
        else:
            f(x, k)
        most = max(most, len(f._states))
    assert most == 16 and f.evictions == N_DISTINCT - 16


# ---------------------------------------------------------------- the compiled-runner cache
def _state(key: str) -> ProgramState:
    st = ProgramState(trace(lambda a: a + 1.0, (np.ones(2),)), backend="numba")
    st._key = key     # distinct programs: the manager keys runners on the program's content hash
    return st


@pytest.fixture
def fake_build(monkeypatch):
    """build_runner that only counts (a Numba compile per program would take minutes here)."""
    import noodle.jit.lower as lower

    built: list[str] = []

    def build(program, backend):
        built.append("x")

        def runner(args):
            return (args[0] + 1.0,)
        return runner
    monkeypatch.setattr(lower, "build_runner", build)
    return built


def test_the_runner_cache_evicts_the_least_recently_used(fake_build):
    m = CompileManager(cache_size=2)
    for key in ("a", "b"):
        assert m.compile_now(_state(key)) == "numba"
    assert m.compile_now(_state("a")) == "numba"     # a hit: "b" is now the least recently used
    assert len(fake_build) == 2
    m.compile_now(_state("c"))                        # evicts "b"
    assert m.evictions == 1 and len(fake_build) == 3
    m.compile_now(_state("a"))
    assert len(fake_build) == 3
    m.compile_now(_state("b"))
    assert len(fake_build) == 4
    st = _state("c")
    m.compile_now(st)
    np.testing.assert_array_equal(st.runner((np.ones(2),))[0], np.full(2, 2.0))


@pytest.mark.slow
def test_the_runner_cache_does_not_grow_over_ten_thousand_programs(fake_build):
    m = CompileManager(cache_size=32)
    most = 0
    for k in range(N_DISTINCT):
        m.compile_now(_state(f"p{k}"))
        most = max(most, len(m._runners))
    assert most == 32 and m.evictions == N_DISTINCT - 32 and len(fake_build) == N_DISTINCT


def test_the_runner_cache_size_comes_from_the_setting(cache_size):
    cache_size(7)
    assert CompileManager().cache_size == 7
    with pytest.raises(ConfigError, match="cache_size"):
        CompileManager(cache_size=0)
    with pytest.raises(ConfigError, match="cache_size"):
        CompileManager(cache_size=True)
