"""PerformanceOptimizer: measure the model's variants on this machine once, serve the fastest that agrees.

Why measure instead of assume: ONNX Runtime's dynamic INT8 is 2-3x faster than
FP32 on CPUs with VNNI and no faster (sometimes slower) without; FP16 pays
only on a GPU; batching pays until the run becomes compute bound. So the
optimizer builds each variant with ORT's own tools, times it at candidate
batch sizes, compares its outputs with FP32's on held-back rows, and picks:

* **variant**: the fastest (geometric mean of throughput over the batch
  sizes) whose outputs agree with FP32: top-1 agreement >= 99% for
  classifier/ranker scores and labels, max error <= 1% of the FP32 output
  range for regression outputs. A variant must also be >= 5% faster than FP32
  (below that the difference is noise on a shared machine); otherwise FP32 is
  kept and ``explain()`` says why.
* **max batch size** (``NOODLE_SYNTAX_FIXER_BATCH_SIZE_AUTO``): the setting,
  lowered until a batch's estimated memory fits under
  ``NOODLE_SYNTAX_FIXER_MEMORY_THRESHOLD`` of the device's memory.
* **preferred batch sizes**: the measured sizes within 10% of the best
  throughput; the batcher sends such a batch without waiting out its delay.
* **CPU or GPU per batch size** (``NOODLE_SYNTAX_FIXER_AUTO_OPTIMIZATION``,
  with a GPU and ``onnxruntime-gpu``): the device whose measured run
  (transfers included: ORT copies NumPy inputs in and outputs out) is faster.
* **load** (``NOODLE_SYNTAX_FIXER_CPU_THRESHOLD``): see :class:`LoadGate`.

Measurements are cached as JSON under noodle's cache directory, keyed by the
hardware fingerprint placement's calibration uses (CPU model and count,
memory, library versions, GPUs) plus ONNX Runtime's version, the model's
digest, the samples' digest and the settings that shape the decision: a new
machine, library, model or setting measures again; nothing else does.

Example::

    from noodle.inference import MLInferenceEngine, PerformanceOptimizer
    opt = PerformanceOptimizer(samples=x_calibration)
    eng = MLInferenceEngine("model.onnx", optimizer=opt)
    print(eng.explain())
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from noodle.errors import InferenceInputError, ModelLoadError
from noodle.inference import measure, quantize
from noodle.inference import session as _session
from noodle.inference.settings import InferenceSettings, load_settings

log = logging.getLogger("noodle.inference")

CACHE_VERSION = 1
MIN_AGREEMENT = 0.99
REGRESSION_TOLERANCE = 0.01
MIN_SPEEDUP = 1.05
TIMING_ROUNDS = 3
DEFAULT_BATCH_SIZES = (1, 8, 32, 64)


@dataclass
class VariantResult:
    """One variant on one device: latency per batch size, agreement with FP32, and the verdict."""

    variant: str
    device: str
    latency_s: dict[int, float] = field(default_factory=dict)
    agreement: str = ""
    ok: bool = True
    reason: str = ""
    size_bytes: int = 0

    def throughput(self, bs: int) -> float:
        """Rows per second at batch size ``bs``."""
        return bs / self.latency_s[bs]

    def score(self) -> float:
        """Geometric mean of rows/s over the measured batch sizes (each size weighs the same)."""
        if not self.latency_s:
            return 0.0
        return math.exp(sum(math.log(self.throughput(b)) for b in self.latency_s) / len(self.latency_s))


@dataclass
class Decision:
    """What the optimizer chose and the measurements behind it; ``explain()`` prints both."""

    variant: str
    placement: _session.Placement
    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]
    device_by_batch: dict[int, str]
    results: list[VariantResult]
    lines: list[str]
    fingerprint: str
    variant_by_device: dict[str, str] = field(default_factory=dict)
    from_cache: bool = False
    model_bytes: bytes = b""
    routes: list[tuple[int, _session.Placement, bytes]] = field(default_factory=list)

    def route_for(self, rows: int) -> str:
        """The device measured faster for a batch of ``rows`` (the largest measured size <= rows decides)."""
        if not self.device_by_batch:
            return self.placement.name
        sizes = sorted(self.device_by_batch)
        pick = sizes[0]
        for b in sizes:
            if b <= rows:
                pick = b
        return self.device_by_batch[pick]

    def explain(self) -> str:
        """Every decision with its measurement, one per line."""
        head = (f"inference optimizer ({'cached measurement' if self.from_cache else 'measured now'}; "
                f"fingerprint {self.fingerprint[:60]}...)")
        table = []
        for r in self.results:
            lat = ", ".join(f"bs={b}: {t * 1e3:.3f} ms ({b / t:,.0f} rows/s)" for b, t in sorted(r.latency_s.items()))
            verdict = "ok" if r.ok else f"rejected: {r.reason}"
            table.append(f"  {r.variant:<13} on {r.device:<7} {lat}; {r.agreement or 'reference'}; {verdict}")
        return "\n".join([head, "measurements:", *table, "decisions:", *(f"  - {line}" for line in self.lines)])

    def to_json(self) -> dict[str, Any]:
        return {"version": CACHE_VERSION, "variant": self.variant, "placement": asdict(self.placement),
                "max_batch_size": self.max_batch_size, "preferred": list(self.preferred_batch_sizes),
                "device_by_batch": {str(k): v for k, v in self.device_by_batch.items()},
                "results": [{**asdict(r), "latency_s": {str(k): v for k, v in r.latency_s.items()}}
                            for r in self.results],
                "lines": self.lines, "fingerprint": self.fingerprint, "variant_by_device": self.variant_by_device}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Decision:
        if data.get("version") != CACHE_VERSION:
            raise ValueError("old optimizer cache format")
        results = [VariantResult(**{**r, "latency_s": {int(k): float(v) for k, v in r["latency_s"].items()}})
                   for r in data["results"]]
        return cls(str(data["variant"]), _session.Placement(**data["placement"]), int(data["max_batch_size"]),
                   tuple(int(b) for b in data["preferred"]),
                   {int(k): str(v) for k, v in data["device_by_batch"].items()}, results,
                   [str(x) for x in data["lines"]], str(data["fingerprint"]),
                   {str(k): str(v) for k, v in data.get("variant_by_device", {}).items()}, from_cache=True)


class LoadGate:
    """Delays or sheds submissions while the machine's CPU use is above ``NOODLE_SYNTAX_FIXER_CPU_THRESHOLD``.

    Why both: a short delay (one queue delay) lets the batcher build larger,
    cheaper-per-row batches while the CPU is saturated; when the CPU is
    saturated *and* the queue is over half full the engine cannot catch up,
    and a request is shed (InferenceOverloadError) rather than queued for ever.
    CPU use is sampled at most every 0.25 s (``psutil.cpu_percent``), so the
    check costs a clock read per request."""

    def __init__(self, threshold: float, delay_s: float) -> None:
        self.threshold = threshold
        self.delay_s = delay_s
        self._last = 0.0
        self._busy = False
        self._lock = threading.Lock()

    def cpu_busy(self) -> bool:
        """True while the last CPU sample was above the threshold."""
        if self.threshold >= 1.0:
            return False
        now = time.monotonic()
        if now - self._last >= 0.25 and self._lock.acquire(blocking=False):
            try:
                import psutil  # noqa: PLC0415

                self._busy = psutil.cpu_percent(interval=None) / 100.0 > self.threshold
                self._last = now
            finally:
                self._lock.release()
        return self._busy

    def action(self, pending: int, capacity: int) -> str:
        """``'ok'``, ``'delay'`` or ``'shed'`` for a request arriving with ``pending`` requests queued."""
        if not self.cpu_busy():
            return "ok"
        return "shed" if pending > capacity // 2 else "delay"


class PerformanceOptimizer:
    """Chooses variant, batch sizes and device for a model from measurements on this machine.

    ``samples``: representative inputs (an array for a single-input model, or
    name -> array), at least 64 rows; the first quarter calibrates static INT8,
    the rest is held back for agreement. Without samples the optimizer draws
    standard-normal inputs (integer inputs: 0..9) and says so in ``explain()``:
    agreement on random inputs is a weaker promise than on real ones.
    ``task``: ``'auto'``, ``'classifier'``, ``'ranker'`` (``group_size`` rows
    form one candidate set) or ``'regression'``.

    Example::

        opt = PerformanceOptimizer(samples=x_val, task="classifier")
        decision = opt.optimize(open("model.onnx", "rb").read())
        print(decision.explain())
    """

    def __init__(self, settings: InferenceSettings | None = None, *, samples: Any = None, task: str = "auto",
                 group_size: int = 8, batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES,
                 budget_s: float = 0.15, cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                 intra_op_threads: int = 0) -> None:
        if task not in ("auto", "classifier", "ranker", "regression"):
            raise InferenceInputError(f"task must be 'auto', 'classifier', 'ranker' or 'regression', got {task!r}")
        if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
            raise InferenceInputError(f"batch_sizes must be positive integers, got {batch_sizes!r}")
        self.settings = settings or load_settings()
        self.samples = samples
        self.task = task
        self.group_size = group_size
        self.batch_sizes = tuple(sorted({int(b) for b in batch_sizes}))
        self.budget_s = budget_s
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.use_cache = use_cache
        self.intra_op_threads = intra_op_threads
        self.measure_count = 0      # how many times this optimizer really measured (tests, bench)

    # ---- public --------------------------------------------------------------------------------------

    def optimize(self, model: Any, device: Any = "auto") -> Decision:
        """Measure (or load the cached measurement of) ``model`` and decide; the decision's
        ``model_bytes`` is the chosen variant, ready for a session."""
        data = _session.model_bytes(model)
        base = _session.resolve_device(device)
        probe = _session.make_session(data, _session.Placement("cpu"))
        specs_in = tuple(_session.TensorSpec.from_ort(a) for a in probe.get_inputs())
        specs_out = tuple(_session.TensorSpec.from_ort(a) for a in probe.get_outputs())
        calib, held = self._split_samples(specs_in)
        devices = self._candidate_devices(base)
        key, fp = self._key(data, calib, held, devices)
        decision = self._load(key) if self.use_cache else None
        if decision is None:
            decision = self._measure(data, devices, specs_in, specs_out, calib, held, fp)
            self._save(key, decision)
        feeds = self._calibration_feeds(calib)
        decision.model_bytes = quantize.build(decision.variant, data, feeds)
        if len(set(decision.device_by_batch.values())) > 1:
            # Both devices serve (each the batch sizes it measured faster at): a model per device.
            for p in devices:
                variant = decision.variant_by_device.get(p.name, "fp32")
                decision.routes.append((0, p, quantize.build(variant, data, feeds)))
        self._record(decision)
        return decision

    # ---- samples ---------------------------------------------------------------------------------------

    def _split_samples(self, specs: tuple) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        if self.samples is None:
            rng = np.random.default_rng(20240612)
            feeds = {}
            for s in specs:
                shape = [256 if i == 0 else (d or 1) for i, d in enumerate(s.shape or (None,))]
                if s.dtype.kind == "f":
                    feeds[s.name] = rng.standard_normal(shape).astype(s.dtype)
                elif s.dtype.kind == "b":
                    feeds[s.name] = rng.integers(0, 2, shape).astype(bool)
                else:
                    feeds[s.name] = rng.integers(0, 10, shape).astype(s.dtype)
            self._synthetic = True
        else:
            feeds = _session.check_inputs(self.samples, specs)
            self._synthetic = False
        rows = next(iter(feeds.values())).shape[0]
        if rows < 16:
            raise InferenceInputError(f"the optimizer needs at least 16 sample rows (64 or more is better), got {rows}.")
        cut = max(4, rows // 4)
        return {k: v[:cut] for k, v in feeds.items()}, {k: v[cut:] for k, v in feeds.items()}

    def _calibration_feeds(self, calib: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        rows = next(iter(calib.values())).shape[0]
        step = 16
        return [{k: v[i:i + step] for k, v in calib.items()} for i in range(0, rows, step)]

    # ---- measuring -------------------------------------------------------------------------------------

    def _candidate_devices(self, base: _session.Placement) -> list[_session.Placement]:
        if base.kind == "cuda" and self.settings.auto_optimization:
            return [base, _session.Placement("cpu")]
        return [base]

    def _variants_for(self, placement: _session.Placement) -> list[str]:
        if not self.settings.quantization_enabled:
            return ["fp32"]
        if placement.kind == "cuda":
            return ["fp32", "fp16"]
        return ["fp32", "int8_dynamic", "int8_static"]

    def _measure(self, data: bytes, devices: list[_session.Placement], specs_in: tuple, specs_out: tuple,
                 calib: dict[str, np.ndarray], held: dict[str, np.ndarray], fp: str) -> Decision:
        self.measure_count += 1
        lines: list[str] = []
        if self._synthetic:
            lines.append("no samples were given: agreement is measured on standard-normal inputs "
                         "(pass samples= with real inputs for a stronger check)")
        if not self.settings.quantization_enabled:
            lines.append("NOODLE_SYNTAX_FIXER_QUANTIZATION_ENABLED=false: only FP32 is considered")
        max_bs, mem_line = self._max_batch_size(data, specs_in, specs_out, devices[0])
        lines.append(mem_line)
        sizes = [b for b in self.batch_sizes if b <= max_bs] or [1]
        results: list[VariantResult] = []
        best_per_device: dict[str, VariantResult] = {}
        for placement in devices:
            ref_session = _session.make_session(data, placement, intra_op_threads=self.intra_op_threads)
            names = [o.name for o in ref_session.get_outputs()]
            ref_out = dict(zip(names, ref_session.run(names, held)))
            device_results = []
            timed: list[tuple[VariantResult, Any]] = []
            for variant in self._variants_for(placement):
                r, sess = self._build_variant(variant, data, placement, calib, held, ref_out, names)
                results.append(r)
                device_results.append(r)
                if sess is not None:
                    timed.append((r, sess))
            self._time_interleaved(timed, held, sizes)
            best = self._pick(device_results, placement, lines)
            best_per_device[placement.name] = best
        chosen_device = devices[0].name
        device_by_batch: dict[int, str] = {}
        if len(best_per_device) > 1:
            for b in sizes:
                device_by_batch[b] = min(best_per_device.values(), key=lambda r: r.latency_s[b]).device
            lines.append("device per batch size (measured run, transfers included): " + ", ".join(
                f"bs={b}: {d}" for b, d in device_by_batch.items()))
            # The served variant and placement are the ones winning at the largest batch size.
            chosen_device = device_by_batch[sizes[-1]]
        elif devices[0].kind == "cuda" and not self.settings.auto_optimization:
            lines.append("NOODLE_SYNTAX_FIXER_AUTO_OPTIMIZATION=false: the GPU serves every batch size")
        chosen = best_per_device[chosen_device]
        placement = next(p for p in devices if p.name == chosen_device)
        top = max(chosen.latency_s, key=chosen.throughput)
        preferred = tuple(sorted((b for b in chosen.latency_s if chosen.throughput(b) >= 0.9 * chosen.throughput(top)),
                                 reverse=True))
        lines.append(f"preferred batch sizes {list(preferred)}: within 10% of the best measured throughput "
                     f"({chosen.throughput(top):,.0f} rows/s at bs={top})")
        lines.append(f"serving {chosen.variant} on {placement.name} with max_batch_size={max_bs}")
        return Decision(chosen.variant, placement, max_bs, preferred, device_by_batch, results, lines, fp,
                        {d: r.variant for d, r in best_per_device.items()})

    def _build_variant(self, variant: str, data: bytes, placement: _session.Placement,
                       calib: dict[str, np.ndarray], held: dict[str, np.ndarray], ref_out: dict[str, np.ndarray],
                       names: list[str]) -> tuple[VariantResult, Any]:
        """Build one variant's session and judge its agreement with FP32 (no timing yet)."""
        r = VariantResult(variant, placement.name)
        try:
            vdata = quantize.build(variant, data, self._calibration_feeds(calib))
            sess = _session.make_session(vdata, placement, intra_op_threads=self.intra_op_threads)
        except ModelLoadError as exc:
            r.ok, r.reason = False, f"could not be built ({exc})"
            return r, None
        r.size_bytes = len(vdata)
        if variant != "fp32":
            got = dict(zip(names, sess.run(names, held)))
            ag = measure.agreement(ref_out, got, task=self.task, group_size=self.group_size)
            r.agreement = ag.describe()
            if ag.kind == "tolerance" and ag.max_rel_err > REGRESSION_TOLERANCE:
                r.ok, r.reason = False, f"error {ag.max_rel_err:.2%} of the range > {REGRESSION_TOLERANCE:.0%}"
            elif ag.kind != "tolerance" and ag.fraction < MIN_AGREEMENT:
                r.ok, r.reason = False, f"agreement {ag.fraction:.2%} < {MIN_AGREEMENT:.0%}"
        return r, sess

    def _time_interleaved(self, timed: list[tuple[VariantResult, Any]], held: dict[str, np.ndarray],
                          sizes: list[int]) -> None:
        """Latency per batch size of every variant, in ``TIMING_ROUNDS`` rounds that alternate the variants.

        Why interleaved: variants timed one after another each see a different
        slice of the machine's background load, and two variants within 20% of
        each other (small models) swapped places from one run to the next; timed
        in alternation, each variant's minimum comes from the same quiet moments."""
        if not timed:
            return
        rows = next(iter(held.values())).shape[0]
        feeds_by_size = {b: {k: _rows(v, b, rows) for k, v in held.items()} for b in sizes}
        per_round = self.budget_s / TIMING_ROUNDS
        for _ in range(TIMING_ROUNDS):
            for b in sizes:
                for r, sess in timed:
                    t = measure.time_batch(sess, feeds_by_size[b], budget_s=per_round, min_runs=3)
                    r.latency_s[b] = min(t, r.latency_s.get(b, math.inf))

    def _pick(self, results: list[VariantResult], placement: _session.Placement, lines: list[str]) -> VariantResult:
        fp32 = results[0]
        best = fp32
        for r in results[1:]:
            speed = r.score() / fp32.score() if r.latency_s else 0.0
            if not r.ok:
                lines.append(f"{r.variant} on {placement.name}: not used, {r.reason} "
                             f"(it measured {speed:.2f}x FP32's throughput)")
            elif speed < MIN_SPEEDUP:
                r.ok, r.reason = False, f"only {speed:.2f}x FP32's throughput (needs >= {MIN_SPEEDUP}x)"
                lines.append(f"{r.variant} on {placement.name}: not used, measured {speed:.2f}x FP32's "
                             f"throughput (< {MIN_SPEEDUP}x: not faster here); {r.agreement}")
            elif r.score() > best.score():
                best = r
        if best is fp32:
            lines.append(f"{placement.name}: keeping FP32 ({fp32.score():,.0f} rows/s geometric mean)")
        else:
            lines.append(f"{placement.name}: {best.variant} chosen, {best.score() / fp32.score():.2f}x FP32's "
                         f"throughput (geometric mean over batch sizes), {best.agreement}")
        return best

    def _max_batch_size(self, data: bytes, specs_in: tuple, specs_out: tuple,
                        placement: _session.Placement) -> tuple[int, str]:
        setting = self.settings.max_batch_size
        if not self.settings.batch_size_auto:
            return setting, (f"max_batch_size={setting} from NOODLE_INFERENCE_MAX_BATCH_SIZE "
                             "(NOODLE_SYNTAX_FIXER_BATCH_SIZE_AUTO=false: free memory not consulted)")
        per_row, how = measure.bytes_per_row(data, specs_in, specs_out)
        total, available = _memory(placement)
        room = available - (1.0 - self.settings.memory_threshold) * total
        fits = max(1, int(room // per_row)) if room > 0 else 1
        chosen = max(1, min(setting, fits))
        return chosen, (f"max_batch_size={chosen}: setting {setting}, memory fits {fits} rows "
                        f"({per_row:,} B/row estimated from {how}; {max(room, 0) / 2**20:,.0f} MiB free before "
                        f"{placement.name} memory use reaches NOODLE_SYNTAX_FIXER_MEMORY_THRESHOLD="
                        f"{self.settings.memory_threshold})")

    # ---- cache -----------------------------------------------------------------------------------------

    def _key(self, data: bytes, calib: dict, held: dict, devices: list) -> tuple[str, str]:
        from noodle.placement import calibrate  # noqa: PLC0415

        rt = _session.ort()
        gpus = [f"cuda:{p.index}" for p in devices if p.kind == "cuda"]
        fp = "|".join([calibrate.fingerprint(calibrate._gpu_names()), f"onnxruntime{rt.__version__}", *gpus])
        h = hashlib.sha256()
        h.update(fp.encode())
        h.update(hashlib.sha256(data).digest())
        for part in (calib, held):
            for name in sorted(part):
                h.update(name.encode() + part[name].dtype.str.encode() + str(part[name].shape).encode())
                h.update(memoryview(np.ascontiguousarray(part[name])).cast("B"))
        knobs = (self.settings.batch_size_auto, self.settings.quantization_enabled, self.settings.auto_optimization,
                 self.settings.memory_threshold, self.settings.max_batch_size, self.task, self.group_size,
                 self.batch_sizes, self.intra_op_threads, [p.name for p in devices])
        h.update(repr(knobs).encode())
        return h.hexdigest()[:32], fp

    def _dir(self) -> Path:
        if self.cache_dir is not None:
            return self.cache_dir
        from noodle.config import get_settings  # noqa: PLC0415

        return Path(get_settings().cache_dir) / "inference"

    def _load(self, key: str) -> Decision | None:
        path = self._dir() / f"{key}.json"
        if not path.is_file():
            return None
        try:
            return Decision.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.info("optimizer cache %s unreadable (%s); measuring again", path, exc)
            return None

    def _save(self, key: str, decision: Decision) -> None:
        if not self.use_cache:
            return
        from noodle.placement.calibrate import write_json  # noqa: PLC0415

        path = self._dir() / f"{key}.json"
        try:
            write_json(path, decision.to_json(), indent=1)
        except OSError as exc:
            log.warning("could not save the optimizer's measurements to %s (%s); they will be measured again",
                        path, exc)

    def _record(self, decision: Decision) -> None:
        if self.settings.performance_monitoring:
            from noodle.inference.metrics import record_decision  # noqa: PLC0415

            record_decision(decision)


def _rows(arr: np.ndarray, b: int, have: int) -> np.ndarray:
    if b <= have:
        return np.ascontiguousarray(arr[:b])
    reps = -(-b // have)
    return np.ascontiguousarray(np.concatenate([arr] * reps, axis=0)[:b])


def _memory(placement: _session.Placement) -> tuple[float, float]:
    """(total, available) bytes of the device's memory."""
    if placement.kind == "cuda":
        from noodle import devices  # noqa: PLC0415

        for info in devices.gpu_infos():
            if info.index == (placement.index or 0) and info.memory_total and info.memory_available is not None:
                return float(info.memory_total), float(info.memory_available)
    import psutil  # noqa: PLC0415

    vm = psutil.virtual_memory()
    return float(vm.total), float(vm.available)
