"""Placement per fused region: the chooser on injected rates, explain's fields, the JIT running
regions on different backends (bit-exact with the interpreter), the report's counts, and the
per-backend calibration cache. No test measures rates except the cache test's counting probe."""

from __future__ import annotations

import numpy as np
import pytest

import noodle as nd
from noodle import metrics
from noodle.exec.interpreter import run_program
from noodle.ir.graph import Builder
from noodle.ir.ops import OPS
from noodle.jit.placing import toolchain
from noodle.passes import optimize
from noodle.passes.schedule import units
from noodle.placement import calibrate
from noodle.placement.costs import BackendRates
from noodle.placement.model import DeviceRates
from noodle.placement.regions import Option, Plan, choose_region, region_of

BLAS = {"float64": 50e9, "float32": 100e9}
# the interpreter: cheap to start (no kernel call) but one memory pass per op
INTERP = BackendRates("interpret", fused=False, call_overhead=1e-6, bandwidth=10e9, flops=2e9,
                      transcendental={"float32": 4e8, "float64": 1e8}, matmul=BLAS)
# Numba: 2 µs per call, one fused pass, NumPy's exp
NUMBA = BackendRates("numba", call_overhead=2e-6, bandwidth=10e9, flops=8e9,
                     transcendental={"float32": 4e8, "float64": 1e8}, matmul=BLAS)
# IREE: 30 µs per call, one fused pass, a vectorized exp
IREE = BackendRates("iree", call_overhead=30e-6, bandwidth=10e9, flops=8e9,
                    transcendental={"float32": 4e9, "float64": 1e9})


def _region(ops: list[str], n: int, dtype: str):
    b = Builder()
    y = b.input(0, (n,), dtype)
    for op in ops:
        y = b.add(op, y) if OPS[op].arity == 1 else b.add(op, y, b.const(1.5, dtype))
    prog = optimize(b.finish([y]))
    (u,) = units(prog)
    return region_of(prog, 0, u.members, u.inputs, u.outputs)


def _opts(**over) -> list[Option]:
    base = {"interpret": Option("interpret", rates=INTERP), "numba": Option("numba", rates=NUMBA),
            "iree": Option("iree", rates=IREE)}
    base.update(over)
    return list(base.values())


def test_small_region_goes_to_the_lowest_overhead_backend() -> None:
    choice = choose_region(_region(["exp", "multiply"], 16, "float32"), _opts())
    assert choice.backend == "numba"
    assert "small region" in choice.reason


def test_exp_heavy_float32_goes_where_exp_is_fast_and_cheap_chains_do_not() -> None:
    big_exp = choose_region(_region(["negative", "exp", "multiply"], 10_000_000, "float32"), _opts())
    assert big_exp.backend == "iree"
    assert "exp-heavy float32" in big_exp.reason
    cheap = choose_region(_region(["multiply", "add"], 10_000_000, "float32"), _opts())
    assert cheap.backend == "numba"           # memory-bound: same bandwidth, lower overhead


def test_interpreter_wins_a_one_op_region_when_its_call_is_cheapest() -> None:
    interp = BackendRates("interpret", fused=False, call_overhead=0.2e-6, bandwidth=10e9, flops=2e9)
    choice = choose_region(_region(["add"], 16, "float64"), _opts(interpret=Option("interpret", rates=interp)))
    assert choice.backend == "interpret"


def test_a_fused_backend_within_the_margin_is_preferred_to_the_interpreter() -> None:
    from noodle.placement.regions import FUSED_MARGIN

    region = _region(["sin", "cos", "add"], 1_000_000, "float64")
    interp = BackendRates("interpret", fused=False, call_overhead=1e-6, bandwidth=1e12, flops=1e12,
                          transcendental={"float64": 1e8})
    est_interp = choose_region(region, [Option("interpret", rates=interp)]).candidates[0].seconds
    for factor, want in ((FUSED_MARGIN * 0.95, "numba"), (FUSED_MARGIN * 1.1, "interpret")):
        # a fused backend whose estimate is `factor` times the interpreter's
        rate = 3 * 1_000_000 / (est_interp * factor - 1e-6)
        numba = BackendRates("numba", call_overhead=1e-6, bandwidth=1e12, flops=1e12,
                             transcendental={"float64": rate * 2 / 3})
        choice = choose_region(_region(["sin", "cos", "add"], 1_000_000, "float64"),
                               [Option("interpret", rates=interp), Option("numba", rates=numba)])
        assert choice.backend == want, (factor, str(choice))


