"""Op semantics shared by the code generators (Numba source and CUDA C).

Why one module: a fused kernel must compute the same answer on CPU and GPU, so
the NumPy rules the generated expressions follow (which ops exist, the dtype a
comparison is made in, what counts as true) are written once. Each generator
passes its own ``cast(name, have_dtype, want_dtype) -> str`` for the syntax;
infix arithmetic and comparisons read the same in Python and C.

Example::

    >>> compare_dtype(["int32", "float32"])
    'float64'
    >>> infix("<", ["a", "b"], ["int32", "int32"], "int32", lambda x, have, want: x)
    '(a < b)'
    >>> symbol("less_equal")
    '<='
    >>> truth("v0", "int8")
    '(v0 != 0)'
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from noodle.backends.spec import KernelSpec
from noodle.errors import CompileError
from noodle.ir.ops import OPS

Cast = Callable[[str, str, str], str]


def symbol(op: str) -> str:
    """The infix symbol of ``op`` from the op table (``+``, ``<=``...); the same in Python and C."""
    sym = OPS[op].symbol
    if sym is None:
        raise CompileError(f"op {op!r} has no infix symbol in the op table")
    return sym


#: NumPy's add and multiply of bools are logical or and and (True + True is True); ``+`` on two
#: booleans in generated Numba or C++ is an integer (2), which a cast or a comparison read as 2
_BOOL_SYMBOLS = {"add": "|", "multiply": "&"}


def arith_symbol(op: str, out: str) -> str:
    """The infix operator of arithmetic ``op`` whose result has dtype ``out``."""
    return _BOOL_SYMBOLS.get(op, symbol(op)) if out == "bool" else symbol(op)


def is_float(dtype: str) -> bool:
    """True for the float dtypes the generators support (float32, float64)."""
    return dtype in ("float32", "float64")


def cast_pair(args: list[str], dts: list[str], want: str, cast: Cast) -> tuple[str, str]:
    """Both operands of a binary op, each cast to ``want``."""
    a, b = (cast(x, d, want) for x, d in zip(args, dts, strict=True))
    return a, b


def infix(sym: str, args: list[str], dts: list[str], want: str, cast: Cast) -> str:
    """``(a sym b)`` with both operands cast to ``want`` (the same text in Python and C)."""
    a, b = cast_pair(args, dts, want, cast)
    return f"({a} {sym} {b})"


def compare_dtype(dts: list[str]) -> str:
    """The dtype NumPy compares operands of ``dts`` in (their result type)."""
    return str(np.result_type(*[np.dtype(d) for d in dts]))


def truth(name: str, dtype: str) -> str:
    """``name`` as a condition: bools as they are, anything else compared with zero."""
    return name if dtype == "bool" else f"({name} != 0)"


def check_integer_power(spec: KernelSpec) -> None:
    """NumPy raises on an integer to a negative integer power; a kernel would return a number."""
    n_in = len(spec.inputs)
    for ins in spec.body:
        if ins.op != "power" or is_float(ins.dtype):
            continue
        e = ins.args[1]
        const = spec.consts[e - n_in] if n_in <= e < n_in + len(spec.consts) else None
        if const is None or const[1] < 0:
            raise CompileError("integer ** with an exponent that is not a constant >= 0: NumPy raises on a "
                               "negative one, which the kernel does not check; it runs interpreted")


def check_portable_casts(spec: KernelSpec) -> None:
    """A float cast to uint32/uint64 has no portable result for negative, NaN or out-of-range values
    (NumPy's compiled loop and LLVM's ``fptoui`` give different bits): such casts run interpreted."""
    for ins in spec.body:
        if ins.op == "astype" and ins.dtype in ("uint32", "uint64") and is_float(spec.dtype_of(ins.args[0])):
            raise CompileError(f"a float -> {ins.dtype} cast would not give NumPy's bits for out-of-range "
                               "values in a kernel; it runs interpreted")


__all__ = ["arith_symbol", "cast_pair", "check_integer_power", "check_portable_casts", "compare_dtype", "infix",
           "is_float", "symbol", "truth"]
