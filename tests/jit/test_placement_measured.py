"""Measured placement (``noodle.jit.tuning``): close calls are timed once, the fastest is kept per
machine and reused by later processes and by explain; results stay the interpreter's. And the
interpreter's own region step: temporaries reused, the caller's arrays never written."""

from __future__ import annotations

import json

import numpy as np
import pytest

import noodle as nd
from noodle import config
from noodle.exec.interpreter import run_program
from noodle.ir.graph import Builder
from noodle.jit import tuning
from noodle.jit.lower import build_runner
from noodle.jit.placing import plan_program
from noodle.passes import optimize
from noodle.placement import calibrate
from noodle.placement.costs import BackendRates
from noodle.placement.model import DeviceRates
from noodle.trace import trace

BLAS = {"float64": 50e9, "float32": 100e9}


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A fresh cache directory with a calibration whose rates put interpret and Numba within the
    tuning factor (saved as this machine's own, so placement measures)."""
    monkeypatch.setenv("NOODLE_CACHE_DIR", str(tmp_path))
    config.reload()
    calibrate.reset()
    tuning.forget()
    from noodle.jit.placing import toolchain

    rates = {
        "interpret": BackendRates("interpret", fused=False, call_overhead=2e-6, bandwidth=10e9, flops=2e9,
                                  transcendental={"float32": 4e8, "float64": 1e8}, matmul=BLAS,
                                  toolchain=toolchain("interpret")),
        "numba": BackendRates("numba", call_overhead=2e-6, bandwidth=10e9, flops=8e9,
                              transcendental={"float32": 4e8, "float64": 1e8}, matmul=BLAS,
                              toolchain=toolchain("numba")),
    }
    # iree and cuda: calibrated as hopeless, so only interpret and numba are timed
    for name in ("iree", "cuda"):
        rates[name] = BackendRates(name, call_overhead=1.0, bandwidth=1e6, flops=1e6, toolchain=toolchain(name))
    cpu = DeviceRates(10e9, 2e9, 1e8, BLAS, 2e-6)
    calibrate._save(calibrate.Calibration(calibrate.fingerprint(calibrate._gpu_names()), cpu, backends=rates))
    calibrate.reset()
    yield tmp_path
    monkeypatch.undo()
    config.reload()
    calibrate.reset()
    tuning.forget()


def _chain(a, b):
    return a * b + nd.exp(-b) * 0.5


def _program(n: int = 50_000):
    a, b = np.linspace(-2, 2, n), np.linspace(0.5, 1.5, n)
    return optimize(trace(_chain, (a, b))), (a, b)


def test_close_calls_are_timed_and_the_fastest_is_kept(machine, monkeypatch) -> None:
    program, _ = _program()
    timed: list[tuple[str, ...]] = []

    def fake_measure(prog, unit, names):
        timed.append(tuple(names))
        return {"numba": 3e-3, "interpret": 1e-3}      # the model ranks numba first; the clock does not

    monkeypatch.setattr(tuning, "measure_region", fake_measure)
    model = plan_program(program, "f", "auto")       # explain: nothing timed, a note says so
    assert model.regions[0].backend == "numba" and timed == []
    assert any("the first compile times them" in n for n in model.notes)
    plan = plan_program(program, "f", "auto", measure=True)
    assert timed == [("numba", "interpret")]
    choice = plan.regions[0]
    assert choice.backend == "interpret" and choice.fallbacks[0] == "numba"
    assert choice.reason.startswith("measured on its shapes: interpret 1.00 ms, numba 3.00 ms")
    # saved: the same process and a new one (forget) reuse it without timing
    assert plan_program(program, "f", "auto", measure=True).regions[0].backend == "interpret"
    tuning.forget()
    assert plan_program(program, "f", "auto").regions[0].backend == "interpret"
    assert len(timed) == 1
    saved = json.loads((machine / "placement_measured.json").read_text())
    assert saved["fingerprint"] == calibrate.fingerprint([]) and len(saved["decisions"]) == 1
    # another shape is another region signature: timed again
    plan_program(_program(60_000)[0], "f", "auto", measure=True)
    assert len(timed) == 2


def test_a_new_toolchain_or_another_machine_measures_again(machine, monkeypatch) -> None:
    program, _ = _program()
    timed: list[int] = []
    monkeypatch.setattr(tuning, "measure_region", lambda p, u, names: timed.append(1) or {n: 1e-3 for n in names})
    plan_program(program, "f", "auto", measure=True)
    monkeypatch.setattr(tuning, "_toolchains", lambda names: "numba 99")
    plan_program(program, "f", "auto", measure=True)
    assert len(timed) == 2
    path = machine / "placement_measured.json"
    data = json.loads(path.read_text())
    data["fingerprint"] = "another machine"
    path.write_text(json.dumps(data))
    tuning.forget()
    plan_program(program, "f", "auto", measure=True)
    assert len(timed) == 3


def test_measuring_off_injected_rates_or_an_explicit_backend_use_the_model(machine, monkeypatch) -> None:
    program, _ = _program()
    monkeypatch.setattr(tuning, "measure_region", lambda *a: pytest.fail("nothing may be timed here"))
    monkeypatch.setenv("NOODLE_PLACE_MEASURE", "0")
    config.reload()
    assert plan_program(program, "f", "auto", measure=True).regions[0].backend == "numba"
    monkeypatch.delenv("NOODLE_PLACE_MEASURE")
    config.reload()
    assert plan_program(program, "f", "numba", measure=True).regions[0].reason == "backend='numba' was asked for"
    calibrate.install(calibrate.load_or_measure())
    try:
        assert plan_program(program, "f", "auto", measure=True).regions[0].backend == "numba"
    finally:
        calibrate.reset()


def test_a_bad_setting_is_named(monkeypatch) -> None:
    monkeypatch.setenv("NOODLE_PLACE_MEASURE", "sometimes")
    with pytest.raises(nd.errors.ConfigError, match="NOODLE_PLACE_MEASURE"):
        config.reload()
    monkeypatch.delenv("NOODLE_PLACE_MEASURE")
    config.reload()


def test_real_timing_gives_every_candidate_and_auto_matches_the_interpreter(machine) -> None:
    """The clock, not a stub: both candidates compile and are timed; the jitted function's
    result is the interpreter's, bit for bit, whichever won."""
    program, (a, b) = _program(20_000)
    (unit,) = tuning.region_units(program)
    seconds = tuning.measure_region(program, unit, ["numba", "interpret"])
    assert set(seconds) == {"numba", "interpret"} and all(0 < s < 1 for s in seconds.values())
    f = nd.jit(_chain, backend="auto")
    assert f.compile(a, b) == "auto"
    state = f.state(a, b)
    assert "measured on its shapes" in str(f.explain(a, b))
    got = f(a, b)
    want = run_program(state.program, [a, b])[0]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got, a * b + np.exp(-b) * 0.5, rtol=1e-15)


