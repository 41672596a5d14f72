"""Row softmax and row layernorm rows of ``noodle bench jit`` (issue 16, point 2): one row-wise
kernel against NumPy eager and ``jax.jit``, measured in the same run.

Why a module of its own: the bench-jit file belongs to the call-path work; it calls
:func:`rowwise_rows` (``benchmarks/jit_issue16_rows.py``). Shapes 512x1024 and 4096x1024, float32
and float64 (jax with ``jax_enable_x64`` for float64, compiled outside the timing, results
``block_until_ready``). Each row's ``extra`` has the baseline's own speedup over NumPy, for the
issue's table. Run alone: ``python benchmarks/jit_rowwise_rows.py [--quick]``.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

import noodle as nd
from noodle.benchtools import Row, time_pair


def row_fns(xp: Any) -> dict[str, Any]:
    """Row softmax and row layernorm written once against the array module ``xp``: NumPy (eager and
    ``@nd.jit``) or ``jax.numpy`` (``jax.jit``)."""
    def softmax(x):
        e = xp.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def layernorm(x, g, b):
        m = x.mean(axis=-1, keepdims=True)
        d = x - m
        v = (d * d).mean(axis=-1, keepdims=True)
        return d / xp.sqrt(v + 1e-5) * g + b

    return {"softmax": softmax, "layernorm": layernorm}


def _jax(x64: bool) -> Any:
    try:
        import jax
        import jax.numpy as jnp
    except Exception:  # noqa: BLE001 - no jax: no column
        return None
    jax.config.update("jax_enable_x64", x64)
    return jax, {name: jax.jit(fn) for name, fn in row_fns(jnp).items()}


def rowwise_rows(quick: bool = False) -> list[Row]:
    """The row softmax/layernorm rows: ``@nd.jit`` (Numba) vs NumPy eager and vs ``jax.jit``."""
    min_time = 0.1 if quick else 0.3
    rows: list[Row] = []
    fns = row_fns(np)
    jitted = {name: nd.jit(fn, backend="numba") for name, fn in fns.items()}
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64"):
        jx = _jax(dtype == "float64")
        for shape in ((512, 1024), (4096, 1024)):
            x = rng.standard_normal(shape).astype(dtype)
            g = rng.standard_normal(shape[-1]).astype(dtype)
            b = rng.standard_normal(shape[-1]).astype(dtype)
            for name, fn in fns.items():
                args = (x,) if name == "softmax" else (x, g, b)
                f = jitted[name]
                f.compile(*args)
                case = f"row {name} {shape[0]}x{shape[1]} {dtype}"
                base: list[tuple[str, Any]] = [("numpy eager", lambda fn=fn, args=args: fn(*args))]
                if jx is not None:
                    jax, jf = jx
                    jargs = [jax.numpy.asarray(a) for a in args]
                    jf[name](*jargs).block_until_ready()
                    base.append(("jax.jit", lambda jf=jf[name], jargs=jargs: jf(*jargs).block_until_ready()))
                t_np = None
                for bname, bfn in base:
                    t_ours, t_base = time_pair(lambda f=f, args=args: f(*args), bfn, min_time=min_time)
                    if bname == "numpy eager":
                        t_np = t_base
                    extra = {"baseline_vs_numpy": t_np.min / t_base.min} if t_np is not None else {}
                    rows.append(Row("jit", case, "@nd.jit [numba]", bname, t_ours, t_base, extra=extra))
    return rows


if __name__ == "__main__":
    for row in rowwise_rows("--quick" in sys.argv):
        print(f"{row.case:34s} vs {row.baseline:12s} {row.ratio:5.2f}x  "
              f"(ours {row.candidate_time.min * 1e3:.2f} ms, baseline {row.baseline_time.min * 1e3:.2f} ms)")
