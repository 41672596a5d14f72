"""``noodle.crypto.modmul`` / ``modpow``: Python's ``a * b % m`` and ``pow(b, e, m)`` elementwise, with
NumPy broadcasting, dtype rules, placement and errors. Tests with object (big-int) inputs need
``noodle.crypto._bigint_cpu`` and are skipped, saying so, where it cannot be imported."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import noodle as nd
from noodle.crypto import modular
from noodle.crypto.modular import modmul, modpow
from noodle.crypto.placement import CryptoDecision
from noodle.errors import CryptoValueError, DeviceUnavailableError, DTypeError, NoodleError, ShapeError


def _has_bigint() -> bool:
    try:
        importlib.import_module("noodle.crypto._bigint_cpu")
    except ImportError:
        return False
    return True


needs_bigint = pytest.mark.skipif(not _has_bigint(), reason="noodle.crypto._bigint_cpu (the big-integer "
                                  "backend, written separately) cannot be imported yet")
HAS_GPU = modular._gpu_backend("_mod64_cuda", "auto") is not None


def _oracle(op: str, *xs: object) -> list[int]:
    """Python's own answer, element by element over the broadcast operands."""
    arrs = np.broadcast_arrays(*(np.asarray(x, dtype=object) for x in xs))
    flat = [a.reshape(-1).tolist() for a in arrs]
    if op == "modmul":
        return [int(a) * int(b) % int(m) for a, b, m in zip(*flat)]
    return [pow(int(b), int(e), int(m)) for b, e, m in zip(*flat)]


# ------------------------------------------------------------------------------ semantics
def test_docstring_examples() -> None:
    assert modpow(np.array([2, 3, 10]), 5, 7).tolist() == [4, 5, 5]
    assert modmul(-3, 5, 7) == 6
    assert modmul(np.array([2**62, -5], dtype=np.int64), 3, 2**61 - 1).tolist() == [6, 2305843009213693936]
    assert modpow(np.arange(5, dtype=np.uint64), 65537, 2**61 - 1).tolist() == [
        pow(i, 65537, 2**61 - 1) for i in range(5)]
    assert modpow(3, -1, 7, allow_negative_exp=True) == 5
    assert nd.crypto.modpow is modpow and nd.crypto.modmul is modmul


def test_python_semantics_at_the_edges() -> None:
    vals = np.array([0, 1, -1, 6, 7, 8, -7, -8, 2**63 - 1, -(2**63), 14, -15], dtype=np.int64)
    for m in (1, 2, 7, 8, 2**61 - 1, 2**62, 2**63 - 1):
        assert modmul(vals, vals[::-1], m).tolist() == _oracle("modmul", vals, vals[::-1], m)
        for e in (0, 1, 2, 5, 2**62 + 3, 2**63 - 1):
            want = _oracle("modpow", vals, e, m)
            assert modpow(vals, e, m).tolist() == want, (m, e)
            assert modpow(vals, e, m, constant_time=True).tolist() == want, (m, e)
    assert modpow(np.array([5, 0]), 0, 1).tolist() == [0, 0]          # m == 1 gives 0, even for e == 0
    assert modpow(np.array([5, 0]), 0, 9).tolist() == [1, 1]          # e == 0 gives 1 % m (0**0 == 1)
    assert modmul(2**63 - 1, 2**63 - 1, 2**63 - 1) == 0


def test_uint64_moduli_up_to_2_64_stay_uint64() -> None:
    top = np.uint64(2**64 - 1)
    a = np.array([0, 1, 2**64 - 1, 2**64 - 2, 2**63, 12345678901234567890], dtype=np.uint64)
    for m in (top, np.uint64(2**63), np.uint64(2**64 - 59), np.uint64(3 << 62)):
        mm = np.full(a.shape, m, dtype=np.uint64)
        out = modmul(a, a[::-1], mm)
        assert out.dtype == np.uint64 and out.tolist() == _oracle("modmul", a, a[::-1], mm)
        out = modpow(a, a[::-1], mm)
        assert out.dtype == np.uint64 and out.tolist() == _oracle("modpow", a, a[::-1], mm)
        assert modpow(a, a[::-1], m, constant_time=True).tolist() == out.tolist()


