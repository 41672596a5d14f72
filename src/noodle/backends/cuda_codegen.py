"""CUDA C source generation for one :class:`KernelSpec` (no CuPy needed).

Why a separate module: the source is plain text that can be compile-checked
with ``nvcc`` on a machine without a GPU (the tests do), while running it needs
CuPy and a device (:mod:`noodle.backends.cuda_gpu`).

Kernel shapes (all sizes and strides are literals):

* ``elementwise``: a grid-stride loop over the flat index; each input is read
  at an offset computed from the collapsed broadcast layout (stride 0 on
  broadcast axes), so nothing is materialized;
* ``full reduction``: the same loop accumulates per thread, a shared-memory
  tree combines the block, thread 0 writes one partial per block; the host
  combines the partials (``partials.sum()`` etc.);
* ``axis reduction``: one thread per kept element loops over the reduced
  elements (outputs at full shape are written in the same loop).

Float sums accumulate in double (also for float32), like the CPU backend.
"""

from __future__ import annotations

import math

import numpy as np

from noodle.backends.emit_rules import Elementwise, Library, Reduction, comparisons, lone_nodes, lookup, views
from noodle.backends.layout import spec_layout
from noodle.backends.op_text import (
    arith_symbol,
    cast_pair,
    check_integer_power,
    check_portable_casts,
    infix,
    is_float,
    truth,
)
from noodle.backends.spec import KernelSpec
from noodle.errors import DTypeError
from noodle.ir.ops import OPS
from noodle.ir.reduction import acc_dtype, identity

C_TYPES = {
    "float32": "float", "float64": "double", "int8": "signed char", "int16": "short", "int32": "int",
    "int64": "long long", "uint8": "unsigned char", "uint16": "unsigned short", "uint32": "unsigned int",
    "uint64": "unsigned long long", "bool": "bool",
}
BLOCK_THREADS = 256

_HELPERS = r"""
#ifndef NOODLE_HELPERS
#define NOODLE_HELPERS
template <typename T> __device__ __forceinline__ T nd_max(T a, T b) { return (a > b || a != a) ? a : b; }
template <typename T> __device__ __forceinline__ T nd_min(T a, T b) { return (a < b || a != a) ? a : b; }
template <typename T> __device__ __forceinline__ T nd_imax(T a, T b) { return a >= b ? a : b; }
template <typename T> __device__ __forceinline__ T nd_imin(T a, T b) { return a <= b ? a : b; }
template <typename T> __device__ __forceinline__ T nd_iabs(T a) { return a < 0 ? (T)(-a) : a; }
template <typename T> __device__ __forceinline__ T nd_ipow(T base, T e) {
    if (e < 0) return (T)0;
    T r = 1;
    while (e) { if (e & 1) r *= base; base *= base; e >>= 1; }
    return r;
}
#endif
"""

def c_type(dtype: str) -> str:
    try:
        return C_TYPES[dtype]
    except KeyError:
        raise DTypeError(f"the CUDA backend does not support dtype {dtype!r}; "
                         f"supported: {', '.join(sorted(C_TYPES))}") from None


def c_literal(dtype: str, value: float | int | bool) -> str:
    """A C literal of ``dtype`` (inf and nan spelled through bit patterns: no headers needed)."""
    if dtype == "bool":
        return "true" if value else "false"
    if is_float(dtype):
        v = float(value)
        if math.isnan(v) or math.isinf(v):
            if dtype == "float32":
                bits = {"nan": 0x7FC00000, "inf": 0x7F800000, "-inf": 0xFF800000}[repr(v)]
                return f"__int_as_float({bits:#x})"
            bits = {"nan": 0x7FF8000000000000, "inf": 0x7FF0000000000000,
                    "-inf": 0xFFF0000000000000}[repr(v)]
            return f"__longlong_as_double({bits:#x}LL)"
        return f"{v!r}f" if dtype == "float32" else repr(v)
    iv = int(value)
    if dtype == "int64" and iv == -(2 ** 63):
        return "(-9223372036854775807LL - 1)"
    suffix = {"int64": "LL", "uint64": "ULL", "uint32": "U"}.get(dtype, "")
    return f"(({c_type(dtype)}){iv}{suffix})"


def _cast(x: str, have: str, want: str) -> str:
    if have == want:
        return x
    if want == "bool":
        return f"({x} != 0)"
    return f"(({c_type(want)}){x})"


# ------------------------------------------------------------------------------ the op table
def _arith(op: str) -> Elementwise:
    return Elementwise(lambda args, dts, out: infix(arith_symbol(op, out), args, dts, out, _cast))


def _power(args: list[str], dts: list[str], out: str) -> str:
    a, b = cast_pair(args, dts, out, _cast)
    return f"pow({a}, {b})" if is_float(out) else f"nd_ipow<{c_type(out)}>({a}, {b})"


def _extreme(op: str) -> Elementwise:
    def emit(args: list[str], dts: list[str], out: str) -> str:
        a, b = cast_pair(args, dts, out, _cast)
        return f"{_extreme_fn(op, out)}<{c_type(out)}>({a}, {b})"
    return Elementwise(emit)