def test_backend_lacking_an_op_is_never_chosen_and_the_reason_is_given() -> None:
    def no_exp(op: str) -> tuple[bool, str]:
        return (False, "no vectorized exp in this build") if op == "exp" else (True, "")

    region = _region(["negative", "exp", "multiply"], 10_000_000, "float32")
    choice = choose_region(region, _opts(iree=Option("iree", rates=IREE, supports=no_exp)))
    assert choice.backend != "iree"
    (iree,) = [c for c in choice.candidates if c.backend == "iree"]
    assert iree.seconds is None and "'exp'" in iree.excluded and "no vectorized exp" in iree.excluded
    assert "iree excluded: cannot translate 'exp'" in str(choice)
    # the same backend still takes a region without the op
    assert choose_region(_region(["multiply"], 16, "float32"),
                         _opts(iree=Option("iree", rates=IREE, supports=no_exp))).candidates[2].seconds


def test_unavailable_or_uncalibrated_backends_are_excluded_with_the_reason() -> None:
    choice = choose_region(_region(["add"], 1000, "float64"),
                           _opts(iree=Option("iree", unavailable="not installed: pip install noodle[mlir]"),
                                 numba=Option("numba")))
    assert choice.backend == "interpret"
    why = {c.backend: c.excluded for c in choice.candidates}
    assert why["iree"].startswith("not installed") and why["numba"] == "not calibrated on this machine"


def test_explicit_backend_is_obeyed_even_when_costlier() -> None:
    choice = choose_region(_region(["add"], 16, "float64"), _opts(), forced="iree")
    assert choice.backend == "iree" and choice.reason == "backend='iree' was asked for"
    est = {c.backend: c.seconds for c in choice.candidates}
    assert est["iree"] > est["numba"]          # the estimates are still shown


def test_gpu_backend_is_excluded_for_host_operands() -> None:
    gpu = Option("cuda", "cuda:0", rates=NUMBA, gpu=True)
    choice = choose_region(_region(["add"], 10_000_000, "float64"), [*_opts(), gpu])
    assert choice.backend != "cuda"
    assert "NumPy arrays" in next(c.excluded for c in choice.candidates if c.backend == "cuda")


@pytest.fixture
def injected():
    """A calibration with known rates (no measuring): interpret wins 16 elements, Numba 1e5."""
    interp = BackendRates("interpret", fused=False, call_overhead=0.1e-6, bandwidth=1e9, flops=1e8,
                          transcendental={"float32": 1e7, "float64": 1e7}, matmul=BLAS,
                          toolchain=toolchain("interpret"))
    numba = BackendRates("numba", call_overhead=50e-6, bandwidth=10e9, flops=8e9,
                         transcendental={"float32": 4e8, "float64": 1e8}, matmul=BLAS, toolchain=toolchain("numba"))
    slow = {name: BackendRates(name, call_overhead=1.0, bandwidth=1e6, flops=1e6, toolchain=toolchain(name))
            for name in ("iree", "cuda")}
    cpu = DeviceRates(10e9, 2e9, 1e8, BLAS, 2e-6)
    calibrate.install(calibrate.Calibration("test machine", cpu,
                                            backends={"interpret": interp, "numba": numba, **slow}))
    yield
    calibrate.reset()


def _two_regions(a, s):
    return a * 2.0 + a * a - 1.0, s * 3.0 - s / 7.0


def test_two_regions_run_on_different_backends_bit_exact(injected) -> None:
    f = nd.jit(_two_regions, backend="auto")
    a, s = np.linspace(-3, 3, 100_000), np.linspace(0.5, 2, 16)
    plan = f.explain(a, s)
    assert isinstance(plan, Plan)
    by_size = {r.region.elems: r.backend for r in plan.regions}
    assert by_size == {100_000: "numba", 16: "interpret"}
    assert f.compile(a, s) == "auto"
    state = f.state(a, s)
    assert sorted(state.runner.region_backends) == ["interpret", "numba"]
    got = f(a, s)
    want = run_program(state.program, [a, s])
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and np.array_equal(g, w)
    np.testing.assert_array_equal(got[1], s * 3.0 - s / 7.0)


def test_explain_fields_and_text(injected) -> None:
    f = nd.jit(lambda a: nd.exp(-a) * 0.5, backend="auto")
    x = np.ones(100_000, dtype=np.float32)
    plan = f.explain(x)
    (r,) = plan.regions
    assert r.region.ops == ("negative", "exp", "multiply")
    assert r.region.elems == 100_000 and r.region.dtype == "float32"
    assert r.backend == "numba" and r.device == "cpu" and r.reason.startswith("cheapest estimate")
    est = {c.backend: c for c in r.candidates}
    assert set(est) == {"interpret", "numba", "iree", "cuda"}
    assert est["numba"].seconds < est["interpret"].seconds
    assert plan.counts() == {"numba": 1} and plan.backends == ("numba",)
    text = str(plan)
    assert "region 0: negative, exp, multiply on 100,000 float32 -> numba (cpu)" in text
    assert "interpret (cpu)" in text