def test_interpreted_region_reuses_temporaries_but_never_the_callers_arrays() -> None:
    bld = Builder()
    x = bld.input(0, (4, 6), "float64")
    flat = bld.add("reshape", x, shape=(24,))                 # a view of the caller's array
    y = bld.add("add", flat, bld.const(1.0, "float64"))       # flat dies here: not reusable
    z = bld.add("multiply", y, y)                             # y dies here: reused
    w = bld.add("negative", z)                                # z too
    program = optimize(bld.finish([w]))
    runner = build_runner(program, lambda k: ("interpret",))
    arr = np.arange(24.0).reshape(4, 6)
    before = arr.copy()
    for _ in range(3):
        (out,) = runner([arr])
        np.testing.assert_array_equal(out, -((before.reshape(24) + 1.0) ** 2))
        np.testing.assert_array_equal(arr, before)
    first = runner([arr])[0]
    runner([arr + 1.0])
    np.testing.assert_array_equal(first, -((before.reshape(24) + 1.0) ** 2))   # results are not reused


def test_an_output_that_is_also_used_later_is_not_overwritten() -> None:
    bld = Builder()
    x = bld.input(0, (1000,), "float32")
    y = bld.add("exp", bld.add("negative", x))
    z = bld.add("multiply", y, bld.const(2.0, "float32"))
    program = optimize(bld.finish([y, z]))
    runner = build_runner(program, lambda k: ("interpret",))
    v = np.linspace(0, 3, 1000, dtype=np.float32)
    y_got, z_got = runner([v])
    np.testing.assert_array_equal(y_got, np.exp(-v))
    np.testing.assert_array_equal(z_got, np.exp(-v) * np.float32(2.0))