def _extreme_fn(op: str, dtype: str) -> str:
    """The helper for maximum/max (minimum/min): NaN-propagating for floats."""
    big = op in ("maximum", "max")
    if is_float(dtype):
        return "nd_max" if big else "nd_min"
    return "nd_imax" if big else "nd_imin"


def _abs(args: list[str], dts: list[str], out: str) -> str:
    a = _cast(args[0], dts[0], out)
    return f"fabs({a})" if is_float(out) else f"nd_iabs<{c_type(out)}>({a})"


def _math(op: str) -> Elementwise:
    fn = OPS[op].numpy   # CUDA's math library has NumPy's names (overloaded for float and double)
    return Elementwise(lambda args, dts, out: f"{fn}({_cast(args[0], dts[0], out)})")


def _where(args: list[str], dts: list[str], out: str) -> str:
    c = truth(args[0], dts[0])
    return f"({c} ? {_cast(args[1], dts[1], out)} : {_cast(args[2], dts[2], out)})"


def _extreme_update(op: str) -> Reduction:
    return Reduction(lambda acc, x, acc_dt: f"{acc} = {_extreme_fn(op, acc_dt)}<{c_type(acc_dt)}>({acc}, {x});")


#: op name -> its translation in generated CUDA C (elementwise expressions, accumulator updates,
#: cuBLAS for products, views for shape ops)
CUDA_OPS = {
    "add": _arith("add"), "subtract": _arith("subtract"), "multiply": _arith("multiply"),
    "divide": _arith("divide"), "power": Elementwise(_power),
    "maximum": _extreme("maximum"), "minimum": _extreme("minimum"),
    **comparisons(_cast),
    "negative": Elementwise(lambda args, dts, out: f"(-{_cast(args[0], dts[0], out)})"),
    "abs": Elementwise(_abs),
    "exp": _math("exp"), "log": _math("log"), "sqrt": _math("sqrt"), "sin": _math("sin"), "cos": _math("cos"),
    "tanh": _math("tanh"),
    "where": Elementwise(_where),
    "astype": Elementwise(lambda args, dts, out: _cast(args[0], dts[0], out)),
    "sum": Reduction(lambda acc, x, acc_dt: f"{acc} += {x};"),
    "mean": Reduction(lambda acc, x, acc_dt: f"{acc} += {x};"),
    "max": _extreme_update("max"), "min": _extreme_update("min"),
    "matmul": Library("cupy.matmul"),
    **views("cupy"),
    **lone_nodes(),
}


def op_expr(op: str, args: list[str], dts: list[str], out: str) -> str:
    """One elementwise op as a CUDA C expression (NumPy semantics)."""
    return lookup(CUDA_OPS, "cuda", op, Elementwise).expr(args, dts, out)


def kernel_name(spec: KernelSpec) -> str:
    return f"noodle_{spec.key()}"


def _acc_update(op: str, acc: str, val: str, acc_dt: str) -> str:
    return lookup(CUDA_OPS, "cuda", op, Reduction).update(acc, val, acc_dt)


def _acc_init(op: str, acc_dt: str) -> str:
    return c_literal(acc_dt, identity(op, acc_dt))


