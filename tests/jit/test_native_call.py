"""A hot small call's native entry (noodle.backends.numba_native_call) is only faster, never different.

Why these tests: after NATIVE_AFTER compiled calls of one signature, the Python fast path is replaced by
machine code that reads NumPy's array structs itself, allocates the outputs, and calls the kernel's
compiled function by Numba's calling convention. A wrong offset, a missed check, or a reference count
off by one would give a wrong answer, a crash, or a leak, and nothing else would notice. The oracle is
the plain function on NumPy; every argument the entry does not take must reach the general path.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
import types
import weakref

import numpy as np
import pytest
from tests.jit.call_helpers import general_calls, same_bits

import noodle as nd
from noodle import metrics
from noodle.backends.numba_native_call import layout_ok
from noodle.errors import ConfigError, TraceError
from noodle.jit.fastpath import MISS, NATIVE_AFTER


def _hot(f, *args):
    """Call ``f`` until its native entry is installed (built on a background thread once the signature
    is hot), or 20 s have passed; returns the last result."""
    deadline = time.monotonic() + 20.0
    calls = 0
    while calls < NATIVE_AFTER + 256 or (not isinstance(f._fast, types.BuiltinFunctionType)
                                         and time.monotonic() < deadline):
        out = f(*args)
        calls += 1
    return out


def _native(f, *args):
    """Compile ``f`` for ``args`` and call it until the native entry is installed; returns the last result."""
    assert f.compile(*args) == "numba"
    out = _hot(f, *args)
    assert isinstance(f._fast, types.BuiltinFunctionType), f._fast
    return out


def _chain(a, b, c, d, e):
    return a * b + c * d - 0.5 * np.exp(-e)


def test_this_machines_python_and_numpy_have_the_layout_the_entry_reads():
    assert layout_ok()


@pytest.mark.parametrize("n", [2, 16, 1000])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_native_entry_gives_the_plain_functions_bits(n, dtype):
    rng = np.random.default_rng(n)
    xs = [rng.standard_normal(n).astype(dtype) for _ in range(5)]
    f = nd.jit(lambda a, b, c, d, e: a * b + c * d - 0.5 * nd.exp(-e))
    got = _native(f, *xs)
    assert same_bits(got, _chain(*xs))
    for _ in range(3):   # fresh arrays every call, the same bits
        again = f(*xs)
        assert again is not got and same_bits(again, got)
    other = [rng.standard_normal(n).astype(dtype) for _ in range(5)]   # new values, same signature
    assert same_bits(f(*other), _chain(*other))


@pytest.mark.parametrize("fn, make", [
    (lambda a, b: a * b + 3, lambda r: (r.integers(-50, 50, 64), r.integers(-50, 50, 64))),
    (lambda a, b: np.where(a > b, a - b, b * 0.5), lambda r: (r.standard_normal(64), r.standard_normal(64))),
    (lambda a: np.sqrt(np.abs(a)) + a ** 2, lambda r: (r.standard_normal(64).astype(np.float32),)),
    (lambda a, b: a < b, lambda r: (r.standard_normal(64), r.standard_normal(64))),
], ids=["int64", "where", "float32-sqrt-square", "bool-out"])
def test_other_programs_through_the_native_entry_match_numpy(fn, make):
    args = make(np.random.default_rng(7))
    f = nd.jit(fn)
    got = _native(f, *args)
    assert same_bits(got, fn(*args))
    assert same_bits(f(*args), fn(*args))


def _misaligned(n: int) -> np.ndarray:
    buf = np.zeros(n * 8 + 1, np.uint8)
    a = np.frombuffer(buf[1:].data, np.float64)
    a.flags.writeable = True
    a[:] = np.arange(n, dtype=np.float64)
    assert not a.flags.aligned
    return a


def _read_only(n: int) -> np.ndarray:
    a = np.arange(n, dtype=np.float64)
    a.flags.writeable = False
    return a


class _Sub(np.ndarray):
    pass


@pytest.mark.parametrize("make", [
    lambda: np.arange(16, dtype=np.float32),            # another dtype
    lambda: np.arange(17.0),                            # another length
    lambda: np.arange(16.0).reshape(4, 4),              # another rank
    lambda: np.arange(32.0)[::2],                       # strided
    lambda: np.arange(16.0).astype(">f8"),              # byte-swapped
    lambda: _misaligned(16),                            # unaligned
    lambda: _read_only(16),                             # read-only: the entry reads it as it is
    lambda: np.arange(16.0).view(_Sub),                 # a subclass
    lambda: np.arange(16.0)[::-1],                      # negative stride
    lambda: np.arange(16.0),                            # what it was built for
], ids=["float32", "length", "rank", "strided", "byteswapped", "misaligned", "readonly", "subclass",
        "reversed", "same"])
def test_arguments_the_entry_does_not_take_still_get_numpys_answer(make, monkeypatch):
    f = nd.jit(lambda a, b: a * b + 1.0)
    x = np.linspace(-1, 1, 16)
    _native(f, x, x)
    entry = f._fast
    other = make()
    takes = other.dtype == np.float64 and other.dtype.isnative and other.shape == (16,) and \
        type(other) is np.ndarray and other.flags.c_contiguous and other.flags.aligned
    assert (entry((other, x)) is MISS) == (not takes)
    assert entry((x,)) is MISS and entry((x, x, x)) is MISS and entry((x, 1.0)) is MISS and entry(()) is MISS
    calls = general_calls(f, monkeypatch)
    if isinstance(other, _Sub):   # refused by the general path, naming the problem
        with pytest.raises(TraceError, match="subclass"):
            f(other, x)
        assert calls == [1]
        return
    b = x if other.shape == (16,) else other
    got = np.asarray(f(other, b))
    want = np.asarray(other) * np.asarray(b) + 1.0
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype
    assert calls == ([] if takes else [1])   # what the entry refuses reaches the general path


def test_a_dropped_runner_sends_calls_back_to_the_general_path():
    f = nd.jit(lambda a, b: a * b - 2.0, hot_threshold=10**9)
    x = np.arange(16.0)
    _native(f, x, x)
    entry = f._fast
    state = f.state(x, x)
    state.runtime_failure(RuntimeError("simulated backend bug"))
    assert entry((x, x)) is MISS
    before = f.stats()["interpreted_calls"]
    np.testing.assert_array_equal(f(x, x), x * x - 2.0)
    assert f.stats()["interpreted_calls"] == before + 1


def test_native_calls_are_counted_and_published():
    f = nd.jit(lambda a: a + 1.5)
    x = np.arange(16.0)
    _native(f, x)
    counter = metrics.registry.get("noodle_jit_calls_total")
    start_stats = f.stats()["compiled_calls"]
    start_metric = counter.value("compiled")
    for _ in range(1000):
        f(x)
    assert f.stats()["compiled_calls"] == start_stats + 1000
    published = counter.value("compiled") - start_metric
    assert 1000 - 256 < published <= 1000 + 256


def test_threads_share_the_entry_without_losing_calls_or_answers():
    f = nd.jit(lambda a, b: a * 2.0 + b)
    x, y = np.arange(16.0), np.ones(16)
    _native(f, x, y)
    start = f.stats()["compiled_calls"]
    bad: list[int] = []

    def work(k: int) -> None:
        a = x + k
        for _ in range(2000):
            if not np.array_equal(f(a, y), a * 2.0 + y):
                bad.append(k)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []
    assert f.stats()["compiled_calls"] == start + 8000


def test_no_references_leak_on_hits_or_misses():
    f = nd.jit(lambda a: a * 3.0)
    x = np.arange(16.0)
    _native(f, x)
    entry = f._fast
    wrong = np.arange(16, dtype=np.float32)
    hit_args, miss_args = (x,), (wrong,)
    counts = [sys.getrefcount(o) for o in (x, wrong, hit_args, miss_args, MISS)]
    for _ in range(10_000):
        out = entry(hit_args)
        entry(miss_args)
    assert [sys.getrefcount(o) for o in (x, wrong, hit_args, miss_args, MISS)] == counts
    assert sys.getrefcount(out) == 2   # ours and getrefcount's: the entry kept none
    np.testing.assert_array_equal(out, x * 3.0)


def test_floating_point_traps_still_raise_as_numpy_does():
    f = nd.jit(lambda a: np.exp(a) * 2.0)
    x = np.linspace(0.0, 1.0, 16)
    _native(f, x)
    big = np.full(16, 1000.0)
    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        np.exp(big) * 2.0
    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        f(big)
    with np.errstate(over="ignore"):
        assert same_bits(f(big), np.exp(big) * 2.0)


def test_a_global_read_by_the_function_is_never_frozen(monkeypatch):
    f = nd.jit(_scaled)
    x = np.arange(16.0)
    _native(f, x)                        # the guard runs inside the native entry, on every call
    monkeypatch.setattr(sys.modules[__name__], "SCALE", 5.0)
    np.testing.assert_array_equal(f(x), x * 5.0)


SCALE = 2.0


def _scaled(a):
    return a * SCALE


def test_the_setting_turns_native_entries_off_and_is_checked(monkeypatch):
    monkeypatch.setenv("NOODLE_NATIVE_CALLS", "0")
    f = nd.jit(lambda a: a - 1.0)
    x = np.arange(16.0)
    f.compile(x)
    for _ in range(NATIVE_AFTER + 512):
        f(x)
    time.sleep(0.5)   # (a build, had one started, would be done)
    f(x)
    assert not isinstance(f._fast, types.BuiltinFunctionType)
    np.testing.assert_array_equal(f(x), x - 1.0)
    monkeypatch.setenv("NOODLE_NATIVE_CALLS", "sometimes")
    with pytest.raises(ConfigError, match="NOODLE_NATIVE_CALLS"):
        nd.jit(lambda a: a - 2.0)


def test_a_hot_function_is_freed_by_reference_counting_alone():
    f = nd.jit(lambda a: a * 0.25)
    x = np.arange(16.0)
    _native(f, x)
    gone = weakref.ref(f)
    state = weakref.ref(f.state(x))
    gc.disable()
    try:
        del f
        assert gone() is None and state() is None   # no reference cycle holds them
    finally:
        gc.enable()


def test_the_metrics_flush_raising_reaches_the_caller(monkeypatch):
    f = nd.jit(lambda a: a + 0.75)
    x = np.arange(16.0)
    _native(f, x)
    state = f.state(x)
    counts = []

    def flush():
        counts.append(1)
        raise KeyboardInterrupt

    # the entry calls the flush it was built with: rebuild it with this one
    from noodle.jit.fastpath import build_native_fast_path
    monkeypatch.setattr(state, "flush_metrics", flush)
    entry = next(e for bucket in f._states.values() for e in bucket)
    native = build_native_fast_path(entry)
    assert native is not None
    with pytest.raises(KeyboardInterrupt):
        for _ in range(512):
            native((x,))
    assert counts == [1]


class _MyFloat(float):
    pass


def test_a_python_float_parameter_is_passed_by_value_with_its_bits():
    f = nd.jit(lambda x, a: x * a + 1.0)
    x = np.linspace(-3, 3, 16)
    _native(f, x, 2.5)
    entry = f._fast
    for a in (2.5, -0.0, 0.0, float("inf"), -float("inf"), float("nan"), 5e-324, 1.7976931348623157e308, -1e-310):
        assert entry((x, a)) is not MISS
        with np.errstate(over="ignore"):
            assert same_bits(f(x, a), x * a + 1.0)
    # other scalar types are other signatures: the entry refuses them, the general path answers
    for a in (3, True, np.float64(2.0), np.float32(2.0), _MyFloat(2.0), None):
        assert entry((x, a)) is MISS
    for a in (3, True, np.float64(2.0), np.float32(2.0), _MyFloat(2.0)):
        assert same_bits(f(x, a), x * a + 1.0)


def test_a_float_parameter_with_float32_arrays_keeps_numpys_promotion():
    f = nd.jit(lambda x, a: x * a - 0.5)
    x = np.linspace(-3, 3, 16, dtype=np.float32)
    f.compile(x, 0.1)
    out = _hot(f, x, 0.1)
    assert same_bits(out, x * 0.1 - 0.5)
    for a in (0.1, 1e-45, float("nan"), 3.4e38, 1e39):
        with np.errstate(over="ignore"):
            assert same_bits(f(x, a), x * a - 0.5)


G_SCALE = 0.5
G_SHIFT = np.zeros(16)


def _guarded(a, b):
    return a * b - G_SCALE * np.exp(-b) + G_SHIFT


def test_guards_run_on_every_native_call_and_captured_arrays_are_read_live(monkeypatch):
    mod = sys.modules[__name__]
    monkeypatch.setattr(mod, "G_SHIFT", np.zeros(16))
    f = nd.jit(_guarded)
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(16), rng.standard_normal(16)
    _native(f, a, b)
    entry = f._fast
    assert same_bits(f(a, b), _guarded(a, b))
    mod.G_SHIFT[:] = 7.0                                        # mutated in place
    assert same_bits(f(a, b), _guarded(a, b))
    monkeypatch.setattr(mod, "G_SCALE", 0.25)                  # a captured scalar rebound
    assert entry((a, b)) is MISS
    assert same_bits(f(a, b), _guarded(a, b))
    monkeypatch.setattr(mod, "G_SCALE", 0.5)
    for shift in (np.full(16, -1.0), np.arange(32.0)[::2], np.arange(16.0).astype(">f8"),
                  np.arange(16, dtype=np.float32), _misaligned(16)):
        monkeypatch.setattr(mod, "G_SHIFT", shift)              # rebound: another array, layout, dtype, length
        want = _guarded(a, b)
        same = shift.dtype == np.float64 and shift.dtype.isnative and shift.shape == (16,) and \
            shift.flags.c_contiguous and shift.flags.aligned
        assert (entry((a, b)) is MISS) == (not same)
        assert same_bits(f(a, b), want)


class _Knob:
    def __init__(self) -> None:
        self.broken = False

    @property
    def gain(self) -> float:
        if self.broken:
            raise RuntimeError("the knob broke")
        return 2.0


KNOB = _Knob()


def _knobbed(a):
    return a * KNOB.gain


def test_a_guard_that_cannot_read_its_value_sends_the_call_to_the_plain_functions_error():
    f = nd.jit(_knobbed)
    x = np.arange(16.0)
    try:
        _native(f, x)
        entry = f._fast
        KNOB.broken = True
        assert entry((x,)) is MISS        # the guard cannot read it: the general path decides
        with pytest.raises(RuntimeError, match="the knob broke"):
            _knobbed(x)
        with pytest.raises(RuntimeError, match="the knob broke"):
            f(x)
    finally:
        KNOB.broken = False
    np.testing.assert_array_equal(f(x), x * 2.0)


class _Meddler:
    """A property the guards read, which reinterprets an argument in place when armed."""

    victim: np.ndarray | None = None

    @property
    def gain(self) -> float:
        if self.victim is not None:
            self.victim.dtype = np.int64
        return 2.0


MEDDLER = _Meddler()


def _meddled(a):
    return a * MEDDLER.gain


def test_arguments_changed_by_code_the_guards_run_are_checked_again():
    f = nd.jit(_meddled)
    _native(f, np.arange(16.0))
    entry = f._fast
    x = np.arange(16.0)
    MEDDLER.victim = x
    try:
        assert entry((x,)) is MISS      # x is int64 by the time the kernel would read it
    finally:
        MEDDLER.victim = None
    assert x.dtype == np.int64
    assert same_bits(f(x), _meddled(x))


def test_a_function_turning_hot_during_interpreter_shutdown_still_answers(tmp_path):
    import subprocess

    script = tmp_path / "late.py"
    script.write_text(
        "import atexit, numpy as np, noodle as nd\n"
        "f = nd.jit(lambda a: a * 2.0 + 1.0)\n"
        "x = np.arange(16.0)\n"
        "f.compile(x)\n"
        "def late():\n"
        "    for _ in range(2000):\n"
        "        r = f(x)\n"
        "    print('late', np.array_equal(r, x * 2.0 + 1.0))\n"
        "atexit.register(late)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "late True" in done.stdout, done.stderr[-2000:]
    assert "RuntimeError" not in done.stderr