_SHAPES = hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=4)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_broadcasting_and_dtypes_match_python(data: st.DataObject) -> None:
    shapes = data.draw(_SHAPES).input_shapes
    dts = [data.draw(st.sampled_from([np.int64, np.uint64, np.int32, np.uint32, np.int8])) for _ in range(3)]
    values = []
    for i, (shape, dt) in enumerate(zip(shapes, dts)):
        info = np.iinfo(dt)
        lo = 1 if i == 2 else int(info.min)
        if i == 2 and dt == np.int64:
            elems = st.one_of(st.integers(1, int(info.max)), st.integers(1, 20))
        else:
            elems = st.one_of(st.integers(lo, int(info.max)), st.integers(max(lo, -3), 20))
        values.append(data.draw(hnp.arrays(dt, shape, elements=elems)))
    a, b, m = values
    want_dtype = np.uint64 if np.uint64 in dts else np.int64
    out = modmul(a, b, m)
    assert out.dtype == want_dtype and np.shape(out) == np.broadcast_shapes(*shapes)
    assert np.asarray(out).reshape(-1).tolist() == _oracle("modmul", a, b, m)
    e = np.abs(np.maximum(b.astype(np.int64), -(2**63 - 1))) if b.dtype != np.uint64 else b   # abs(-2**63) < 0
    got = modpow(a, e, m)
    assert np.asarray(got).reshape(-1).tolist() == _oracle("modpow", a, e, m)
    assert np.asarray(modpow(a, e, m, constant_time=True)).tolist() == np.asarray(got).tolist()
    try:
        want = _oracle("modpow", a, b, m)
    except ValueError:                     # some element has no inverse
        with pytest.raises(CryptoValueError, match="has no inverse"):
            modpow(a, b, m, allow_negative_exp=True)
    else:
        assert np.asarray(modpow(a, b, m, allow_negative_exp=True)).reshape(-1).tolist() == want


def test_per_element_moduli_2d_and_views() -> None:
    rng = np.random.default_rng(1)
    base = rng.integers(-(2**63), 2**63 - 1, (6, 8), dtype=np.int64, endpoint=True)
    e = rng.integers(0, 2**63 - 1, (1, 8), dtype=np.int64)
    m = rng.integers(1, 2**63 - 1, (6, 1), dtype=np.int64)
    m[0, 0], m[1, 0], m[2, 0] = 1, 2**62, 10
    got = modpow(base, e, m)
    assert got.shape == (6, 8) and got.tolist() == np.array(_oracle("modpow", base, e, m)).reshape(6, 8).tolist()
    view = base.T[::2]                      # non-contiguous input
    assert modmul(view, view, m.T).reshape(-1).tolist() == _oracle("modmul", view, view, m.T)


def test_results_are_new_arrays() -> None:
    a = np.arange(20000, dtype=np.int64)
    first = modmul(a, a, 1009)
    kept = first.copy()
    second = modmul(a, a + 1, 1009)
    assert np.array_equal(first, kept) and not np.shares_memory(first, second)
    assert not np.shares_memory(first, a)


def test_zero_size_and_scalar_kinds() -> None:
    empty = modpow(np.empty((0, 3), np.uint64), 3, 7)
    assert empty.shape == (0, 3) and empty.dtype == np.uint64
    assert modmul(np.empty(0, np.int64), 1, 5).dtype == np.int64
    r = modpow(5, 3, 7)
    assert type(r) is int and r == 6
    r = modpow(np.int64(5), 3, 7)
    assert isinstance(r, np.int64) and r == 6
    r = modpow(np.array(5, dtype=np.uint64), 3, 7)
    assert isinstance(r, np.uint64) and r == 6
    assert modmul([1, 2, 3], [[4], [5]], 7).tolist() == [[4, 1, 5], [5, 3, 1]]
    assert modpow((2, 3), 2, 5).dtype == np.int64


class _Index:
    """A non-int integer type (like gmpy2.mpz): accepted through ``__index__``."""

    def __init__(self, v: int) -> None:
        self.v = v

    def __index__(self) -> int:
        return self.v


def test_index_types_are_integers() -> None:
    assert modpow(_Index(3), _Index(4), _Index(5)) == pow(3, 4, 5)


