"""``noodle bench inference``: the inference engine's variants, dynamic batching and optimizer, same-run baselines.

The model: an MLP 256 -> 4096 -> 4096 -> 1024 -> 10, 88 MB of float32 weights,
more than this machine's 32 MB L3 cache, so one row streams them from memory
as eight rows do (2.4 ms against 3.8 ms here): the regime batching exists for,
and the one real models are in. The earlier 256 -> 1024 x3 model (10 MB) sits
in L3: one row takes 0.18 ms and eight 0.30 ms, so compute alone capped batching
at 2.6x and Python thread hand-offs (~75 us a request on 2 shared cores)
dominated both serving paths. Built with ``onnx.helper``: hidden layers random (He
init), the output layer fitted by least squares to 10 well-separated Gaussian
clusters in a fraction of a second (a "trained" classifier whose argmax is
meaningful, so INT8's top-1 agreement measures something). Also the fixer's
reranker (``src/noodle/fixer/data/reranker.onnx``) when it exists.

Rows, one run:

- batch-size sweep per variant (FP32, dynamic INT8, static INT8; FP16 only
  with a GPU): fastest run time, candidate = the variant, baseline = FP32 at
  the same batch size; agreement with FP32 (top-1) beside it;
- serving with 1 and 8 concurrent closed-loop clients (one row per request),
  dynamic batching (``submit``) against unbatched serving (``infer`` from
  each client thread) on the same engine settings: throughput and p95;
  with 8 clients also the batcher's queue delay at 0 / 2 / 10 ms (how the
  0 ms default was chosen);
- the optimizer's choice against the best variant found by brute force
  (every variant that agrees >= 99% with FP32, timed in the sweep above).

Targets (PASS/FAIL lines): 8 clients with batching >= 3x the throughput of
unbatched serving at <= 1.3x its p95; the optimizer's choice within 10% of
the brute-force best; INT8 chosen only where it measured faster and agreed
>= 99%. Timings are noisy on a shared 2-core machine: read ratios from one run.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from noodle.benchtools import Row, Timing

TITLE = "noodle bench inference: variants, dynamic batching and the optimizer (ratios vs same-run baselines)"
SIZES = [256, 4096, 4096, 1024, 10]
RERANKER = Path(__file__).resolve().parents[1] / "src" / "noodle" / "fixer" / "data" / "reranker.onnx"


def _trained_mlp() -> tuple[bytes, np.ndarray]:
    """The MLP and 2048 sample rows: random ReLU features, output layer fitted by least squares."""
    from noodle.inference.toy import mlp_model, mlp_numpy

    rng = np.random.default_rng(7)
    centers = rng.standard_normal((SIZES[-1], SIZES[0])) * 1.5
    labels = rng.integers(0, SIZES[-1], 4096)
    x = (centers[labels] + rng.standard_normal((4096, SIZES[0]))).astype(np.float32)
    _, weights = mlp_model(SIZES, seed=3)
    hidden = mlp_numpy(weights[:-1] + [(np.eye(SIZES[-2], dtype=np.float32), np.zeros(SIZES[-2], np.float32))],
                       x[:2048])
    hidden = np.maximum(hidden, 0).astype(np.float64)
    onehot = np.eye(SIZES[-1])[labels[:2048]] * 2 - 1
    design = np.hstack([hidden, np.ones((2048, 1))])
    sol = np.linalg.lstsq(design.T @ design + 1e-2 * np.eye(design.shape[1]), design.T @ onehot, rcond=None)[0]
    weights[-1] = (sol[:-1].astype(np.float32), sol[-1].astype(np.float32))
    model, _ = mlp_model(SIZES, weights=weights)
    return model, x[2048:]


def _variants(gpu: bool) -> list[str]:
    return ["fp32", "int8_dynamic", "int8_static"] + (["fp16"] if gpu else [])


def _sweep(name: str, model: bytes, x: dict[str, np.ndarray], batch_sizes: list[int], gpu: bool,
           budget: float, task: str) -> tuple[list[Row], dict[str, dict[int, float]], dict[str, float]]:
    from noodle.inference import measure, quantize, session

    calib = [{k: v[i:i + 16] for k, v in x.items()} for i in range(0, 256, 16)]
    held = {k: v[256:] for k, v in x.items()}
    rows, lat, agree = [], {}, {}
    sessions: dict[str, Any] = {}
    ref = None
    for variant in _variants(gpu):
        place = session.Placement("cuda", 0) if variant == "fp16" else session.Placement("cpu")
        sess = session.make_session(quantize.build(variant, model, calib), place)
        names = [o.name for o in sess.get_outputs()]
        out = dict(zip(names, sess.run(names, held)))
        if ref is None:
            ref = out
        ag = measure.agreement(ref, out, task=task)
        agree[variant] = ag.fraction if ag.kind != "tolerance" else float(ag.max_rel_err <= 0.01)
        lat[variant] = {}
        sessions[variant] = sess
    # brute force: every variant at every size, in rounds that alternate the variants (one after
    # another, each saw a different slice of the machine's background load)
    for _ in range(3):
        for b in batch_sizes:
            feeds = {k: np.ascontiguousarray(v[:b]) for k, v in held.items()}
            for variant, sess in sessions.items():
                t = measure.time_batch(sess, feeds, budget_s=budget / 3, min_runs=3)
                lat[variant][b] = min(t, lat[variant].get(b, math.inf))
    for variant in lat:
        for b in batch_sizes:
            cand, base = lat[variant][b], lat["fp32"][b]
            rows.append(Row("inference", f"{name} bs={b}", variant, "fp32", Timing(cand, cand, 0),
                            Timing(base, base, 0),
                            {"rows_per_s": round(b / cand), "agreement": round(agree[variant], 4)}))
    return rows, lat, agree


def _serve(eng: Any, x: np.ndarray, clients: int, batched: bool, seconds: float) -> tuple[float, float, int]:
    """Closed-loop clients sending one row at a time; (requests/s, p95 s, requests)."""
    stop = time.perf_counter() + seconds
    lats: list[list[float]] = [[] for _ in range(clients)]
    start = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        mine = lats[i]
        k = i
        start.wait()
        while time.perf_counter() < stop:
            row = x[k % len(x): k % len(x) + 1]
            t0 = time.perf_counter()
            if batched:
                eng.submit(row).result()
            else:
                eng.infer(row)
            mine.append(time.perf_counter() - t0)
            k += clients

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    all_lats = sorted(v for lst in lats for v in lst)
    p95 = all_lats[min(len(all_lats) - 1, int(0.95 * len(all_lats)))]
    return len(all_lats) / elapsed, p95, len(all_lats)


def _serving_rows(model: bytes, x: np.ndarray, seconds: float, quick: bool) -> list[Row]:
    """Unbatched and batched serving measured alternately (A, B, A, B), the better round of each kept:
    another process preempting one round must not decide the ratio."""
    from noodle.inference import MLInferenceEngine

    rows = []
    delays = [0.0] if quick else [0.0, 2.0, 10.0]
    for clients in (1, 8):
        for delay in (delays if clients == 8 else [0.0]):
            best: dict[bool, tuple[float, float, int]] = {}
            for _ in range(2):
                for batched in (False, True):
                    with MLInferenceEngine(model, device="cpu", max_queue_delay_ms=delay) as eng:
                        eng.infer(x[:8])
                        got = _serve(eng, x, clients, batched, seconds)
                    if batched not in best or got[0] > best[batched][0]:
                        best[batched] = got
            (tput, p95, n), (base_tput, base_p95, base_n) = best[True], best[False]
            rows.append(Row("inference", f"serve {clients} client(s), queue delay {delay:g} ms",
                            "dynamic batching", "unbatched", Timing(1 / tput, p95, n),
                            Timing(1 / base_tput, base_p95, base_n),
                            {"clients": clients, "delay_ms": delay, "throughput": round(tput),
                             "baseline_throughput": round(base_tput), "p95_ms": round(p95 * 1e3, 3),
                             "baseline_p95_ms": round(base_p95 * 1e3, 3),
                             "p95_ratio": round(p95 / base_p95, 3)}))
    return rows


def _geo(lat: dict[int, float]) -> float:
    return math.exp(statistics.fmean(math.log(b / t) for b, t in lat.items()))


def _optimizer_row(name: str, model: bytes, x: dict[str, np.ndarray], lat: dict, agree: dict, batch_sizes: list[int],
                   budget: float, task: str) -> Row:
    from noodle.inference import PerformanceOptimizer

    with tempfile.TemporaryDirectory() as tmp:
        opt = PerformanceOptimizer(samples=x, task=task, batch_sizes=tuple(batch_sizes), budget_s=budget,
                                   cache_dir=tmp)
        t0 = time.perf_counter()
        decision = opt.optimize(model, device="cpu")
        took = time.perf_counter() - t0
    ok_variants = {v: _geo(lat[v]) for v in lat if agree[v] >= 0.99}
    best = max(ok_variants, key=ok_variants.get)
    chosen_score = _geo(lat[decision.variant])
    return Row("inference", f"{name}: optimizer choice vs brute force", f"optimizer: {decision.variant}",
               f"brute force: {best}", Timing(1 / chosen_score, 1 / chosen_score, 0),
               Timing(1 / ok_variants[best], 1 / ok_variants[best], 0),
               {"chosen": decision.variant, "best": best, "measure_s": round(took, 2),
                "chosen_speed_vs_fp32": round(chosen_score / _geo(lat["fp32"]), 3),
                "chosen_agreement": round(agree[decision.variant], 4),
                "speed_vs_fp32": {v: round(_geo(lat[v]) / _geo(lat["fp32"]), 3) for v in lat},
                "agreement_by_variant": {v: round(a, 4) for v, a in agree.items()},
                "explain": decision.explain()})


def run(quick: bool = False) -> list[Row]:
    from noodle.inference import session

    gpu = session.resolve_device("auto").kind == "cuda"
    budget = 0.03 if quick else 0.12
    seconds = 0.4 if quick else 1.0
    batch_sizes = [1, 8, 64] if quick else [1, 8, 32, 64, 128]
    model, x = _trained_mlp()
    feeds = {"x": x}
    name = "mlp " + "-".join(map(str, SIZES))
    rows, lat, agree = _sweep(name, model, feeds, batch_sizes, gpu, budget, "classifier")
    rows.append(_optimizer_row(name, model, feeds, lat, agree, batch_sizes, budget, "classifier"))
    rows += _serving_rows(model, x, seconds, quick)
    if RERANKER.is_file():
        rows += _reranker_rows(batch_sizes, gpu, budget)
    return rows


def _reranker_rows(batch_sizes: list[int], gpu: bool, budget: float) -> list[Row]:
    from noodle.inference import session

    data = RERANKER.read_bytes()
    sess = session.make_session(data, session.Placement("cpu"))
    specs = [session.TensorSpec.from_ort(a) for a in sess.get_inputs()]
    if len(specs) != 1 or specs[0].dtype.kind != "f" or not specs[0].shape or len(specs[0].shape) != 2:
        return []
    width = specs[0].shape[1] or 1
    rng = np.random.default_rng(11)
    x = {specs[0].name: rng.standard_normal((1024, width)).astype(specs[0].dtype)}
    name = "fixer reranker (random features)"
    rows, lat, agree = _sweep(name, data, x, batch_sizes, gpu, budget, "ranker")
    rows.append(_optimizer_row(name, data, x, lat, agree, batch_sizes, budget, "ranker"))
    return rows


def notes(rows: list[Row]) -> list[str]:
    """The serving figures, the optimizer's reasoning, then the issue's targets as PASS/FAIL lines."""
    out = []

    def check(label: str, ok: bool, detail: str) -> None:
        out.append(f"[{'PASS' if ok else 'FAIL'}] {label}: {detail}")

    for r in rows:
        e = r.extra
        if "clients" in e:
            out.append(f"  {r.case}: {e['throughput']:,} req/s (p95 {e['p95_ms']} ms) vs unbatched "
                       f"{e['baseline_throughput']:,} req/s (p95 {e['baseline_p95_ms']} ms)")
    for r in rows:
        e = r.extra
        if "explain" in e:
            out.append(f"{r.case}: speed vs FP32 {e['speed_vs_fp32']}, agreement {e['agreement_by_variant']}")
            out += ["  " + line for line in e["explain"].splitlines()]
    for r in rows:
        e = r.extra
        if e.get("clients") == 8 and e.get("delay_ms") == 0.0:
            check("8 clients: batching >= 3x unbatched throughput at <= 1.3x its p95",
                  r.ratio >= 3.0 and e["p95_ratio"] <= 1.3,
                  f"{r.ratio:.2f}x throughput, p95 {e['p95_ratio']:.2f}x ({e['p95_ms']} vs {e['baseline_p95_ms']} ms)")
        if "explain" in e:
            within = r.ratio >= 1 / 1.1
            check(f"{r.case.split(':')[0]}: optimizer within 10% of the brute-force best", within,
                  f"{e['chosen']} at {r.ratio:.2f}x of {e['best']}'s throughput")
            if e["chosen"].startswith("int8"):
                check(f"{r.case.split(':')[0]}: INT8 used only where faster and agreeing >= 99%",
                      e["chosen_speed_vs_fp32"] > 1.0 and e["chosen_agreement"] >= 0.99,
                      f"{e['chosen']} {e['chosen_speed_vs_fp32']}x FP32, agreement {e['chosen_agreement']:.2%}")
            else:
                check(f"{r.case.split(':')[0]}: INT8 used only where faster and agreeing >= 99%", True,
                      f"INT8 not chosen (speed vs FP32 {e['speed_vs_fp32']}, agreement {e['agreement_by_variant']})")
    if not any("fp16" == r.candidate for r in rows):
        out.append("FP16 rows: no GPU with ONNX Runtime's CUDA provider here; the FP16 path is unverified in this run.")
    return out
