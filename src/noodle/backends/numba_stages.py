"""Source of the ``stages`` loop shape of the Numba code generator (planned in
:mod:`noodle.backends.numba_plan`).

Why a separate step: Numba's ``exp`` (and ``log``, ``sin``, ``cos``, ``tanh``)
is a scalar libm call (llvmlite from PyPI has no SVML), about 5x slower on this
machine than NumPy's SIMD ufunc loops. A fused region that contains such ops on
varying values is split into serial ``nogil`` Numba stages; between two stages
NumPy's ufunc evaluates the transcendental op on a cache-sized block (``BLOCK``
elements) into a per-thread scratch buffer. The driver in
:mod:`noodle.backends.numba_cpu` runs the blocks on a few threads; spaces of one
block get a generated driver (``run1``) with every step spelled out.

Generic over lengths (a plan from :func:`noodle.backends.numba_plan.generic`): a 1-D stage
needs only its block ``[lo, hi)``; an N-d one also takes the collapsed extents as ``dims``.

Example::

    >>> from noodle.backends.spec import Instr, KernelSpec
    >>> from noodle.backends.numba_plan import emitter, plan
    >>> spec = KernelSpec((("float64", (8,)),), (), (Instr("exp", (0,), "float64"),), (1,), (8,))
    >>> p = plan(spec)
    >>> src = gen_stages(spec, p, emitter(spec, p), ["i0"], ["o0"], ["float64[::1]"], ["float64[::1]"])
    >>> src[0]
    '@njit("void(int64, int64, float64[::1], float64[::1])", **_OPTS)'
"""

from __future__ import annotations

import re

import numpy as np

from noodle.backends.numba_emit import (
    Emitter,
    float_literal,
    indent,
    lane_reduce,
    sig_array,
    uses_chunk_buffer,
)
from noodle.backends.numba_plan import BLOCK, NumbaStep, Plan, UfuncStep, stride_defs, unstaged_inputs
from noodle.backends.op_text import is_float
from noodle.backends.spec import KernelSpec
from noodle.ir.reduction import CHUNK