# ------------------------------------------------------------------------------ negative exponents
def test_negative_exponents() -> None:
    base = np.array([3, -3, 10, 1, 0, 5, -19, -(2**63), 2**63 - 1], dtype=np.int64)
    e = np.array([-1, -2, 3, -(2**63), 0, -5, 1, 3, 2], dtype=np.int64)
    m = np.array([7, 11, 13, 2**61 - 1, 1, 2**62 - 57, 101, 2**62 + 6, 2**63 - 25], dtype=np.int64)
    got = modpow(base, e, m, allow_negative_exp=True)
    assert got.tolist() == _oracle("modpow", base, e, m)
    assert modpow(base, e, m, allow_negative_exp=True, constant_time=True).tolist() == got.tolist()
    assert modpow(0, -1, 1, allow_negative_exp=True) == pow(0, -1, 1) == 0
    assert modpow(np.uint64(11), -1, np.uint64(2**64 - 1), allow_negative_exp=True) == pow(11, -1, 2**64 - 1)
    with pytest.raises(CryptoValueError, match=r"exp\[0\] = -1 is negative.*allow_negative_exp"):
        modpow(base, e, m)
    with pytest.raises(CryptoValueError, match=r"exp\[1\] = -9223372036854775808 is negative"):
        modpow(base[2:4], e[2:4], m[2:4])
    with pytest.raises(CryptoValueError, match=r"element \[1, 2\]: base 4 has no inverse modulo 6 \(gcd 2\)"):
        modpow(np.array([[1, 5, 7], [5, 7, 4]]), -1, 6, allow_negative_exp=True)
    with pytest.raises(ValueError, match=r"^base 2 has no inverse modulo 4"):   # a ValueError, as pow raises
        modpow(2, -1, 4, allow_negative_exp=True)


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("call, cls, text", [
    (lambda: modmul(np.array([1.0, 2.0]), 3, 7), DTypeError, r"a has dtype float64.*integer array"),
    (lambda: modpow(2, np.array([True]), 7), DTypeError, r"exp has dtype bool.*not residues"),
    (lambda: modmul(1, 2, np.array([7j])), DTypeError, r"m has dtype complex128"),
    (lambda: modmul(1.5, 2, 7), DTypeError, r"a has dtype float64"),
    (lambda: modmul(True, 2, 7), DTypeError, r"bool"),
    (lambda: modmul([1, 2.5], 2, 7), DTypeError, r"a has dtype float64"),
    (lambda: modmul("3", 2, 7), DTypeError, r"a is a str"),
    (lambda: modmul(np.array(["3"]), 2, 7), DTypeError, r"a has dtype <U1"),
    (lambda: modmul(np.array([1, None], dtype=object), 2, 7), DTypeError, r"a\[1\] holds None"),
    (lambda: modmul([[1, 2], [3]], 2, 7), ShapeError, r"ragged"),
    (lambda: modmul(np.ones(3, np.int64), np.ones(4, np.int64), 7), ShapeError, r"a\(3,\), b\(4,\), m\(\)"),
    (lambda: modmul(1, 2, np.array([7, 0, -1])), CryptoValueError, r"m\[1\] = 0"),
    (lambda: modmul(1, 2, np.array([[7], [-3]])), CryptoValueError, r"m\[1, 0\] = -3"),
    (lambda: modpow(1, 2, np.array([5, 0], dtype=np.uint64)), CryptoValueError, r"m\[1\] = 0"),
    (lambda: modpow(1, 2, 0), CryptoValueError, r"must be >= 1.*but m = 0"),
    (lambda: modpow(1, 2, -5), CryptoValueError, r"m = -5"),
    (lambda: modpow(1, -2, 5), CryptoValueError, r"exp = -2 is negative"),
    (lambda: modpow(1, 2, 5, device="tpu"), CryptoValueError, r"device must be 'auto', 'cpu' or 'gpu'"),
    (lambda: modpow(1, 2, 5, constant_time=1), CryptoValueError, r"True or False"),
])
def test_errors_are_noodle_errors_with_advice(call, cls, text) -> None:
    with pytest.raises(cls, match=text) as info:
        call()
    assert isinstance(info.value, NoodleError)


@pytest.mark.skipif(HAS_GPU, reason="checks the no-GPU error; this machine has a GPU")
def test_gpu_asked_without_one() -> None:
    with pytest.raises(DeviceUnavailableError, match="GPU"):
        modpow(np.arange(4), 3, 7, device="gpu")
    with pytest.raises(DeviceUnavailableError):
        modmul(np.arange(4), 3, 7, device="gpu")


