"""The JIT's side of per-region placement: the backends that exist here, their rates, one plan.

Why here and not in :mod:`noodle.placement`: placement decides from numbers and
may not import the backends (layering); the JIT knows the backends, so it
lists them as :class:`~noodle.placement.regions.Option` objects (installed?
able to translate each op? calibrated?), runs the calibration probes on them
the first time a backend is considered (a few small kernels, cached on disk
with the rest of the calibration), and turns the resulting
:class:`~noodle.placement.regions.Plan` into the chooser ``build_runner`` takes.

Example::

    >>> import numpy as np
    >>> from noodle.trace import trace
    >>> from noodle.passes import optimize
    >>> prog = optimize(trace(lambda a: a * 2.0 + 1.0, (np.ones(4),)))
    >>> plan = plan_program(prog, "f", "interpret")
    >>> [r.backend for r in plan.regions]
    ['interpret']
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from noodle.ir.graph import Builder, Program
from noodle.placement import calibrate
from noodle.placement.costs import ARITH_CHAIN, PROBES, BackendRates, fit
from noodle.placement.regions import Option, Plan, choose_region, region_of

#: compiled backends placement considers, besides the interpreter (registry names)
CANDIDATES = ("numba", "iree", "cuda")
_DISTRIBUTIONS = {"numba": "numba", "iree": "iree-base-compiler", "cuda": "cupy", "interpret": "numpy"}


@functools.lru_cache(maxsize=64)
def toolchain(name: str) -> str:
    """The installed version of what backend ``name`` compiles with, and a digest of noodle's own
    code that drives it (either changed: re-probed and re-timed; read once per process: placement
    asks per region and candidate at every compile)."""
    dist = _DISTRIBUTIONS.get(name, name)
    try:
        version = f"{dist} {metadata.version(dist)}"
    except metadata.PackageNotFoundError:
        version = f"{dist} (not installed)"
    return f"{version}; noodle {codegen_digest()}"


@functools.lru_cache(maxsize=1)
def codegen_digest() -> str:
    """A digest of the sources that turn regions into running code (the backends, the lowering).

    Why: rates and timed decisions are kept per machine on disk; keyed by the compiler's version
    alone, they outlived a change to noodle's own drivers (a faster Numba block loop left an old
    decision for IREE standing, 14% slower than Numba on its own row)."""
    from noodle.backends.cache_dir import backends_digest  # noqa: PLC0415

    digest = hashlib.sha256(backends_digest().encode())
    try:
        digest.update((Path(__file__).resolve().parent / "lower.py").read_bytes())
    except OSError:   # sources not readable (a frozen install)
        digest.update(b"lower.py unreadable")
    return digest.hexdigest()[:12]


def probe_program(kind: str, dtype: str, n: int) -> tuple[Program, list[np.ndarray]]:
    """One calibration probe as an optimized program and its inputs (see costs.PROBES)."""
    from noodle.passes import optimize

    b = Builder()
    rng = np.random.default_rng(0)
    x = b.input(0, (n,), dtype)
    inputs = [rng.random(n).astype(dtype) + 0.5]
    if kind == "stream":
        y = b.add("add", x, b.input(1, (n,), dtype))
        inputs.append(rng.random(n).astype(dtype))
    elif kind == "arith":
        y = x
        for k in range(ARITH_CHAIN):
            y = b.add("add", b.add("multiply", y, b.const(1.0 + 1e-4 * (k + 1), dtype)), b.const(0.5, dtype))
    elif kind == "exp":
        y = b.add("exp", b.add("negative", x))
    else:
        raise ValueError(f"unknown calibration probe {kind!r}")
    return optimize(b.finish([y])), inputs


def measure(name: str) -> BackendRates:
    """Probe backend ``name`` (or "interpret") on this machine: a few small kernels, best of 5 each."""
    from noodle.placement.calibrate import best_time

    cal = calibrate.load_or_measure()
    gpu = name == "cuda"
    seconds: dict[tuple[str, str, int], float] = {}
    for kind, dtype, n in PROBES:
        program, inputs = probe_program(kind, dtype, n)
        # best of 7: a probe disturbed by other work on a shared machine would stick in the cache
        seconds[(kind, dtype, n)] = best_time(_probe_call(name, program, inputs), repeat=7,
                                              inner=20 if n < 1000 else 1)
    # the interpreter and Numba run a product through NumPy's BLAS: the calibrated CPU rates
    matmul = dict(cal.cpu.matmul_flops) if name in ("interpret", "numba") else {}
    if gpu and cal.gpus:
        matmul = dict(next(iter(cal.gpus.values())).matmul_flops)
    return fit(name, seconds, fused=name != "interpret", device="cuda:0" if gpu else "cpu", matmul=matmul,
               toolchain=toolchain(name), measured_at=time.time())


def _probe_call(name: str, program: Program, inputs: list[np.ndarray]) -> Callable[[], Any]:
    from noodle.backends.registry import get_backend
    from noodle.jit.lower import build_runner

    # the interpreter is timed as placement runs it: each region member through eval_node
    runner = build_runner(program, (lambda k: ("interpret",)) if name == "interpret" else get_backend(name))
    if name != "cuda":
        return lambda: runner(inputs)
    cp = importlib.import_module("cupy")
    dev = [cp.asarray(x) for x in inputs]

    def on_gpu() -> Any:
        out = runner(dev)
        cp.cuda.runtime.deviceSynchronize()
        return out
    return on_gpu


def options(on_gpu: bool = False, probe: bool = True, only: Sequence[str] = ()) -> list[Option]:
    """The interpreter and every compiled backend, with rates or the reason each cannot be used.

    ``probe``: measure a backend's rates when the calibration has none yet (False: use only
    rates already known, as explain does for an explicit ``backend=``). ``only``: the
    backends to consider (empty: all).
    """
    from noodle.backends.registry import backend_names, get_backend

    out = [Option("interpret", rates=_rates("interpret", probe))]
    known = set(backend_names())
    for name in CANDIDATES:
        if only and name not in only:
            continue
        device = "cuda:0" if name == "cuda" else "cpu"
        if name not in known:
            out.append(Option(name, device, unavailable=f"no {name!r} backend is registered in this noodle",
                              gpu=name == "cuda"))
            continue
        try:
            backend = get_backend(name)
            ok, why = backend.available()
        except Exception as exc:  # noqa: BLE001 - a broken optional toolchain is a reason, not a crash
            ok, why = False, f"{type(exc).__name__}: {exc}"
        if not ok:
            out.append(Option(name, device, unavailable=f"not available here: {why}", gpu=name == "cuda"))
            continue
        supports = backend.supports if _declares_ops(backend) else None
        try:
            rates = _rates(name, probe)
        except Exception as exc:  # noqa: BLE001 - a probe that fails excludes the backend, with the reason
            out.append(Option(name, device, unavailable=f"calibration failed: {type(exc).__name__}: {exc}",
                              gpu=name == "cuda"))
            continue
        out.append(Option(name, device, rates, supports, gpu=name == "cuda"))
    return out


def _declares_ops(backend: Any) -> bool:
    """Whether ``backend`` says which ops it translates (an op table, or its own ``supports``); one
    that does not yet is taken to translate every op, as before op tables existed."""
    from noodle.backends.base import Backend

    return bool(getattr(backend, "op_table", None)) or \
        getattr(backend.supports, "__func__", None) is not Backend.supports


def _rates(name: str, probe: bool) -> BackendRates | None:
    if probe:
        return calibrate.backend_rates(name, lambda: measure(name), toolchain(name))
    cal = calibrate.current() or calibrate.load_cached()
    return cal.backends.get(name) if cal is not None else None


def plan_program(program: Program, name: str, backend: str, on_gpu: bool = False,
                 opts: Sequence[Option] | None = None, measure: bool = False) -> Plan:
    """The placement of every fused region of ``program`` under ``backend`` ("auto": placement chooses).

    ``opts``: the candidates (default: :func:`options`, probing only when placement chooses).
    Under "auto", close calls take the measured decision saved for this machine
    (:mod:`noodle.jit.tuning`); ``measure``: time those not decided yet (the compile does; explain
    does not, it says so).
    """
    from noodle.jit.lower import is_region
    from noodle.passes.schedule import units

    all_units = units(program)
    regions = [u for u in all_units if is_region(program, u)]
    forced = None if backend == "auto" else backend
    given = opts is not None   # candidates passed in (what-if rates): the model's answer, not timed
    if opts is None:
        opts = options(on_gpu, probe=forced is None) if regions else []
    choices = tuple(choose_region(region_of(program, k, u.members, u.inputs, u.outputs, on_gpu), opts, forced)
                    for k, u in enumerate(regions))
    plan = Plan(name, backend, choices, len(all_units) - len(regions))
    if forced is None and not given:
        from noodle.jit.tuning import tune  # noqa: PLC0415

        plan = tune(program, plan, measure=measure, regions=regions)
    return plan


def chooser(plan: Plan) -> Callable[[int], list[Any]]:
    """What ``build_runner`` asks per region: the chosen backend, then the next cheapest ones."""
    from noodle.backends.registry import get_backend

    def pick(k: int) -> list[Any]:
        choice = plan.regions[k]
        names = [choice.backend, *choice.fallbacks]
        if "interpret" not in names:
            names.append("interpret")
        return [n if n == "interpret" else get_backend(n) for n in names]
    return pick


__all__ = ["CANDIDATES", "chooser", "measure", "options", "plan_program", "probe_program", "toolchain"]