def test_docstring_example() -> None:
    import doctest

    assert doctest.testmod(tuning).failed == 0


def test_a_near_tie_keeps_the_models_pick(machine, monkeypatch) -> None:
    program, _ = _program()
    monkeypatch.setattr(tuning, "measure_region",
                        lambda p, u, names: {"numba": 1.05e-3, "interpret": 1.00e-3})   # within 10%: noise
    choice = plan_program(program, "f", "auto", measure=True).regions[0]
    assert choice.backend == "numba" and choice.fallbacks[0] == "interpret"
    assert "measured on its shapes" in choice.reason


@pytest.mark.parametrize("content", [
    '{"version": 1, "fingerprint": "%s", "decisions": {"k": {"seconds": null}}}',
    '{"version": 1, "fingerprint": "%s", "decisions": {"k": {"seconds": {"numba": "x", "interpret": 1}}}}',
    '{"version": 1, "fingerprint": "%s", "decisions": []}',
    "[" * 100_000 + "]" * 100_000,
    "not json at all",
])
def test_a_corrupt_or_hostile_decision_file_is_ignored(machine, monkeypatch, content) -> None:
    program, _ = _program()
    if "%s" in content:
        content = content % calibrate.fingerprint([])
    (machine / "placement_measured.json").write_text(content)
    tuning.forget()
    timed: list[int] = []
    monkeypatch.setattr(tuning, "measure_region",
                        lambda p, u, names: timed.append(1) or {"numba": 1e-3, "interpret": 5e-3})
    assert plan_program(program, "f", "auto", measure=True).regions[0].backend == "numba"
    assert timed == [1]


def test_a_candidate_that_raises_while_timed_is_dropped(monkeypatch) -> None:
    from noodle.jit import lower

    program, _ = _program(1000)
    (unit,) = tuning.region_units(program)
    real = lower._compile_unit

    def numba_fails_on_call(prog, u, backend):
        fn, ins, outs = real(prog, u, backend)
        if backend == "interpret":
            return fn, ins, outs

        def boom(*args):
            raise MemoryError("no room for the result")
        return boom, ins, outs

    monkeypatch.setattr(lower, "_compile_unit", numba_fails_on_call)
    assert list(tuning.measure_region(program, unit, ["numba", "interpret"])) == ["interpret"]


def test_a_region_where_only_one_candidate_compiles_is_not_timed_again(machine, monkeypatch) -> None:
    from noodle.jit import lower

    program, _ = _program(2000)
    real = lower._compile_unit
    attempts: list[str] = []

    def numba_cannot_compile(prog, u, backend):
        attempts.append(getattr(backend, "name", backend))
        if backend != "interpret":
            raise nd.errors.CompileError("this region does not compile on numba here")
        return real(prog, u, backend)

    monkeypatch.setattr(lower, "_compile_unit", numba_cannot_compile)
    choice = plan_program(program, "f", "auto", measure=True).regions[0]
    assert choice.backend == "interpret" and choice.reason.startswith("measured on its shapes: interpret")
    tried = len(attempts)
    tuning.forget()                                    # a new process: the saved decision, no new attempt
    assert plan_program(program, "f", "auto", measure=True).regions[0].backend == "interpret"
    assert len(attempts) == tried == 2


def test_a_change_to_noodles_own_drivers_is_a_new_toolchain(monkeypatch) -> None:
    """Rates and timed decisions are kept on disk per toolchain: noodle's own drivers are part of
    it, or a faster driver leaves an old decision standing."""
    from noodle.jit import placing

    before = tuning._toolchains(["numba", "interpret"])
    assert placing.codegen_digest() in before
    placing.toolchain.cache_clear()
    monkeypatch.setattr(placing, "codegen_digest", lambda: "0" * 12)
    try:
        after = tuning._toolchains(["numba", "interpret"])
    finally:
        placing.toolchain.cache_clear()
    assert after != before and "0" * 12 in after