def test_explicit_backend_on_jit_is_obeyed_for_every_region(injected) -> None:
    f = nd.jit(_two_regions, backend="interpret")
    plan = f.explain(np.ones(100_000), np.ones(16))
    assert [r.backend for r in plan.regions] == ["interpret", "interpret"]
    assert all(r.reason == "backend='interpret' was asked for" for r in plan.regions)
    g = nd.jit(_two_regions, backend="numba")
    assert {r.backend for r in g.explain(np.ones(100_000), np.ones(16)).regions} == {"numba"}


def test_monkeypatched_supports_routes_the_region_elsewhere(injected, monkeypatch) -> None:
    from noodle.backends.registry import get_backend

    numba = get_backend("numba")
    monkeypatch.setattr(numba, "supports", lambda op: (False, "test: no exp") if op == "exp" else (True, ""))
    f = nd.jit(lambda a: nd.exp(a) + 1.0, backend="auto")
    x = np.linspace(0, 1, 100_000)
    (r,) = f.explain(x).regions
    assert r.backend == "interpret"
    assert "cannot translate 'exp': test: no exp" in next(c.excluded for c in r.candidates if c.backend == "numba")
    f.compile(x)
    assert f.state(x).runner.region_backends == ("interpret",)
    np.testing.assert_array_equal(f(x), np.exp(x) + 1.0)


def test_a_choice_that_fails_to_compile_falls_back_to_the_next(injected, monkeypatch) -> None:
    from noodle.backends.registry import get_backend
    from noodle.errors import CompileError

    def broken(spec):
        raise CompileError("test: this backend is broken")

    monkeypatch.setattr(get_backend("numba"), "compile_kernel", broken)
    f = nd.jit(lambda a: a * 3.0 + 1.0, backend="auto")
    x = np.linspace(0, 1, 100_000)
    assert f.compile(x) == "auto"
    assert f.state(x).runner.region_backends == ("interpret",)
    np.testing.assert_array_equal(f(x), x * 3.0 + 1.0)
    assert "compiled with: interpret" in str(f.explain(x))


def test_report_counts_regions_per_backend(injected) -> None:
    from rich.console import Console

    from noodle.report import section_jit

    counter = metrics.counter("noodle_jit_region_backend_total",
                              "Fused regions of compiled JIT programs, by the backend that runs them", ["backend"])
    before = {k[0]: c.value for k, c in counter.children()}
    f = nd.jit(_two_regions, backend="auto")
    f.compile(np.ones(100_000), np.ones(16))
    after = {k[0]: c.value for k, c in counter.children()}
    assert after.get("numba", 0) - before.get("numba", 0) == 1
    assert after.get("interpret", 0) - before.get("interpret", 0) == 1
    console = Console(record=True, width=120)
    console.print(section_jit.render(metrics.registry))
    text = console.export_text()
    assert "fused regions by backend" in text and "numba" in text


def test_unknown_backend_names_the_choices() -> None:
    with pytest.raises(nd.errors.ConfigError, match="'auto'"):
        nd.jit(lambda a: a, backend="mlir")


def test_iree_backend_request_never_gives_a_wrong_answer() -> None:
    """backend='iree' compiles when the IREE backend is here, else stays interpreted (correctly)."""
    f = nd.jit(lambda a, b: a * b + 1.0, backend="iree")
    x = np.linspace(0, 1, 1000)
    assert f.compile(x, x) in ("iree", "interpret")
    np.testing.assert_array_equal(f(x, x), x * x + 1.0)


def test_backend_calibration_is_cached_under_the_fingerprint(tmp_path, monkeypatch) -> None:
    from noodle import config

    monkeypatch.setenv("NOODLE_CACHE_DIR", str(tmp_path))
    config.reload()
    calibrate.reset()
    cpu = DeviceRates(10e9, 2e9, 1e8, BLAS, 2e-6)
    measured: list[str] = []

    def probe() -> BackendRates:
        measured.append("numba")
        return BackendRates("numba", call_overhead=3e-6, toolchain="numba 1")

    try:
        monkeypatch.setattr(calibrate, "measure_cpu", lambda: cpu)   # the device part is not under test
        assert calibrate.backend_rates("numba", probe, "numba 1").call_overhead == 3e-6
        assert calibrate.backend_rates("numba", probe, "numba 1").call_overhead == 3e-6
        assert measured == ["numba"]
        calibrate.reset()                        # a new process: read from the file, not measured
        assert calibrate.backend_rates("numba", probe, "numba 1").call_overhead == 3e-6
        assert measured == ["numba"]
        assert calibrate.load_or_measure().fingerprint == calibrate.fingerprint(calibrate._gpu_names())
        calibrate.backend_rates("numba", probe, "numba 2")   # a new toolchain is probed again
        assert measured == ["numba", "numba"]
    finally:
        monkeypatch.undo()
        config.reload()
        calibrate.reset()


@pytest.mark.parametrize("name", ["noodle.placement.costs", "noodle.placement.regions", "noodle.jit.placing"])
def test_docstring_examples(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