def cuda_source(spec: KernelSpec, inplace: bool = False) -> str:
    """CUDA C source of one ``extern "C"`` kernel for ``spec`` (see the module docstring).

    Arguments of the kernel, in order: inputs, full-shape outputs, then (with a
    reduction) the partials array (accumulator dtype). ``inplace`` drops
    ``__restrict__`` so output 0 may alias input 0 (matmul epilogues).
    """
    check_integer_power(spec)
    check_portable_casts(spec)
    lay = spec_layout(spec, c_type)
    red = spec.reduce
    shape, cshape, cred, n = lay.shape, lay.cshape, lay.reduced, lay.n
    in_str, o_str = lay.in_strides, lay.out_strides
    n_in, n_c = len(spec.inputs), len(spec.consts)
    base = n_in + n_c
    restrict = "" if inplace else " __restrict__"
    params = [f"const {c_type(d)}*{restrict} i{k}" for k, (d, _) in enumerate(spec.inputs)]
    params += [f"{c_type(spec.dtype_of(v))}*{restrict} o{j}" for j, v in enumerate(spec.outputs)]
    acc_dt = ""
    if red is not None:
        acc_dt = acc_dtype(red.op, spec.dtype_of(red.value))
        params.append(f"{c_type(acc_dt)}* partials")

    def offsets(idx: str, dims: list[int], ind: str) -> list[str]:
        lines = [f"{ind}long long q = {idx};"]
        for d in reversed(dims):
            lines.append(f"{ind}{{ long long x = q % {cshape[d]}LL; q /= {cshape[d]}LL;")
            for k in range(n_in):
                if in_str[k][d]:
                    lines.append(f"{ind}  b{k} += x * {in_str[k][d]}LL;")
            lines.append(f"{ind}  ob += x * {o_str[d]}LL; }}")
        return lines

    def body(ind: str) -> list[str]:
        lines = [f"{ind}const {c_type(d)} v{k} = i{k}[b{k}];" for k, (d, _) in enumerate(spec.inputs)]
        for c, (d, v) in enumerate(spec.consts):
            lines.append(f"{ind}const {c_type(d)} v{n_in + c} = {c_literal(d, v)};")
        for i, ins in enumerate(spec.body):
            expr = op_expr(ins.op, [f"v{a}" for a in ins.args], [spec.dtype_of(a) for a in ins.args], ins.dtype)
            lines.append(f"{ind}const {c_type(ins.dtype)} v{base + i} = {expr};")
        for j, v in enumerate(spec.outputs):
            lines.append(f"{ind}o{j}[ob] = v{v};")
        if red is not None:
            val = _cast(f"v{red.value}", spec.dtype_of(red.value), acc_dt)
            lines.append(f"{ind}{_acc_update(red.op, 'acc', val, acc_dt)}")
        return lines

    name = kernel_name(spec)
    src = [_HELPERS, f"// noodle kernel {spec.key()}: shape {shape}, collapsed {cshape}", f'extern "C" __global__ void {name}(',
           "    " + ",\n    ".join(params) + ") {"]
    zero = [f"    long long b{k} = 0;" for k in range(n_in)] + ["    long long ob = 0;"]
    full = red is None or all(cred)
    all_dims = list(range(len(cshape)))
    if full:
        if red is not None:
            src.append(f"    {c_type(acc_dt)} acc = {_acc_init(red.op, acc_dt)};")
        src.append("    const long long stride = (long long)blockDim.x * gridDim.x;")
        src.append(f"    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < {n}LL; idx += stride) {{")
        src += ["    " + z for z in zero]
        src += offsets("idx", all_dims, "        ")
        src += body("        ")
        src.append("    }")
        if red is not None:
            src += [
                f"    __shared__ {c_type(acc_dt)} sh[{BLOCK_THREADS}];",
                "    sh[threadIdx.x] = acc;",
                "    __syncthreads();",
                f"    for (int s = {BLOCK_THREADS // 2}; s > 0; s >>= 1) {{",
                "        if (threadIdx.x < s) {",
                "            " + _acc_update(red.op, "sh[threadIdx.x]", "sh[threadIdx.x + s]", acc_dt),
                "        }",
                "        __syncthreads();",
                "    }",
                "    if (threadIdx.x == 0) partials[blockIdx.x] = sh[0];",
            ]
    else:
        assert red is not None
        kept = [d for d in all_dims if not cred[d]]
        rdims = [d for d in all_dims if cred[d]]
        n_kept = int(np.prod([cshape[d] for d in kept]))
        n_red = int(np.prod([cshape[d] for d in rdims]))
        src.append("    const long long kidx = (long long)blockIdx.x * blockDim.x + threadIdx.x;")
        src.append(f"    if (kidx >= {n_kept}LL) return;")
        src += [f"    long long kb{k} = 0;" for k in range(n_in)] + ["    long long kob = 0;"]
        src.append("    {")
        src += [f"        long long b{k} = 0;" for k in range(n_in)] + ["        long long ob = 0;"]
        src += offsets("kidx", kept, "        ")
        src += [f"        kb{k} = b{k};" for k in range(n_in)] + ["        kob = ob;", "    }"]
        src.append(f"    {c_type(acc_dt)} acc = {_acc_init(red.op, acc_dt)};")
        src.append(f"    for (long long ridx = 0; ridx < {n_red}LL; ++ridx) {{")
        src += [f"        long long b{k} = kb{k};" for k in range(n_in)] + ["        long long ob = kob;"]
        src += offsets("ridx", rdims, "        ")
        src += body("        ")
        src.append("    }")
        src.append("    partials[kidx] = acc;")
    src.append("}")
    return "\n".join(src) + "\n"


def launch_shape(spec: KernelSpec, sm_count: int = 132) -> tuple[int, int, int]:
    """(blocks, threads, partial count) to launch ``spec``'s kernel with."""
    shape = tuple(spec.shape)
    n = int(np.prod(shape)) if shape else 1
    red = spec.reduce
    if red is not None:
        nd = len(shape)
        axes = tuple(range(nd)) if red.axes is None else tuple(a % nd for a in red.axes)
        kept = int(np.prod([shape[d] for d in range(nd) if d not in axes])) if nd else 1
        if kept > 1:  # one thread per kept element (cuda_source's "axis reduction")
            blocks = max(1, -(-kept // BLOCK_THREADS))
            return blocks, BLOCK_THREADS, kept
    blocks = max(1, min(-(-n // BLOCK_THREADS), sm_count * 8))
    return blocks, BLOCK_THREADS, blocks


__all__ = ["BLOCK_THREADS", "CUDA_OPS", "c_literal", "cuda_source", "kernel_name", "launch_shape", "op_expr"]
