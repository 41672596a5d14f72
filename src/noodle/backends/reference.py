"""Evaluate a spec with plain NumPy: the oracle the backends are tested against.

Why here and not only in tests: a backend also needs a correct path for cases
its generated code does not cover (zero-size arrays, an op a target lacks), and
"fall back to NumPy" must mean the very same semantics the tests check.

Example::

    outs = evaluate(spec, a, b)      # same convention as Kernel.__call__
"""

from __future__ import annotations

from typing import Any

import numpy as np

from noodle.backends.spec import KernelSpec, MatmulSpec
from noodle.errors import CompileError
from noodle.ir.ops import op as op_def
from noodle.ir.reduction import reduce_values


def apply_op(name: str, args: list[Any], dtype: str, attrs: dict[str, Any]) -> Any:
    """One instruction with NumPy (the semantics every backend is checked against)."""
    dt = np.dtype(dtype)
    if name == "astype":
        return np.asarray(args[0]).astype(dt)
    if name == "where":
        cond = np.asarray(args[0]).astype(bool)
        return np.where(cond, np.asarray(args[1]).astype(dt), np.asarray(args[2]).astype(dt))
    row = op_def(name)
    if row.numpy is None:
        raise CompileError(f"op {name!r} has no NumPy definition")
    fn = getattr(np, row.numpy)
    if name in ("less", "less_equal", "greater", "greater_equal", "equal", "not_equal"):
        return fn(*args)
    with np.errstate(all="ignore"):
        cast = [np.asarray(a).astype(dt, copy=False) for a in args]
        return np.asarray(fn(*cast)).astype(dt, copy=False)


def evaluate(spec: KernelSpec, *inputs: Any) -> tuple[Any, ...]:
    """Run ``spec`` with NumPy ufuncs (temporaries and all)."""
    values: list[Any] = [np.asarray(x).reshape(s) for x, (_, s) in zip(inputs, spec.inputs, strict=True)]
    values += [np.asarray(v, dtype=d)[()] for d, v in spec.consts]
    for ins in spec.body:
        values.append(apply_op(ins.op, [values[a] for a in ins.args], ins.dtype, dict(ins.attrs)))
    outs: list[Any] = [np.broadcast_to(values[v], spec.shape).astype(spec.dtype_of(v)) for v in spec.outputs]
    if spec.reduce is not None:
        r = spec.reduce
        x = np.broadcast_to(values[r.value], spec.shape)
        res = reduce_values(r.op, x, r.axes, r.keepdims, r.dtype).reshape(r.shape)
        outs.append(res[()] if res.shape == () else res)
    return tuple(outs)


def evaluate_matmul(spec: MatmulSpec, a: Any, b: Any, *extra: Any) -> tuple[Any]:
    """``a @ b`` then the epilogue, with NumPy."""
    prod = np.matmul(np.asarray(a), np.asarray(b)).astype(spec.out_dtype, copy=False)
    if spec.epilogue is None:
        return (prod,)
    return (evaluate(spec.epilogue, prod, *extra)[0],)


__all__ = ["apply_op", "evaluate", "evaluate_matmul"]