def gen_stages(spec: KernelSpec, p: Plan, e: Emitter, in_args: list[str], out_args: list[str],
                in_sig: list[str], out_sig: list[str]) -> list[str]:
    """Serial nogil Numba stage functions over one block ``[lo, hi)``; the driver calls ufuncs between."""
    scratch = p.scratch
    red = spec.reduce
    t_args = [f"t{j}" for j in range(p.n_scratch)]
    t_sig = [sig_array(d) for d in p.scratch_dtypes]
    src: list[str] = []
    for step in p.stages:
        if not isinstance(step, NumbaStep):
            continue
        final = step.final
        targets = set(step.writes)
        if final:
            targets |= e.targets()
        nd = len(p.shape)
        if nd <= 1:
            load = e.loads(["i"] * e.n_in)
        else:  # per-row slices (stride 1), row-broadcast scalars (stride 0)
            load = {}
            for k in range(e.n_in):
                if not e.uni[k]:
                    st = p.in_strides[k][-1]
                    load[k] = f"w{k}[j]" if st == 1 else f"s{k}" if st == 0 else f"i{k}[b{k} + (rs + j) * {st}]"
        pos = "i" if nd <= 1 else "tb + j"
        for v, j in scratch.items():
            if v not in step.compute and v >= e.n_in:
                load[v] = f"t{j}[{pos}]"
        reduces = final and red is not None
        lines = e.hoisted(targets)
        body = e.body(targets, load, "")
        body += [f"t{scratch[v]}[{pos}] = v{v}" for v in step.writes]
        if final:
            body += e.store_outputs("i" if nd <= 1 else "j", "", "o" if nd <= 1 else "y")
        if reduces:
            # 1-D only (see plan): the block's chunks in the defined order, one value per chunk
            lines += [f"i{k} = i{k}[lo:hi]" for k in range(e.n_in) if not e.uni[k]]
            lines += [f"o{j} = o{j}[lo:hi]" for j in range(len(spec.outputs))]
            if uses_chunk_buffer(spec, p.acc_dtype):
                lines.append(f"buf = np.empty({CHUNK}, np.float64)")
            lines.append(f"for c in range((hi - lo + {CHUNK - 1}) // {CHUNK}):")
            chunk = [f"cs = c * {CHUNK}", f"m = min({CHUNK}, hi - lo - cs)"]
            computed = set(step.compute)

            def scratch_loads(ix: str, computed: set[int] = computed) -> dict[int, str]:
                return {v: f"t{j}[{ix}]" for v, j in scratch.items() if v not in computed and v >= e.n_in}

            chunk += lane_reduce(e, p.acc_dtype, targets, "cs", "m", lambda ix: e.loads([ix] * e.n_in), "o",
                                 scratch_loads)
            chunk.append(f"part[lo // {CHUNK} + c] = acc0")
            lines += indent(chunk, 1)
        elif nd <= 1:
            # slice to the block inside Numba: the loop index then starts at 0, so LLVM drops
            # the negative-index (wraparound) checks that otherwise block vectorization
            lines += [f"i{k} = i{k}[lo:hi]" for k in range(e.n_in) if not e.uni[k]]
            if final:
                lines += [f"o{j} = o{j}[lo:hi]" for j in range(len(spec.outputs))]
            lines.append("for i in range(hi - lo):")
            lines += indent(body or ["pass"], 1)
        else:
            lines += _indent_rows(spec, p, e, body, final)
        # pass a stage only the arrays it reads or writes: Numba's dispatcher checks every
        # argument on every call (~70 ns each), which is most of a small call
        lines, used = _only_used(lines, e.n_in, p.n_scratch, len(spec.outputs) if final else 0)
        dims = nd > 1    # an N-d stage walks rows: the extents (and strides from them) at run time
        if dims:
            lines = [f"d{d} = dims[{d}]" for d in range(nd)] + stride_defs(p) + lines
        step.args = used + ([("p", 0)] if reduces else []) + ([("d", 0)] if dims else [])
        sigs = {"i": in_sig, "t": t_sig, "o": out_sig}
        arg_sig = [sigs[kind][k] for kind, k in used] + ([sig_array(p.acc_dtype)] if reduces else [])
        arg_sig += ["int64[::1]"] if dims else []
        names = [f"{kind}{k}" for kind, k in used] + (["part"] if reduces else []) + (["dims"] if dims else [])
        src.append(f'@njit("void(int64, int64, {", ".join(arg_sig)})", **_OPTS)')
        src.append(f"def s{step.index}({', '.join(['lo', 'hi', *names])}):")
        src += indent(lines, 1)
        src.append("")
    # what each stage takes: a kernel built from this module for another shape of the class
    # binds its steps from here (its plan's stages were not the ones the source was written from)
    args = {st.index: st.args for st in p.stages if isinstance(st, NumbaStep)}
    src += [f"STEP_ARGS = {args!r}", ""]
    # the drivers of spaces of at most one block (the kernel picks them by the run-time size)
    src += _one_block_driver(spec, p, in_args, out_args, t_args)
    src += _one_block_native(spec, p, in_args, out_args, in_sig, out_sig)
    return src


def _loop_operand(spec: KernelSpec, p: Plan, src: tuple, consts: list[str]) -> tuple[str, str, str]:
    """A ufunc step's operand over block ``[b0, b1)`` in compiled code: (address, byte stride,
    dtype); a constant becomes a one-element array made in the driver (appended to ``consts``)."""
    kind = src[0]
    if kind in ("in", "u"):
        dtype = spec.inputs[src[1]][0]
        size = np.dtype(dtype).itemsize
        if kind == "u":
            return f"i{src[1]}.ctypes.data", "0", dtype
        return f"i{src[1]}.ctypes.data + b0 * {size}", str(size), dtype
    if kind == "t":
        dtype = p.scratch_dtypes[src[1]]
        return f"t{src[1]}.ctypes.data", str(np.dtype(dtype).itemsize), dtype
    name, dtype, value = f"k{len(consts)}", src[1], src[2]
    lit = repr(bool(value)) if dtype == "bool" else (
        float_literal(float(value)) if is_float(dtype) else repr(int(value)))
    consts.append(f"{name} = np.full(1, {lit}, np.{dtype})")
    return f"{name}.ctypes.data", "0", dtype