# ------------------------------------------------------------------------------ placement
def test_auto_asks_placement_and_obeys_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """'auto' hands placement the op, the sizes and where the data is; a GPU decision whose backend
    cannot run falls back to the CPU (an explicit 'gpu' would raise)."""
    seen: list[dict] = []

    def fake(op: str, **kw: object) -> CryptoDecision:
        seen.append({"op": op, **kw})
        return CryptoDecision(op, "gpu", "test")

    monkeypatch.setattr(modular, "decide", fake)
    monkeypatch.setattr(modular, "_gpu_backend", lambda name, device: None)
    a = np.arange(1000, dtype=np.uint64)
    assert modpow(a, 65537, 2**61 - 1).tolist() == _oracle("modpow", a, 65537, 2**61 - 1)
    assert seen[-1] == {"op": "modpow", "elements": 1000, "bits": 61, "exp_bits": 17, "on_gpu": False,
                        "device": "auto"}
    modmul(a, a, np.full(1000, 7, np.int64), device="cpu")
    assert seen[-1]["op"] == "modmul" and seen[-1]["device"] == "cpu" and seen[-1]["bits"] == 64
    modpow(a, 3, 7, constant_time=True)
    assert seen[-1]["exp_bits"] > 64       # the ladder's 64 steps of two products


class _RecordingBackend:
    """A stand-in GPU backend: the CPU kernels behind the GPU backend's interface, calls recorded."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def array_module(self) -> object:
        return np

    def __getattr__(self, name: str) -> object:
        fn = getattr(self.inner, name)

        def call(*args: object, **kw: object) -> object:
            self.calls.append(name)
            return fn(*args, **kw)

        return call


def test_a_gpu_decision_runs_the_gpu_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    from noodle.crypto import _mod64_cpu

    fake = _RecordingBackend(_mod64_cpu)
    monkeypatch.setattr(modular, "decide", lambda op, **kw: CryptoDecision(op, "gpu", "test"))
    monkeypatch.setattr(modular, "_gpu_backend", lambda name, device: fake if name == "_mod64_cuda" else None)
    a = np.arange(-50, 50, dtype=np.int64)
    got = modpow(a, np.arange(100) - 30, 101, allow_negative_exp=True, constant_time=True)
    assert got.tolist() == _oracle("modpow", a, np.arange(100) - 30, 101)
    assert fake.calls == ["invert_where_negative", "modpow"]
    assert type(got) is np.ndarray and modmul(a, a, 97).tolist() == _oracle("modmul", a, a, 97)
    assert fake.calls[-1] == "modmul"


def test_auto_on_this_machine_decides_cpu_without_gpu() -> None:
    if HAS_GPU:
        pytest.skip("this machine has a GPU")
    d = nd.crypto.decide("modpow", elements=10**6, bits=62, exp_bits=62)
    assert d.device == "cpu"
    assert modpow(np.arange(10), 3, 7, device="cpu").tolist() == [pow(i, 3, 7) for i in range(10)]


# ------------------------------------------------------------------------------ big integers
def test_python_ints_beyond_int64_choose_the_object_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python int of 2**63 or more (or a list holding one) makes the result an object array; the
    big-int backend gets reduced, broadcast operands (checked here with a stand-in backend)."""
    calls: list[tuple] = []

    class Fake:
        @staticmethod
        def modmul(a, b, m):
            calls.append(("modmul", a, b, m))
            return np.asarray(a * b % m, dtype=object)

        @staticmethod
        def modpow(base, exp, m, *, constant_time=False):
            calls.append(("modpow", base, exp, m, constant_time))
            out = np.empty(base.shape, dtype=object)
            out.reshape(-1)[:] = [pow(b, e, mm) for b, e, mm in zip(base.flat, exp.flat, m.flat)]
            return out

    import sys

    monkeypatch.setitem(sys.modules, "noodle.crypto._bigint_cpu", Fake)
    monkeypatch.setattr(importlib.import_module("noodle.crypto"), "_bigint_cpu", Fake, raising=False)
    m = 2**127 - 1
    out = modmul([-1, 2, 2**200], [[3], [-(2**70)]], m)
    assert out.dtype == object and out.shape == (2, 3)
    assert out.tolist() == np.array(_oracle("modmul", [-1, 2, 2**200], [[3], [-(2**70)]], m),
                                    dtype=object).reshape(2, 3).tolist()
    _, a, b, mm = calls[-1]
    assert a.shape == b.shape == mm.shape == (2, 3)
    assert all(0 <= v < m for v in list(a.flat) + list(b.flat))
    r = modpow(-2, -3, m, allow_negative_exp=True, constant_time=True)
    assert type(r) is int and r == pow(-2, -3, m)
    assert calls[-1][4] is True and calls[-1][2].tolist() == 3
    assert modpow(np.arange(3), 2, 2**64 + 13).dtype == object
    with pytest.raises(CryptoValueError, match=r"element \[1\]: base 6 has no inverse modulo 9"):
        modpow(np.array([2, 6], dtype=object), -1, np.array([2**70 + 1, 9], dtype=object), allow_negative_exp=True)
    with pytest.raises(CryptoValueError, match=r"m\[0\] = -" + str(2**70)):
        modmul(1, 2, np.array([-(2**70)], dtype=object))


