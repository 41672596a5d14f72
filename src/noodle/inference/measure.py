"""What the optimizer measures: latency per batch size, agreement with FP32, memory per row.

Why separate from the decisions: these are the measurements ``explain()``
quotes and the benchmarks reuse; keeping them pure functions of (session,
inputs) makes each one testable without the optimizer's caching.

Example::

    from noodle.inference.measure import time_batch, agreement
    lat = time_batch(session, {"x": x[:8]}, budget_s=0.1)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np


def time_batch(session: Any, feeds: dict[str, np.ndarray], *, budget_s: float = 0.15, min_runs: int = 5) -> float:
    """Fastest seconds of one ``session.run`` on ``feeds`` (one warm-up run first), within about ``budget_s``.

    Why the minimum (as ``timeit`` advises): on a shared machine another process
    only ever *adds* time, by 2-20x for a run it preempts; the minimum is what
    the variant can do here, and it ranks variants the same way from one
    measurement to the next, where medians taken a minute apart disagreed."""
    session.run(None, feeds)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < budget_s and len(times) < 200):
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return min(times)


@dataclass(frozen=True)
class Agreement:
    """How a variant's outputs compare with FP32's on held-back rows.

    ``kind`` is how it was judged: ``'top1'`` (argmax per row of a score
    matrix, or per group of rows for a ranker), ``'exact'`` (integer outputs
    such as labels) or ``'tolerance'`` (regression: max error relative to the
    FP32 output's range). ``fraction`` is the share of rows (or groups) that
    agree; ``max_rel_err`` the largest error relative to the output range."""

    kind: str
    fraction: float
    max_rel_err: float
    rows: int

    def describe(self) -> str:
        if self.kind == "tolerance":
            return f"max error {self.max_rel_err:.2%} of the FP32 output range on {self.rows} held-back rows"
        what = {"top1": "top-1", "exact": "exact-label"}[self.kind]
        return (f"{what} agreement {self.fraction:.2%} on {self.rows} held-back rows "
                f"(max error {self.max_rel_err:.2%} of the range)")


def agreement(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], *, task: str = "auto",
              group_size: int = 8) -> Agreement:
    """Compare a variant's outputs ``got`` with FP32's ``ref`` (same names), the worst output deciding.

    ``task``: ``'classifier'`` (argmax per row), ``'ranker'`` (argmax of the
    scores within each group of ``group_size`` consecutive rows: one candidate
    set), ``'regression'`` (tolerance only) or ``'auto'`` (a float output with
    more than one column is a classifier's scores; one column is a regression)."""
    worst: Agreement | None = None
    for name, r in ref.items():
        g = got[name]
        rows = int(r.shape[0]) if r.ndim else 1
        if r.dtype.kind in "iub":
            same = np.all((r == g).reshape(rows, -1), axis=1)
            result = Agreement("exact", float(same.mean()) if rows else 1.0, 0.0 if same.all() else 1.0, rows)
        else:
            r64, g64 = r.astype(np.float64), g.astype(np.float64)
            span = float(np.max(r64) - np.min(r64)) if r64.size else 0.0
            err = float(np.max(np.abs(r64 - g64))) if r64.size else 0.0
            rel = err / span if span > 0 else (0.0 if err == 0 else float("inf"))
            kind = task
            if kind == "auto":
                kind = "classifier" if r.ndim == 2 and r.shape[1] > 1 else "regression"
            if kind == "classifier" and r.ndim >= 2 and r.shape[-1] > 1:
                frac = float(np.mean(r64.reshape(rows, -1).argmax(1) == g64.reshape(rows, -1).argmax(1)))
                result = Agreement("top1", frac, rel, rows)
            elif kind == "ranker" and rows >= 2:
                n = max(2, int(group_size))
                groups = rows // n
                rs, gs = r64[: groups * n].reshape(groups, n, -1)[..., 0], g64[: groups * n].reshape(groups, n, -1)[..., 0]
                frac = float(np.mean(rs.argmax(1) == gs.argmax(1))) if groups else 1.0
                result = Agreement("top1", frac, rel, groups)
            else:
                result = Agreement("tolerance", 1.0, rel, rows)
        if worst is None or _worse(result, worst):
            worst = result
    return worst or Agreement("exact", 1.0, 0.0, 0)


def _worse(a: Agreement, b: Agreement) -> bool:
    return (a.fraction, -a.max_rel_err) < (b.fraction, -b.max_rel_err)


def bytes_per_row(model_data: bytes, specs_in: tuple, specs_out: tuple) -> tuple[int, str]:
    """An upper bound on the memory one row costs in a run: every tensor of the graph whose first axis
    is the batch axis, summed (ORT reuses buffers, so the truth is lower). Falls back to inputs +
    outputs x 4 when shape inference cannot tell; the second value says which was used."""
    per_io = sum(_row_bytes(s.shape, s.dtype.itemsize) for s in (*specs_in, *specs_out))
    try:
        import onnx  # noqa: PLC0415
        from onnx import shape_inference  # noqa: PLC0415

        model = shape_inference.infer_shapes(onnx.load_from_string(model_data))
        total = 0
        for vi in (*model.graph.input, *model.graph.value_info, *model.graph.output):
            tt = vi.type.tensor_type
            if not tt.HasField("shape") or not tt.shape.dim:
                continue
            dims = tt.shape.dim
            if dims[0].HasField("dim_value"):
                continue       # a fixed first axis is not the batch axis (weights, shapes)
            size = 1
            for d in dims[1:]:
                if not d.HasField("dim_value"):
                    size = 0
                    break
                size *= d.dim_value
            itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)).itemsize
            total += size * itemsize
        if total > 0:
            return total, "every batch-sized tensor of the graph (ONNX shape inference)"
    except Exception:  # noqa: BLE001 - an estimate; the fallback below is stated in explain()
        pass
    return max(1, per_io * 4), "inputs + outputs x 4 (shape inference could not size the intermediates)"


def _row_bytes(shape: tuple | None, itemsize: int) -> int:
    if not shape:
        return itemsize
    size = 1
    for d in shape[1:]:
        size *= d if d is not None else 1
    return size * itemsize