def _one_block_native(spec: KernelSpec, p: Plan, in_args: list[str], out_args: list[str], in_sig: list[str],
                      out_sig: list[str]) -> list[str]:
    """``runb`` (the blocks of ``[lo, hi)`` into the caller's scratch), ``run1n`` (and ``run1an``
    for 1-D layouts): the Python drivers compiled, their ufunc steps through NumPy's own loops
    (:mod:`noodle.backends.numpy_loops`, one ``[fn, context, auxdata]`` triple per step in ``lp``,
    in the order of ``LOOPS``).

    Why: on 16 elements the Python driver is most of the call (two stage dispatches, the ufunc
    call, the allocations: ~2 µs); compiled, one dispatch is left; a large space pays one call
    per block instead of one per step. None where a step casts (the loop would not be NumPy's
    for those operands): the kernel keeps the Python drivers."""
    if any(isinstance(st, UfuncStep) and st.cast for st in p.stages):
        return []
    consts: list[str] = []
    loops: list[tuple[str, tuple[str, ...]]] = []
    calls: list[str] = []
    for step in p.stages:
        if isinstance(step, UfuncStep):
            ops = [_loop_operand(spec, p, src, consts) for src in step.srcs]
            if len(ops) not in (1, 2):
                return []
            size = np.dtype(step.dtype).itemsize
            k = len(loops)
            loops.append((step.fn, (*(d for _, _, d in ops), step.dtype)))
            flat = [x for addr, stride, _ in ops for x in (addr, stride)]
            fn = "call2" if len(ops) == 1 else "call3"
            calls.append(f"if not {fn}(lp[{3 * k}:{3 * k + 3}], {', '.join(flat)}, t{step.dst}.ctypes.data, "
                         f"{size}, m, buf):")
            calls.append("    raise ExecutionError('a NumPy inner loop failed in a fused kernel')")
        else:
            names = {"p": "part", "d": "dims"}
            args = ["b0", "b1"] + [names.get(kind, f"{kind}{k}") for kind, k in step.args]
            calls.append(f"s{step.index}({', '.join(args)})")
    if not loops:
        return []
    part, part_sig = (["part"], [sig_array(p.acc_dtype)]) if spec.reduce is not None else ([], [])
    t_args = [f"t{j}" for j in range(p.n_scratch)]
    t_sig = [sig_array(d) for d in p.scratch_dtypes]
    head = ["n", "dims", *in_args, *out_args, *part]
    sig = ", ".join(["int64", "int64[::1]", *in_sig, *out_sig, *part_sig])
    lines = ["from noodle.backends.numpy_loops_call import call2, call3", "from noodle.errors import ExecutionError",
             f"LOOPS = {loops!r}", "", f'@njit("void(int64, {sig}, {", ".join(t_sig)}, int64[::1])", **_OPTS)',
             f"def runb({', '.join(['lo', 'hi', *head[1:], *t_args, 'lp'])}):"]
    lines += indent([*consts, "buf = np.empty(8, np.int64)", f"for b0 in range(lo, hi, {BLOCK}):",
                     *indent([f"b1 = min(hi, b0 + {BLOCK})", "m = b1 - b0", *calls], 1)], 1)
    lines += ["", f'@njit("void({sig}, int64[::1])", **_OPTS)', f"def run1n({', '.join([*head, 'lp'])}):"]
    # spelled out rather than a call of runb: Numba does not inline it, and a call is a tenth of
    # a 16-element call here
    lines += indent([*(f"t{j} = np.empty(n, np.{d})" for j, d in enumerate(p.scratch_dtypes)), *consts,
                     "buf = np.empty(8, np.int64)", "b0 = 0", "b1 = n", "m = n", *calls], 1)
    lines.append("")
    if len(p.shape) != 1:
        return lines
    # run1an: run1a compiled (its size checks, its outputs); a wrong dtype or layout is a
    # TypeError from Numba's dispatcher (explicit signature), a wrong size one raised here
    uni = [all(st == 0 for st in strides) for strides in p.in_strides]
    check = " or ".join(f"i{k}.shape[0] != {1 if uni[k] else 'n'}" for k in range(len(in_args)))
    alloc = [f"o{j} = np.empty(n, np.{spec.dtype_of(v)})" for j, v in enumerate(spec.outputs)]
    if spec.reduce is not None:
        alloc.append(f"part = np.empty(max(1, (n + {CHUNK - 1}) // {CHUNK}), np.{p.acc_dtype})")
    rets = out_sig + part_sig
    ret = f"Tuple(({', '.join(rets)},))"
    asig = ", ".join(["int64", "int64[::1]", *in_sig, "int64[::1]"])
    lines += [f'@njit("{ret}({asig})", **_OPTS)', f"def run1an({', '.join(['n', 'dims', *in_args, 'lp'])}):"]
    lines += indent([f"if {check or 'False'}:", "    raise TypeError('input sizes do not match the kernel')",
                     *alloc, f"run1n({', '.join(['n', 'dims', *in_args, *out_args, *part, 'lp'])})",
                     f"return ({', '.join(out_args + part)},)"], 1)
    return lines + [""]