@needs_bigint
def test_object_arrays_match_python() -> None:
    import random

    rng = random.Random(2)
    m2048 = rng.getrandbits(2048) | (1 << 2047) | 1
    base = np.array([rng.getrandbits(2100) - 2**2099 for _ in range(6)] + [0, 1, m2048 - 1, m2048], dtype=object)
    e = np.array([rng.getrandbits(64) for _ in range(9)] + [0], dtype=object)
    out = modpow(base, e, m2048)
    assert out.dtype == object and out.tolist() == _oracle("modpow", base, e, m2048)
    assert modpow(base, e, m2048, constant_time=True).tolist() == out.tolist()
    assert modmul(base, base[::-1], m2048).tolist() == _oracle("modmul", base, base[::-1], m2048)
    even = np.array([2**100, 2**100 + 6, 1], dtype=object)
    assert modpow(3, 2**70 + 1, even).tolist() == [pow(3, 2**70 + 1, int(v)) for v in even]
    assert modpow(7, -1, 2**100 + 1, allow_negative_exp=True) == pow(7, -1, 2**100 + 1)
    assert modmul(np.arange(4, dtype=np.int64), 3, np.array(2**63, dtype=object)).tolist() == [0, 3, 6, 9]
    assert type(modpow(2, 10**20, 2**255 - 19)) is int


@needs_bigint
def test_object_elements_that_are_numpy_ints() -> None:
    a = np.array([np.int64(3), np.uint64(2**64 - 1), 2**80], dtype=object)
    assert modmul(a, 5, 2**90 + 1).tolist() == _oracle("modmul", [3, 2**64 - 1, 2**80], 5, 2**90 + 1)


# ------------------------------------------------------------------------------ on a GPU
@pytest.mark.gpu
def test_gpu_results_equal_cpu_and_stay_where_the_inputs_were() -> None:
    import cupy as cp

    rng = np.random.default_rng(4)
    a = rng.integers(-(2**63), 2**63 - 1, 50000, dtype=np.int64)
    e = rng.integers(-(2**20), 2**63 - 1, 50000, dtype=np.int64)
    m = rng.integers(1, 2**63 - 1, 50000, dtype=np.int64) | 1
    for mm in (m, 2**61 - 1, np.int64(2**62 + 6)):
        cpu_pow = modpow(a, np.abs(e), mm, device="cpu")
        gpu_pow = modpow(a, np.abs(e), mm, device="gpu")
        assert type(gpu_pow) is np.ndarray and np.array_equal(gpu_pow, cpu_pow)
        on_dev = modpow(cp.asarray(a), cp.asarray(np.abs(e)), mm, device="gpu", constant_time=True)
        assert isinstance(on_dev, cp.ndarray) and np.array_equal(cp.asnumpy(on_dev), cpu_pow)
        assert np.array_equal(modmul(a, e, mm, device="gpu"), modmul(a, e, mm, device="cpu"))
    p = 2**61 - 1                          # prime: every base not divisible by it has an inverse
    assert np.array_equal(modpow(a, e, p, allow_negative_exp=True, device="gpu"),
                          modpow(a, e, p, allow_negative_exp=True, device="cpu"))
    u = rng.integers(0, 2**64 - 1, 1000, dtype=np.uint64, endpoint=True)
    mu = np.full(1000, 2**64 - 1, np.uint64)
    assert np.array_equal(modpow(u, u, mu, device="gpu"), modpow(u, u, mu, device="cpu"))
    cpu_out = modpow(cp.asarray(u), 3, 7, device="cpu")
    assert isinstance(cpu_out, cp.ndarray)
