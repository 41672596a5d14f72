"""Hand-built specs shared by the backend tests (what the front end will lower to)."""

from __future__ import annotations

from noodle.backends.spec import Instr, KernelSpec, MatmulSpec, Reduce


def chain(n: int, dt: str = "float64") -> KernelSpec:
    """``a*b + c*d - 0.5*exp(-e)``, the issue's benchmark chain."""
    s = (n,)
    body = (
        Instr("multiply", (0, 1), dt), Instr("multiply", (2, 3), dt), Instr("add", (6, 7), dt),
        Instr("negative", (4,), dt), Instr("exp", (9,), dt), Instr("multiply", (5, 10), dt),
        Instr("subtract", (8, 11), dt),
    )
    return KernelSpec(tuple((dt, s) for _ in range(5)), ((dt, 0.5),), body, (12,), s)


def sum_abc(n: int, dt: str = "float64") -> KernelSpec:
    """``sum(a*b + c)``."""
    s = (n,)
    body = (Instr("multiply", (0, 1), dt), Instr("add", (3, 2), dt))
    return KernelSpec(tuple((dt, s) for _ in range(3)), (), body, (), s,
                      reduce=Reduce("sum", 4, None, False, dt, ()))


def bias_relu(m: int, n: int, dt: str = "float64") -> KernelSpec:
    """Epilogue ``maximum(p + bias, 0)`` with the product as input 0."""
    body = (Instr("add", (0, 1), dt), Instr("maximum", (3, 2), dt))
    return KernelSpec(((dt, (m, n)), (dt, (n,))), ((dt, 0.0),), body, (4,), (m, n))


def matmul_bias_relu(m: int, k: int, n: int, dt: str = "float64") -> MatmulSpec:
    return MatmulSpec((dt, (m, k)), (dt, (k, n)), dt, (m, n), bias_relu(m, n, dt))