_NAME = re.compile(r"\b([ito])(\d+)\b")


def _only_used(lines: list[str], n_in: int, n_scratch: int, n_out: int) -> tuple[list[str], list[tuple[str, int]]]:
    """Drop the block-slicing lines of arrays a stage does not use; the arrays it does, in
    argument order (inputs, scratch, outputs)."""
    slicing = re.compile(r"^\s*([io])(\d+) = \1\2\[lo:hi\]$")
    body = [ln for ln in lines if not slicing.match(ln)]
    seen = {(m.group(1), int(m.group(2))) for ln in body for m in _NAME.finditer(ln)}
    keep = []
    for ln in lines:
        m = slicing.match(ln)
        if m is None or (m.group(1), int(m.group(2))) in seen:
            keep.append(ln)
    limits = {"i": n_in, "t": n_scratch, "o": n_out}
    used = [(kind, k) for kind in ("i", "t", "o") for k in range(limits[kind]) if (kind, k) in seen]
    return keep, used


def _one_block_driver(spec: KernelSpec, p: Plan, in_args: list[str], out_args: list[str],
                      t_args: list[str]) -> list[str]:
    """``run1(n, dims, ...)``: the whole space of ``n`` elements as one block, in plain Python
    with every step spelled out (the caller uses it for ``n <= BLOCK``).

    Why: a small call is dominated by the generic driver's per-step lookups (~4 µs of a 6 µs
    call on 16 elements); spelled out, what is left is the stage and ufunc calls themselves.
    """
    consts: list[str] = []
    body = [f"t{j} = np.empty(n, np.{d})" for j, d in enumerate(p.scratch_dtypes)]
    part = ["part"] if spec.reduce is not None else []
    for step in p.stages:
        if isinstance(step, UfuncStep):
            operands = []
            for src in step.srcs:
                if src[0] == "in":
                    operands.append(f"i{src[1]}")
                elif src[0] == "t":
                    operands.append(f"t{src[1]}")
                elif src[0] == "u":
                    operands.append(f"i{src[1]}[:1]")
                else:
                    name = f"_C{len(consts)}"
                    value = src[2]
                    lit = repr(bool(value)) if src[1] == "bool" else (
                        float_literal(float(value)) if is_float(src[1]) else repr(int(value)))
                    consts.append(f"{name} = np.asarray({lit}, dtype=np.{src[1]})")
                    operands.append(name)
            cast = f", dtype=np.{step.dtype}" if step.cast else ""
            body.append(f"np.{step.fn}({', '.join(operands)}, out=t{step.dst}{cast})")
        else:
            names = {"p": "part", "d": "dims"}
            args = ["0", "n"] + [names.get(kind, f"{kind}{k}") for kind, k in step.args]
            body.append(f"s{step.index}({', '.join(args)})")
    lines = consts + [f"def run1({', '.join(['n', 'dims', *in_args, *out_args, *part])}):"]
    lines += indent(body, 1)
    lines.append("")
    if len(p.shape) != 1:
        return lines
    # run1a (1-D layouts): checks the input sizes itself (a wrong one raises TypeError: the
    # kernel's slow path then names it) and allocates the outputs, for small calls; returns
    # outputs (+ partials)
    uni = [all(st == 0 for st in strides) for strides in p.in_strides]
    check = " or ".join(f"i{k}.shape[0] != {1 if uni[k] else 'n'} or i{k}.ndim != 1" for k in range(len(in_args)))
    # Numba's dispatcher checks the dtype of what a stage reads; an input only a ufunc reads is
    # checked here (a float32 array where float64 is compiled must not be computed with)
    check += "".join(f" or i{k}.dtype != np.{spec.inputs[k][0]}" for k in unstaged_inputs(p, len(spec.inputs)))
    alloc = [f"o{j} = np.empty(n, np.{spec.dtype_of(v)})" for j, v in enumerate(spec.outputs)]
    if spec.reduce is not None:
        alloc.append(f"part = np.empty(max(1, (n + {CHUNK - 1}) // {CHUNK}), np.{p.acc_dtype})")
    lines.append(f"def run1a({', '.join(['n', 'dims', *in_args])}):")
    lines += indent([f"if {check or 'False'}:", "    raise TypeError('input sizes do not match the kernel')",
                     *alloc, f"run1({', '.join(['n', 'dims', *in_args, *out_args, *part])})",
                     f"return ({', '.join(out_args + part)},)"], 1)
    return lines + [""]


