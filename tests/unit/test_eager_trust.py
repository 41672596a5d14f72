"""Eager ops behave the way a NumPy user trusts: device= everywhere, NumPy's error *kinds*, warnings
at the user's line, and a noodle error for a result the machine cannot hold.

NumPy is the oracle throughout: each test first asks NumPy what it does with the same input
(which exception class, which message, which warning), then checks that noodle agrees or says
more, never less.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import noodle as nd
from noodle.devices import gpu_count
from noodle.errors import DeviceError, DeviceUnavailableError, NoodleError, ShapeError

RNG = np.random.default_rng(7)
NO_GPU = pytest.mark.skipif(gpu_count() > 0, reason="checks the error raised where no GPU is usable")


def _numpy_error(fn, *args, **kwargs) -> BaseException:
    """The exception NumPy raises for ``fn(*args, **kwargs)`` (the test's oracle)."""
    with pytest.raises(Exception) as info:
        fn(*args, **kwargs)
    return info.value


def _numpy_warnings(fn, *args) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn(*args)
    return [str(w.message) for w in caught]


# 1. reshape / transpose / astype take device= like every other op ---------------------------------

LAYOUT = [
    ("reshape", lambda x, **kw: nd.reshape(x, (4, 3), **kw), lambda x: x.reshape(4, 3)),
    ("transpose", lambda x, **kw: nd.transpose(x, (1, 0), **kw), lambda x: x.transpose(1, 0)),
    ("astype", lambda x, **kw: nd.astype(x, "float32", **kw), lambda x: x.astype("float32")),
]


@pytest.mark.parametrize(("name", "ours", "ref"), LAYOUT)
@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_layout_ops_take_device_like_the_other_ops(name, ours, ref, device) -> None:
    x = RNG.standard_normal((3, 4))
    got = ours(x, device=device)
    want = ref(x)
    assert type(got) is np.ndarray and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@NO_GPU
@pytest.mark.parametrize(("name", "ours", "ref"), LAYOUT)
@pytest.mark.parametrize("device", ["gpu", "cuda", "cuda:0"])
def test_layout_ops_on_a_gpu_that_is_not_there(name, ours, ref, device) -> None:
    x = RNG.standard_normal((3, 4))
    with pytest.raises(DeviceUnavailableError) as theirs:   # what nd.add says for the same request
        nd.add(x, x, device=device)
    with pytest.raises(DeviceUnavailableError) as mine:
        ours(x, device=device)
    assert str(theirs.value) == str(mine.value)


@pytest.mark.parametrize(("name", "ours", "ref"), LAYOUT)
def test_layout_ops_reject_unknown_devices(name, ours, ref) -> None:
    x = RNG.standard_normal((3, 4))
    with pytest.raises(DeviceError, match="tpu"):
        ours(x, device="tpu")
    with pytest.raises(DeviceError, match="string"):
        ours(x, device=0)


@pytest.mark.parametrize(("name", "ours", "ref"), LAYOUT)
def test_layout_ops_keep_a_matrix_a_matrix(name, ours, ref) -> None:
    x = RNG.standard_normal((3, 4))
    got = ours(nd.Matrix(x), device="cpu")
    assert isinstance(got, nd.Matrix)
    np.testing.assert_array_equal(got.numpy(), ref(x))


# 2. NumPy's ValueErrors that are not about shapes stay ValueErrors, and are not ShapeErrors --------

INT_NEGATIVE_POWER = [
    ("nd.power", lambda b, e: nd.power(b, e)),
    ("Matrix ** int", lambda b, e: nd.Matrix(b) ** e),
    ("int ** Matrix", lambda b, e: b ** nd.Matrix(np.asarray(e))),
    ("nd.power on Matrix", lambda b, e: nd.power(nd.Matrix(b), e)),
]


@pytest.mark.parametrize(("how", "call"), INT_NEGATIVE_POWER)
def test_integer_to_negative_power_is_a_value_error_as_in_numpy(how, call) -> None:
    base = np.arange(1, 5)
    theirs = _numpy_error(np.power, base, -1)
    with pytest.raises(NoodleError) as info:
        call(base, -1)
    mine = info.value
    assert isinstance(mine, type(theirs)), f"{how}: NumPy raised {type(theirs).__name__}, noodle {mine!r}"
    assert not isinstance(mine, (ShapeError, TypeError)), f"{how}: {mine!r} is about shapes or dtypes"
    assert str(theirs) in str(mine)
    assert "reshape" not in str(mine).lower() and "float" in str(mine)


def test_shape_problems_are_still_shape_errors() -> None:
    a, b = np.ones(3), np.ones(4)
    theirs = _numpy_error(np.add, a, b)
    with pytest.raises(ShapeError) as info:
        nd.add(a, b)
    assert isinstance(info.value, type(theirs))


# 3. the max/min of an empty array says so ----------------------------------------------------------

@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize(("shape", "axis"), [((0,), None), ((0, 3), 0), ((2, 0), 1)])
def test_reducing_an_empty_array_says_the_input_is_empty(name, shape, axis) -> None:
    x = np.ones(shape)
    theirs = _numpy_error(getattr(np, name), x, axis=axis)
    with pytest.raises(NoodleError) as info:
        getattr(nd, name)(x, axis=axis)
    mine = info.value
    assert isinstance(mine, type(theirs)) and not isinstance(mine, ShapeError)
    text = str(mine)
    assert "zero-size array" in text and "empty input" in text and "initial=" in text
    assert "axes must be" not in text


def test_a_bad_axis_is_still_an_axis_error() -> None:
    x = np.ones((2, 3))
    theirs = _numpy_error(np.max, x, axis=2)
    with pytest.raises(ShapeError, match="axes must be in range") as info:
        nd.max(x, axis=2)
    assert isinstance(info.value, type(theirs).__mro__[1])   # AxisError is a ValueError


# 5. floating-point warnings point at the caller's line ---------------------------------------------

FP_CASES = [
    ("log of zero", nd.log, np.log, (np.zeros(3),)),
    ("sqrt of negative", nd.sqrt, np.sqrt, (-np.ones(3),)),
    ("divide by zero", nd.divide, np.divide, (np.ones(3), np.zeros(3))),
    ("overflow", nd.multiply, np.multiply, (np.full(3, 1e300), np.full(3, 1e300))),
    ("log of zero, Matrix", lambda m: nd.log(nd.Matrix(m)), np.log, (np.zeros(3),)),
    ("sum overflow", nd.sum, np.sum, (np.full(3, 1e308),)),
    ("astype NaN to int", lambda x: nd.astype(x, "int64"), lambda x: x.astype("int64"), (np.full(3, np.nan),)),
]


@pytest.mark.parametrize(("case", "ours", "ref", "args"), FP_CASES)
def test_runtime_warnings_point_at_the_callers_line(case, ours, ref, args) -> None:
    expected = _numpy_warnings(ref, *args)
    assert expected, f"{case}: NumPy itself does not warn here; the case tests nothing"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours(*args)
    assert [str(w.message) for w in caught] == expected
    assert {w.filename for w in caught} == {__file__}, f"{case}: {[(w.filename, w.lineno) for w in caught]}"
    assert all(w.category is RuntimeWarning for w in caught)


def test_each_calling_line_gets_its_own_warning_under_the_default_filter() -> None:
    """Python shows a RuntimeWarning once per location; that location must be the user's line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        nd.log(np.zeros(2))
        nd.log(np.zeros(2))
    lines = {w.lineno for w in caught}
    assert len(caught) == 2 and len(lines) == 2


@pytest.mark.parametrize(("case", "ours", "ref", "args"), FP_CASES)
def test_np_seterr_raise_still_raises(case, ours, ref, args) -> None:
    with np.errstate(all="raise"):
        theirs = _numpy_error(ref, *args)
        assert isinstance(theirs, FloatingPointError), case
        with pytest.raises(FloatingPointError) as info:
            ours(*args)
    assert str(info.value) == str(theirs)


@pytest.mark.parametrize(("case", "ours", "ref", "args"), FP_CASES[:4])
def test_np_errstate_ignore_and_call_are_respected(case, ours, ref, args) -> None:
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        ours(*args)
    assert caught == []
    theirs: list[tuple[str, int]] = []
    mine: list[tuple[str, int]] = []
    with np.errstate(all="call", call=lambda err, flag: theirs.append((err, flag))):
        ref(*args)
    with np.errstate(all="call", call=lambda err, flag: mine.append((err, flag))):
        ours(*args)
    assert theirs and mine == theirs


def test_ops_without_errors_leave_numpys_state_alone() -> None:
    before = np.geterr(), np.geterrcall()
    with np.errstate(divide="raise"):
        nd.add(np.ones(3), np.ones(3))
        assert np.geterr()["divide"] == "raise"
    assert (np.geterr(), np.geterrcall()) == before


# 7. a result too large for the machine is a noodle MemoryError -------------------------------------

def _huge_operands():
    """Operands of 2 KiB in all whose broadcast product is 2**55 float64 (256 PiB): more than any
    machine's address space, so the allocation fails everywhere instead of being overcommitted."""
    a = np.broadcast_to(np.ones((1, 1)), (2**28, 1))
    b = np.broadcast_to(np.ones((1, 1)), (1, 2**27))
    return a, b


def test_a_result_too_large_to_allocate_is_a_noodle_memory_error() -> None:
    a, b = _huge_operands()
    theirs = _numpy_error(np.multiply, a, b)
    assert isinstance(theirs, MemoryError)
    with pytest.raises(NoodleError) as info:
        nd.multiply(a, b)
    mine = info.value
    assert isinstance(mine, MemoryError)
    text = str(mine)
    shape = str(np.broadcast_shapes(a.shape, b.shape))
    assert "multiply" in text and shape in text and "PiB" in text and "slices" in text


def test_a_result_too_large_to_describe_is_a_noodle_memory_error() -> None:
    a = np.broadcast_to(1.0, (2**40, 1))
    b = np.broadcast_to(1.0, (1, 2**30))
    theirs = _numpy_error(np.add, a, b)
    assert isinstance(theirs, ValueError) and not isinstance(theirs, MemoryError)   # NumPy's own wording
    with pytest.raises(NoodleError) as info:
        nd.add(a, b)
    assert isinstance(info.value, MemoryError)
    assert "add" in str(info.value) and str((2**40, 2**30)) in str(info.value)


def test_matrix_results_too_large_are_noodle_memory_errors_too() -> None:
    a, b = _huge_operands()
    with pytest.raises(NoodleError) as info:
        nd.Matrix(a) * b
    assert isinstance(info.value, MemoryError) and "multiply" in str(info.value)


# 4. explain() of an op noodle does not have -------------------------------------------------------

@pytest.mark.parametrize("name", ["fft", "mutliply", "input", 3])
def test_explain_of_an_unknown_op_is_a_value_error_naming_the_ops(name) -> None:
    with pytest.raises(NoodleError) as info:
        nd.explain(name, np.ones(3))
    err = info.value
    assert isinstance(err, ValueError) and not isinstance(err, (DeviceError, KeyError, ShapeError))
    text = str(err)
    assert "unknown op" in text and repr(name) in text
    for known in ("add", "matmul", "sum", "where"):
        assert known in text
    if name == "mutliply":
        assert "Did you mean 'multiply'" in text


# 6. explain() says what runs now, not what will run once the Numba measurement is done ------------

BIG = 200_003   # above NUMBA_MIN_ELEMS: the size where the Numba rule applies


@pytest.fixture
def numba_world(monkeypatch):
    """Set the two things Numba waits for (the measured speedup, the compiled kernel) by hand.

    The real background measurement is let finish first, so it cannot write into the fake.
    """
    from noodle.array import numba_kernels as nk
    from noodle.placement import calibrate
    from noodle.placement.model import DeviceRates

    nk.wait_for_policy(120)
    assert nk.binary_kernel("add", "float64") is not None, "Numba kernels must compile on this machine"
    monkeypatch.setattr(nk, "_policy_started", True)   # no new measurement from the calls below
    rates = DeviceRates(30e9, 8e9, 1e9, {"float64": 90e9}, 2e-6)

    def set_state(speedup: float | None, kernel: str) -> None:
        monkeypatch.setattr(calibrate, "_current", calibrate.Calibration("test", rates, numba_binary_speedup=speedup))
        kernels = dict(nk._kernels)
        pending = set(nk._pending)
        if kernel == "compiling":
            kernels.pop(("add", "float64"), None)
            pending.add(("add", "float64"))
        monkeypatch.setattr(nk, "_kernels", kernels)
        monkeypatch.setattr(nk, "_pending", pending)

    return set_state


def _backend_that_ran(call) -> str:
    """Which backend actually ran ``call`` (from the per-backend op counter): the oracle for explain()."""
    hist = nd.metrics.registry.get("noodle_op_seconds")
    before = {b: hist.labels("add", "cpu", b).count for b in ("numpy", "numba")}
    call()
    ran = [b for b in before if hist.labels("add", "cpu", b).count > before[b]]
    assert len(ran) == 1, ran
    return ran[0]


STATES = [
    ("measurement pending", None, "ready", True),
    ("kernel compiling", 2.0, "compiling", True),
    ("numba measured slower", 0.9, "ready", False),
    ("numba measured faster", 2.0, "ready", False),
]
CALLS = [
    ("arrays, device='cpu'", lambda a, b: nd.add(a, b, device="cpu"), lambda a, b: nd.explain("add", a, b, device="cpu")),
    ("Matrix operands", lambda a, b: nd.add(nd.Matrix(a), nd.Matrix(b), device="cpu"),
     lambda a, b: nd.explain("add", nd.Matrix(a), nd.Matrix(b), device="cpu")),
]
if gpu_count() == 0:
    CALLS.append(("arrays, device='auto'", lambda a, b: nd.add(a, b), lambda a, b: nd.explain("add", a, b)))


@pytest.mark.parametrize(("state", "speedup", "kernel", "pending"), STATES)
@pytest.mark.parametrize(("how", "call", "explain"), CALLS)
def test_explain_reports_the_backend_that_actually_runs(numba_world, state, speedup, kernel, pending,
                                                        how, call, explain) -> None:
    numba_world(speedup, kernel)
    a, b = RNG.standard_normal(BIG), RNG.standard_normal(BIG)
    decision = explain(a, b)
    ran = _backend_that_ran(lambda: call(a, b))
    assert decision.backend == ran, f"{state}, {how}: explain said {decision.backend}, {ran} ran ({decision})"
    assert ("pending" in decision.reason) == pending, f"{state}, {how}: {decision.reason}"
    if pending:
        assert ran == "numpy" and "NumPy" in decision.reason
