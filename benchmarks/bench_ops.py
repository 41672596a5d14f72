"""`noodle bench ops`: eager ops under device='auto' against NumPy, measured in the same run.

Rows: elementwise ops at 1e4, 1e6, 1e7 elements (f32 and f64), matmul at
256², 1000², 2000², and dispatch overhead on 16-element arrays. Each row times
noodle and NumPy interleaved; the ratio is NumPy's min time over noodle's
(>1: noodle faster). On a GPU machine, extra rows give GPU vs CPU at 1e7 and 4000².
"""

from __future__ import annotations

import numpy as np

import noodle as nd
from noodle.array import numba_kernels
from noodle.benchtools import Row, time_pair

TITLE = "noodle bench ops: eager ops (device='auto') vs NumPy, same run"

ELEMENTWISE = [
    ("add", nd.add, np.add, 2),
    ("multiply", nd.multiply, np.multiply, 2),
    ("divide", nd.divide, np.divide, 2),
    ("exp", nd.exp, np.exp, 1),
    ("maximum", nd.maximum, np.maximum, 2),
]


def _inputs(n: int, dtype: str, k: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(rng.random(n) + 0.5).astype(dtype) for _ in range(k)]


def run(quick: bool = False) -> list[Row]:
    policy = numba_kernels.wait_for_policy()
    numba_kernels.warm()
    rows: list[Row] = []
    sizes = [10_000, 1_000_000] if quick else [10_000, 1_000_000, 10_000_000]
    min_time = 0.05 if quick else 0.4
    for n in sizes:
        for dtype in ("float32", "float64"):
            for name, ours, ref, k in ELEMENTWISE:
                args = _inputs(n, dtype, k)
                t_nd, t_np = time_pair(lambda ours=ours, args=args: ours(*args),
                                       lambda ref=ref, args=args: ref(*args), min_time=min_time)
                backend = "numba" if (policy and name in numba_kernels.SUPPORTED_OPS and n >= 100_000) else "numpy"
                rows.append(Row("ops", f"{name} {n:.0e} {dtype}", f"nd.{name} [{backend}]", f"np.{name}",
                                t_nd, t_np))
    for m in ([256, 1000] if quick else [256, 1000, 2000]):
        for dtype in ("float64", "float32"):
            a, b = [x.reshape(m, m) for x in _inputs(m * m, dtype, 2)]
            t_nd, t_np = time_pair(lambda a=a, b=b: nd.matmul(a, b), lambda a=a, b=b: np.matmul(a, b),
                                   min_time=min_time)
            rows.append(Row("ops", f"matmul {m}² {dtype}", "nd.matmul", "np.matmul", t_nd, t_np))
    tiny = _inputs(16, "float64", 2)
    for name, ours, ref, k in ELEMENTWISE + [("sum", nd.sum, np.sum, 1)]:
        args = tiny[:k]
        t_nd, t_np = time_pair(lambda ours=ours, args=args: ours(*args),
                               lambda ref=ref, args=args: ref(*args), min_time=min_time, max_runs=20000)
        rows.append(Row("ops", f"overhead {name} 16 f64", f"nd.{name}", f"np.{name}", t_nd, t_np,
                        {"overhead_us": (t_nd.min - t_np.min) * 1e6}))
    rows += _gpu_rows(min_time)
    return rows


def _gpu_rows(min_time: float) -> list[Row]:
    from noodle.devices import cupy_module, gpu_count

    if gpu_count() == 0:
        return []
    cp = cupy_module()
    rows = []
    sync = cp.cuda.runtime.deviceSynchronize
    for name, ours, ref, k in ELEMENTWISE:
        host = _inputs(10_000_000, "float32", k)
        dev = [cp.asarray(h) for h in host]

        def gpu_call(ours=ours, dev=dev):
            ours(*dev, device="gpu")
            sync()

        t_gpu, t_cpu = time_pair(gpu_call, lambda ref=ref, host=host: ref(*host), min_time=min_time)
        rows.append(Row("ops", f"GPU {name} 1e7 f32 (data on device)", f"nd.{name} cuda", f"np.{name} cpu",
                        t_gpu, t_cpu))
    for dtype in ("float32", "float64"):
        a = _inputs(4000 * 4000, dtype, 1)[0].reshape(4000, 4000)
        da = cp.asarray(a)

        def mm(da=da):
            nd.matmul(da, da, device="gpu")
            sync()

        t_gpu, t_cpu = time_pair(mm, lambda a=a: np.matmul(a, a), min_time=min_time, max_runs=20)
        rows.append(Row("ops", f"GPU matmul 4000² {dtype}", "nd.matmul cuda", "np.matmul cpu", t_gpu, t_cpu))
    return rows


def notes(rows: list[Row]) -> list[str]:
    over = [r.extra["overhead_us"] for r in rows if "overhead_us" in r.extra]
    out = []
    if over:
        out.append(f"dispatch overhead over NumPy on 16 elements: max {max(over):.2f} µs, "
                   f"mean {sum(over) / len(over):.2f} µs (target <= 3 µs)")
    mm = [r for r in rows if r.case.startswith("matmul 1000²")]
    for r in mm:
        out.append(f"{r.case}: noodle/NumPy time {1 / r.ratio:.3f} (target within 5%)")
    return out