def _indent_rows(spec: KernelSpec, p: Plan, e: Emitter, body: list[str], final: bool) -> list[str]:
    """The block ``[lo, hi)`` of an N-d space, walked row by row (a row may straddle blocks)."""
    shape = p.shape
    last = shape[-1]
    lines = [f"for r in range(lo // {last}, (hi - 1) // {last} + 1):"]
    row = [f"rs = max(lo, r * {last}) - r * {last}", f"re = min(hi, r * {last} + {last}) - r * {last}",
           f"tb = r * {last} + rs - lo", "q0 = r"]
    varying = [k for k in range(e.n_in) if not e.uni[k]]
    row += [f"b{k} = 0" for k in varying]
    for lvl, d in enumerate(range(len(shape) - 2, -1, -1)):
        row.append(f"x{lvl} = q{lvl} % {shape[d]}")
        row.append(f"q{lvl + 1} = q{lvl} // {shape[d]}")
        for k in varying:
            if p.in_strides[k][d]:
                row.append(f"b{k} += x{lvl} * {p.in_strides[k][d]}")
    for k in varying:
        st = p.in_strides[k][-1]
        if st == 1:
            row.append(f"w{k} = i{k}[b{k} + rs:b{k} + re]")
        elif st == 0:
            row.append(f"s{k} = i{k}[b{k}]")
    if final:
        row += [f"y{j} = o{j}[r * {last} + rs:r * {last} + re]" for j in range(len(spec.outputs))]
    row.append("for j in range(re - rs):")
    row += indent(body or ["pass"], 1)
    return lines + indent(row, 1)


__all__ = ["gen_stages"]
