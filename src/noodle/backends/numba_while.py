"""A whole ``while_loop``, its condition and its body, as one compiled Numba function.

Why: an iteration of an iterative solver is a dozen small steps (a conjugate-gradient step on 800
unknowns: a matrix-vector product, two dot products, three vector updates, five scalar ops). Run
as a Python loop around the body's kernels, every step is a Python call, about 10 µs an iteration
here, which is more than the vector work. Compiled as one function, the loop, its scalar arithmetic
and its vector updates run with no Python in between, and each product calls NumPy's own
``matmul`` inner loop with the extents and strides NumPy would hand it, so the BLAS call it makes
(and so every bit) is NumPy's.

What is translated (anything else raises :class:`~noodle.errors.CompileError` naming it, and the
caller keeps its Python loop, which computes the same values):

- elementwise ops of the Numba column of the op table (arithmetic, comparisons, ``where``, casts)
  on 0-d values, which become scalars, and on arrays whose operands have the node's shape or are
  0-d; the nodes of one fusion group become one loop;
- ``exp``, ``log``, ``sin``, ``cos``, ``tanh`` and float ``power``: NumPy's own ufunc loop
  (:mod:`noodle.backends.numpy_loops`), as the fused kernels run them;
- ``matmul`` of 1-D and 2-D operands of the result's dtype;
- ``sum``, ``mean``, ``max`` and ``min`` of a whole array, in the defined order
  (:mod:`noodle.backends.numba_full_reduce`);
- basic slices (views, any step) and ``concatenate``: a stencil's neighbours and fixed ends. A
  libm op does not take a strided view (NumPy's loop would read it with its strides), and a
  carried value is never a view (its layout would change between iterations).

Reductions over some axes, shape ops, gathers and nested loops are not translated. The source holds no
extent, so one compiled function serves every length (its cache key is the source). A call whose
values are not what the function was compiled for (another dtype, a non-contiguous array) is
answered ``None``: the caller then runs its Python loop.

Example::

    loop = compile_while(node, cond, body)     # CompileError when something is not translated
    carry = loop(vals)                         # the final carry, or None: run the Python loop
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from noodle.backends.cache_dir import backends_digest
from noodle.backends.numba_emit import cast, literal, nb_type, np_ctor, op_expr
from noodle.backends.numpy_loops import LoopHandle, strided_loop
from noodle.backends.op_text import is_float
from noodle.errors import CompileError
from noodle.ir.graph import Node, Program
from noodle.ir.ops import LIBM_OPS, OPS, OpKind
from noodle.ir.reduction import acc_dtype, normalize_axes
from noodle.ir.semantics import slices

_ELEMENTWISE = (OpKind.UNARY, OpKind.BINARY, OpKind.TERNARY, OpKind.CAST)

#: float -> these integer casts have no portable result out of range (op_text.check_portable_casts)
_UNPORTABLE_CASTS = frozenset({"uint32", "uint64"})


class _Writer:
    """The source of one loop function: the statements of the condition and of the body, the NumPy
    loops they call (``lp``, three int64 per loop) and the array constants they read (``K0``...)."""

    def __init__(self, n_values: int) -> None:
        self.n_values = n_values                  # carry + outer values: parameters a0...
        self.loops: list[tuple[str, tuple[str, ...]]] = []
        self.consts: list[np.ndarray] = []
        self._const_ids: dict[int, int] = {}
        self.strided: set[int] = set()            # views of the program being written that are not C-contiguous
        self.views: set[int] = set()              # every view of the program being written

    def loop(self, ufunc: str, dtypes: tuple[str, ...]) -> str:
        """The ``lp`` slice of NumPy's ``ufunc`` loop for ``dtypes`` (checked to exist now)."""
        if strided_loop(ufunc, dtypes) is None:
            raise CompileError(f"NumPy gives no inner loop for {ufunc} on {' -> '.join(dtypes)}")
        key = (ufunc, dtypes)
        if key not in self.loops:
            self.loops.append(key)
        k = self.loops.index(key)
        return f"lp[{3 * k}:{3 * k + 3}]"

    def name(self, prog: Program, p: str, v: int) -> str:
        """How value ``v`` of ``prog`` is read: a parameter, a literal, a constant array, a local."""
        node = prog.nodes[v]
        if node.op == "input":
            return f"a{node.attr('index')}"
        if node.op == "const":
            c = np.asarray(prog.consts[node.attr("index")])
            if c.ndim == 0:
                return literal(node.dtype, c.item())
            key = id(c)
            if key not in self._const_ids:
                self._const_ids[key] = len(self.consts)
                self.consts.append(np.ascontiguousarray(c, dtype=node.dtype))
            return f"K{self._const_ids[key]}"
        return f"{p}{v}"

    def program(self, prog: Program, p: str) -> tuple[list[str], list[str]]:
        """Lines computing every value of ``prog`` (prefix ``p``) and the names of its outputs."""
        nodes = prog.nodes
        kinds: dict[int, str] = {}
        for i, node in enumerate(nodes):
            kinds[i] = _kind(node, prog)
        users: dict[int, set[int]] = {}
        for i, node in enumerate(nodes):
            for a in node.args:
                users.setdefault(a, set()).add(i)
        groups = _groups(prog, kinds, users)
        strided = _strided_views(prog, kinds)
        for i, node in enumerate(nodes):
            if kinds[i] == "libm" and any(a in strided for a in node.args):
                raise CompileError(f"{node.op} of a strided view (NumPy's loop takes it with its strides)")
        for o in prog.outputs:
            if kinds[o] in ("view", "reshape"):
                raise CompileError("a loop value that is a view of another (its layout would change between "
                                   "iterations)")
        self.strided = strided
        #: views of the program being written: Numba types a slice with a step as layout 'A',
        #: whose .reshape it refuses, so a reshape or reduction of one copies it first
        self.views = {i for i, kind in kinds.items() if kind == "view"}
        lines: list[str] = []
        done: set[int] = set()
        for i, node in enumerate(nodes):
            kind = kinds[i]
            if kind == "leaf" or i in done:
                continue
            if kind == "array":
                members = groups[i]
                if i != members[-1]:
                    continue          # the group's loop is written at its last member
                lines += self._array_loop(prog, p, members, users)
                done.update(members)
            elif kind == "scalar":
                args = [self.name(prog, p, a) for a in node.args]
                dts = [nodes[a].dtype for a in node.args]
                lines.append(f"{p}{i} = {op_expr(node.op, args, dts, node.dtype)}")
            elif kind == "libm":
                lines += self._libm(prog, p, i)
            elif kind == "view":
                view = f"{self.name(prog, p, node.args[0])}[{_subscript(node)}]"
                if any(st < 0 for st in node.attr("steps")):
                    # a copy: LLVM 22's loop vectorizer (built with assertions in llvmlite's
                    # wheels) aborts the process on some loops that read a step -1 view ("VPlan
                    # cost model and legacy cost model disagreed"; a random loop body of the
                    # tests hit it, v + v[::-1] * s after four means). The copy's own loop is a
                    # plain reversed read, which it vectorizes.
                    view = f"np.ascontiguousarray({view})"
                lines.append(f"{p}{i} = {view}")
            elif kind == "concat":
                parts = ", ".join(self.name(prog, p, a) for a in node.args)
                lines.append(f"{p}{i} = np.concatenate(({parts},), axis={node.attr('axis')})")
            elif kind == "matmul":
                lines += self._matmul(prog, p, i)
            elif kind == "reduce":
                lines += self._reduce(prog, p, i)
            elif kind == "reshape":
                lines.append(f"{p}{i} = {self._reshape(prog, p, i)}")
            elif kind == "gather":
                lines += self._gather(prog, p, i)
            elif kind == "reduce_rows":
                lines += self._reduce_rows(prog, p, i)
        return lines, [self.name(prog, p, o) for o in prog.outputs]

    def _array_loop(self, prog: Program, p: str, members: list[int], users: dict[int, set[int]]) -> list[str]:
        nodes = prog.nodes
        shape = nodes[members[0]].shape
        n = len(shape)
        inside = set(members)
        outer = [a for m in members for a in nodes[m].args if a not in inside and nodes[a].shape != ()]

        def index(a: int) -> list[str]:
            """Operand ``a``'s index per dimension: NumPy's broadcasting (trailing dimensions
            aligned; a dimension of 1 against a longer one is read at 0)."""
            sa = nodes[a].shape
            return ["0" if sa[e] == 1 and shape[n - len(sa) + e] != 1 else f"j{n - len(sa) + e}"
                    for e in range(len(sa))]

        # each extent from the first operand that runs along that dimension (the same choice for
        # every program this source is generated from: it depends only on the indexing above)
        extent = ["1"] * n
        for d in range(n):
            for a in outer:
                e = d - n + len(nodes[a].shape)     # operand a's dimension aligned with d
                if e >= 0 and nodes[a].shape[e] == shape[d] and index(a)[e] == f"j{d}":
                    extent[d] = f"{self.name(prog, p, a)}.shape[{e}]"
                    break
            else:
                if shape[d] != 1:
                    raise CompileError("internal: an array loop with no operand to take an extent from")
        dims = f"({', '.join(extent)},)"
        stored = [m for m in members if m in prog.outputs or users.get(m, set()) - inside]
        lines = [f"{p}{m} = np.empty({dims}, {np_ctor(nodes[m].dtype)})" for m in stored]
        idx = ", ".join(f"j{d}" for d in range(len(shape)))
        body: list[str] = []
        for m in members:
            node = nodes[m]
            args = []
            for a in node.args:
                if a in inside:
                    args.append(f"t{p}{a}")
                elif nodes[a].shape == ():
                    args.append(self.name(prog, p, a))
                else:
                    args.append(f"{self.name(prog, p, a)}[{', '.join(index(a))}]")
            dts = [nodes[a].dtype for a in node.args]
            body.append(f"t{p}{m} = {op_expr(node.op, args, dts, node.dtype)}")
        body += [f"{p}{m}[{idx}] = t{p}{m}" for m in stored]
        for d in range(len(shape)):
            lines.append("    " * d + f"for j{d} in range({extent[d]}):")
        lines += ["    " * len(shape) + line for line in body]
        return lines

    def _libm(self, prog: Program, p: str, i: int) -> list[str]:
        """NumPy's loop of a libm op: over the whole (contiguous) array, or one element for a 0-d value."""
        node = prog.nodes[i]
        dt = node.dtype
        ufunc = str(OPS[node.op].numpy)
        lp = self.loop(ufunc, (dt,) * (len(node.args) + 1))
        ctor = np_ctor(dt)
        size = np.dtype(dt).itemsize
        args = [self.name(prog, p, a) for a in node.args]
        lines: list[str] = []
        if node.shape == ():
            bufs = []
            for k, a in enumerate(args):
                lines += [f"u{p}{i}_{k} = np.empty(1, {ctor})", f"u{p}{i}_{k}[0] = {a}"]
                bufs.append(f"u{p}{i}_{k}")
            lines.append(f"u{p}{i} = np.empty(1, {ctor})")
            out, n = f"u{p}{i}", "1"
        else:
            src = next(a for a, v in zip(args, node.args, strict=True) if prog.nodes[v].shape == node.shape)
            bufs = []
            for k, (a, v) in enumerate(zip(args, node.args, strict=True)):
                if prog.nodes[v].shape == ():     # a 0-d operand: read with stride 0
                    lines += [f"u{p}{i}_{k} = np.empty(1, {ctor})", f"u{p}{i}_{k}[0] = {a}"]
                    bufs.append(f"u{p}{i}_{k}")
                else:
                    bufs.append(a)
            lines.append(f"{p}{i} = np.empty({src}.shape, {ctor})")
            out, n = f"{p}{i}", f"{src}.size"
        strides = [("0" if (node.shape == () or prog.nodes[v].shape == ()) else str(size))
                   for v in node.args]
        fn = "call2" if len(args) == 1 else "call3"
        flat = ", ".join(f"{b}.ctypes.data, {s}" for b, s in zip(bufs, strides, strict=True))
        lines.append(f"if not {fn}({lp}, {flat}, {out}.ctypes.data, {size if node.shape else 0}, {n}, buf):")
        lines.append("    return False, CARRY")
        if node.shape == ():
            lines.append(f"{p}{i} = u{p}{i}[0]")
        return lines

    def _reduce(self, prog: Program, p: str, i: int) -> list[str]:
        """A whole array's sum, mean, max or min in the defined order (numba_full_reduce)."""
        node = prog.nodes[i]
        x = self.name(prog, p, node.args[0])
        dt = prog.nodes[node.args[0]].dtype
        value, have = _reduced(node.op, dt, self._flat(prog, p, node.args[0]), f"{x}.size")
        if node.op in ("max", "min"):
            return [f"if {x}.size == 0:", "    return False, CARRY",     # NumPy raises: the Python loop says so
                    f"{p}{i} = {cast(value, have, node.dtype)}"]
        return [f"{p}{i} = {cast(value, have, node.dtype)}"]

    def _flat(self, prog: Program, p: str, v: int) -> str:
        """Value ``v`` as a 1-D C-contiguous array: a view is copied first (Numba types a stepped
        slice as layout 'A', whose ``.reshape`` it refuses)."""
        x = self.name(prog, p, v)
        return f"np.ascontiguousarray({x}).reshape({x}.size)" if v in self.views else f"{x}.reshape({x}.size)"

    def _gather(self, prog: Program, p: str, i: int) -> list[str]:
        """``x[idx]`` along the first axis with NumPy's bounds rule, index by index: a negative
        index counts from the end; one outside ``-n..n-1`` ends the compiled loop (the Python
        loop then raises NumPy's IndexError), never a read outside ``x``."""
        node = prog.nodes[i]
        xv, iv = node.args
        x, idx = self.name(prog, p, xv), self.name(prog, p, iv)
        rank = len(prog.nodes[xv].shape)
        dims = ", ".join([f"{idx}.shape[0]"] + [f"{x}.shape[{d}]" for d in range(1, rank)])
        out, t = f"{p}{i}", f"t{p}{i}"
        return [f"{out} = np.empty(({dims},), {np_ctor(node.dtype)})",
                f"for j{p}{i} in range({idx}.shape[0]):",
                f"    {t} = np.int64({idx}[j{p}{i}])",
                f"    if {t} < 0:",
                f"        {t} += {x}.shape[0]",
                f"    if {t} < 0 or {t} >= {x}.shape[0]:",
                "        return False, CARRY",
                f"    {out}[j{p}{i}] = {x}[{t}]"]

    def _reshape(self, prog: Program, p: str, i: int) -> str:
        """A reshape as source text: with the source's own extents where it only adds or drops
        dimensions of 1 (``s[:, None]``, so every length still shares the function), else the
        literal shape; a strided source is copied first (Numba reshapes contiguous arrays)."""
        node = prog.nodes[i]
        src = prog.nodes[node.args[0]]
        x = self.name(prog, p, node.args[0])
        if node.args[0] in self.views:
            x = f"np.ascontiguousarray({x})"
        if node.shape == ():   # one element to a 0-d value (x[0] is a slice and this): a scalar here
            return f"{x}.reshape({x}.size)[0]"
        kept = [d for d, n in enumerate(src.shape) if n != 1]
        if [n for n in node.shape if n != 1] == [src.shape[d] for d in kept]:
            it = iter(kept)
            dims = ["1" if n == 1 else f"{x}.shape[{next(it)}]" for n in node.shape]
        else:
            dims = [str(int(n)) for n in node.shape]
        return f"{x}.reshape(({', '.join(dims)}{',' if len(dims) == 1 else ''}))"

    def _reduce_rows(self, prog: Program, p: str, i: int) -> list[str]:
        """A sum, mean, max or min over the last axis: each row (the values of one output
        element, contiguous in the flattened array) by the whole-array helpers, whose order is
        the definition's for any one output element."""
        node = prog.nodes[i]
        src = prog.nodes[node.args[0]]
        x = self.name(prog, p, node.args[0])
        dt = src.dtype
        rank = len(src.shape)
        flat = self._flat(prog, p, node.args[0])
        rows = " * ".join(f"{x}.shape[{d}]" for d in range(rank - 1)) or "1"
        dims = [f"{x}.shape[{d}]" for d in range(rank - 1)] + (["1"] if node.attr("keepdims", False) else [])
        out = f"{p}{i}"
        row = f"x{p}{i}[r{p}{i} * n{p}{i}:(r{p}{i} + 1) * n{p}{i}]"
        lines = [f"x{p}{i} = {flat}", f"n{p}{i} = {x}.shape[{rank - 1}]", f"m{p}{i} = {rows}",
                 f"{out} = np.empty(({', '.join(dims)},), {np_ctor(node.dtype)})", f"f{p}{i} = {out}.reshape(m{p}{i})"]
        value, have = _reduced(node.op, dt, row, f"n{p}{i}")
        if node.op in ("max", "min"):
            lines += [f"if n{p}{i} == 0 and m{p}{i} > 0:", "    return False, CARRY"]   # NumPy raises
        lines += [f"for r{p}{i} in range(m{p}{i}):", f"    f{p}{i}[r{p}{i}] = {cast(value, have, node.dtype)}"]
        return lines

    def _matmul(self, prog: Program, p: str, i: int) -> list[str]:
        """NumPy's matmul loop on one product, with the extents and byte strides NumPy would pass."""
        node = prog.nodes[i]
        a, b = node.args
        ra, rb = len(prog.nodes[a].shape), len(prog.nodes[b].shape)
        dt = node.dtype
        lp = self.loop("matmul", (dt, dt, dt))
        x, y = self.name(prog, p, a), self.name(prog, p, b)
        ctor = np_ctor(dt)
        if (ra, rb) == (2, 1):
            out = f"{p}{i}"
            alloc = f"{out} = np.empty(({x}.shape[0],), {ctor})"
            core = (f"{x}.shape[0], {x}.shape[1], 1, {x}.strides[0], {x}.strides[1], {y}.strides[0], 0, "
                    f"{out}.strides[0], 0")
        elif (ra, rb) == (1, 2):
            out = f"{p}{i}"
            alloc = f"{out} = np.empty(({y}.shape[1],), {ctor})"
            core = (f"1, {y}.shape[0], {y}.shape[1], 0, {x}.strides[0], {y}.strides[0], {y}.strides[1], 0, "
                    f"{out}.strides[0]")
        elif (ra, rb) == (1, 1):
            out = f"u{p}{i}"
            alloc = f"{out} = np.empty(1, {ctor})"
            core = f"1, {x}.shape[0], 1, 0, {x}.strides[0], {y}.strides[0], 0, 0, 0"
        elif (ra, rb) == (2, 2):
            out = f"{p}{i}"
            alloc = f"{out} = np.empty(({x}.shape[0], {y}.shape[1]), {ctor})"
            core = (f"{x}.shape[0], {x}.shape[1], {y}.shape[1], {x}.strides[0], {x}.strides[1], {y}.strides[0], "
                    f"{y}.strides[1], {out}.strides[0], {out}.strides[1]")
        else:
            raise CompileError(f"a matmul of rank {ra} by rank {rb} operands is not translated")
        lines = [alloc, f"if not call_matmul({lp}, {x}.ctypes.data, {y}.ctypes.data, {out}.ctypes.data, {core}, buf):",
                 "    return False, CARRY"]
        if (ra, rb) == (1, 1):
            lines.append(f"{p}{i} = {out}[0]")
        return lines


def _kind(node: Node, prog: Program) -> str:
    """How one node is written: ``leaf`` (input, const), ``scalar``/``array`` (inline elementwise),
    ``libm`` (NumPy's ufunc loop), ``matmul``, ``reduce`` (a whole array's); CompileError for
    anything else."""
    op = node.op
    if op in ("input", "const"):
        nb_type(node.dtype)
        return "leaf"
    row = OPS[op]
    nb_type(node.dtype)          # a DTypeError names a dtype the Numba backend has no type for
    arg_dts = [prog.nodes[a].dtype for a in node.args]
    for d in arg_dts:
        nb_type(d)
    if op == "slice":
        return "view"
    if op == "gather":
        x, idx = (prog.nodes[a] for a in node.args)
        if node.attr("axis") != 0 or len(idx.shape) != 1 or not x.shape:
            raise CompileError("a gather other than x[idx] along the first axis with a 1-D index")
        if not (idx.dtype.startswith("int") or idx.dtype in ("uint8", "uint16", "uint32")):
            raise CompileError(f"a gather with {idx.dtype} indices")   # (uint64: not all fit an int64)
        return "gather"
    if op == "reshape":
        if node.attr("order", "C") not in (None, "C"):
            raise CompileError(f"a reshape in {node.attr('order')!r} order")
        if prog.nodes[node.args[0]].shape == ():
            raise CompileError("a reshape of a 0-d value")
        return "reshape"
    if op == "concatenate":
        if any(d != node.dtype for d in arg_dts):
            raise CompileError(f"a concatenate of {', '.join(arg_dts)} into {node.dtype} (NumPy casts first)")
        return "concat"
    if row.kind is OpKind.MATMUL:
        if any(d != node.dtype for d in arg_dts):
            raise CompileError(f"a matmul of {' and '.join(arg_dts)} into {node.dtype} (NumPy casts first)")
        return "matmul"
    if row.kind is OpKind.REDUCE:
        x = prog.nodes[node.args[0]]
        rank = len(x.shape)
        if op in ("max", "min") and x.dtype == "bool":
            raise CompileError(f"{op} of bools")
        axes = normalize_axes(node.attr("axis"), rank) if rank else ()
        if rank and node.shape == () and not node.attr("keepdims", False) and axes == tuple(range(rank)):
            return "reduce"
        if rank and axes == (rank - 1,):
            return "reduce_rows"       # over the last axis: each row in the defined order
        raise CompileError(f"{op} over some axes (a whole array's or the last axis's {op} is translated)")
    if row.kind not in _ELEMENTWISE:
        raise CompileError(f"{op} ({row.kind.name.lower()}) is not translated into a compiled loop")
    if node.attr("scalar", False):
        raise CompileError("a power of NumPy scalars (NumPy's scalar pow, not its ufunc)")
    if op in LIBM_OPS and (is_float(node.dtype) or op != "power"):
        if any(d != node.dtype for d in arg_dts):
            raise CompileError(f"{op} of {', '.join(arg_dts)} into {node.dtype}")
        if node.shape and any(prog.nodes[a].shape not in ((), node.shape) for a in node.args):
            raise CompileError(f"{op} with a broadcast operand")
        return "libm"
    if op == "power":            # an integer power: NumPy raises on a negative exponent
        e = prog.nodes[node.args[1]]
        if e.op != "const" or np.asarray(prog.consts[e.attr("index")]) < 0:
            raise CompileError("an integer power whose exponent is not a constant >= 0")
    if op == "astype" and node.attr("order", "K") in ("F", "A") and len(node.shape) >= 2:
        raise CompileError("a copy in Fortran order (a product of it reads its layout)")
    if op == "astype" and node.dtype in _UNPORTABLE_CASTS and is_float(arg_dts[0]):
        raise CompileError(f"a float -> {node.dtype} cast")
    if node.shape == ():
        return "scalar"
    return "array"        # an operand of another shape is broadcast (_Writer._array_loop)


def _reduced(op: str, dt: str, values: str, count: str) -> tuple[str, str]:
    """(source text, its dtype) of ``op`` over the 1-D contiguous ``values`` (``count`` of them) of
    dtype ``dt``, in the defined order (numba_full_reduce); max/min need at least one value."""
    if op in ("max", "min"):
        largest = op == "max"
        if is_float(dt):
            return f"float_extreme({values}, {largest})", "float64"
        return f"int_extreme({values}, {largest})", dt
    acc = acc_dtype(op, dt)
    if acc != "float64":
        return f"integer_sum({values}, np.{acc}(0))", acc
    value = f"ordered_sum({values})"
    return (f"({value} / np.float64({count}))" if op == "mean" else value), acc


def _subscript(node: Node) -> str:
    """A ``slice`` node as source text (the Python slices of :func:`noodle.ir.semantics.slices`)."""
    parts = []
    for sl in slices(node):
        parts.append(f"{sl.start}:{'' if sl.stop is None else sl.stop}:{sl.step}")
    return ", ".join(parts) + ("," if len(parts) == 1 else "")


def _strided_views(prog: Program, kinds: dict[int, str]) -> set[int]:
    """The views that are not C-contiguous whatever the extents: a step other than 1, or a
    range on an axis after the first that may not be the whole axis (every other value of a
    loop is a C-contiguous array or a scalar)."""
    strided: set[int] = set()
    for i, node in enumerate(prog.nodes):
        if kinds[i] != "view":
            continue
        base = node.args[0]
        src_shape = prog.nodes[base].shape
        whole = all(a == 0 and b == n and st == 1 for a, b, st, n in zip(
            node.attr("starts")[1:], node.attr("stops")[1:], node.attr("steps")[1:], src_shape[1:], strict=True))
        if base in strided or node.attr("steps")[0] != 1 or not whole:
            strided.add(i)
    return strided


def _groups(prog: Program, kinds: dict[int, str], users: dict[int, set[int]]) -> dict[int, list[int]]:
    """Inline array nodes -> the members of the loop each is written in (its fusion group, when
    the group's loop can be written at its last member: no node outside it reads a member before)."""
    by: dict[Any, list[int]] = {}
    for i, node in enumerate(prog.nodes):
        if kinds[i] == "array":
            g = node.attr("group")
            by.setdefault(("g", g, node.shape) if g is not None else ("n", i), []).append(i)
    out: dict[int, list[int]] = {}
    for members in by.values():
        last = members[-1]
        inside = set(members)
        early = any(u < last and u not in inside for m in members for u in users.get(m, ()))
        for m in members:
            out[m] = [m] if early else members
    return out


def generate(cond: Program, body: Program, carry: int, n_values: int) -> tuple[str, list[tuple[str, tuple]], list[np.ndarray]]:
    """The module source of the loop, the NumPy loops it calls (in ``lp`` order) and its array
    constants (parameters ``K0``...)."""
    w = _Writer(n_values)
    cond_lines, (cond_out,) = w.program(cond, "c")
    body_lines, body_out = w.program(body, "b")
    params = [f"a{k}" for k in range(n_values)] + [f"K{j}" for j in range(len(w.consts))] + ["lp"]
    state = ", ".join(f"a{k}" for k in range(carry))
    lines = [
        '"""noodle while_loop kernel; generated, do not edit."""',
        f"# noodle backends {backends_digest()}",
        "import math",
        "import numpy as np",
        "from numba import njit",
        "from noodle.backends.numpy_loops_call import call2, call3, call_matmul",
        "from noodle.backends.numba_full_reduce import float_extreme, int_extreme, integer_sum, ordered_sum",
        "",
        "_OPTS = dict(cache=True, error_model='numpy', fastmath=False, nogil=True)",
        "",
        "",
        "@njit(**_OPTS)",
        f"def run({', '.join(params)}):",
        "    buf = np.empty(16, np.int64)",
        "    while True:",
    ]
    lines += ["        " + line for line in cond_lines]
    lines.append(f"        if not {cond_out}:")
    lines.append("            break")
    lines += ["        " + line for line in body_lines]
    # every carried value keeps its type: scalars through their dtype's constructor
    new = []
    for o, v in zip(body_out, body.outputs, strict=True):
        node = body.nodes[v]
        new.append(f"{np_ctor(node.dtype)}({o})" if node.shape == () else o)
    lines.append(f"        {state}, = {', '.join(new)},")
    lines.append(f"    return True, ({state},)")
    return "\n".join(lines).replace("CARRY", f"({state},)") + "\n", list(w.loops), w.consts


class CompiledLoop:
    """One while_loop as a compiled function; call it with the loop node's values."""

    def __init__(self, fn: Any, sig: list[tuple[int, np.dtype]], carry: int, handles: list[LoopHandle],
                 lp: np.ndarray, consts: list[np.ndarray]) -> None:
        self.fn = fn
        self.sig = sig
        self.carry = carry
        self.handles = handles     # own the addresses in ``lp``
        self.tail = (*consts, lp)
        #: per carried value, the NumPy scalar type a 0-d result is returned as (None: an array)
        self._scalar = [dt.type if rank == 0 else None for rank, dt in sig[:carry]]

    def __call__(self, vals: Sequence[Any]) -> tuple[Any, ...] | None:
        """The final carry (NumPy scalars for 0-d values, arrays otherwise), or None when a value
        is not of the compiled type or layout (the caller's Python loop then runs)."""
        if len(vals) != len(self.sig):
            return None
        args = list(vals)
        ndarray = np.ndarray
        for i, (rank, dt) in enumerate(self.sig):
            v = args[i]
            if rank == 0:
                if type(v) is dt.type:   # (the common case first: a call costs ~1.4 µs in all)
                    continue
                if type(v) is not ndarray or v.ndim or v.dtype != dt:
                    return None
                args[i] = v[()]
            elif type(v) is not ndarray or v.ndim != rank or v.dtype != dt or not v.flags.c_contiguous:
                return None
        ok, carry = self.fn(*args, *self.tail)
        if not ok:
            return None
        return tuple(c if t is None else t(c) for c, t in zip(carry, self._scalar, strict=True))


def compile_while(node: Node, cond: Program, body: Program, load: Any = None) -> CompiledLoop:
    """Compile ``node`` (a ``while_loop``; ``cond`` and ``body`` its optimized sub-programs).
    ``load(key, source)``: import a generated module (the kernel cache's ``load_module``).
    Raises CompileError naming what is not translated."""
    from noodle.backends.numba_cache import load_module  # noqa: PLC0415 - imports Numba
    from noodle.backends.numpy_loops import resolve  # noqa: PLC0415

    k = node.attr("carry")
    n_values = len(node.args)
    types: list[tuple[int, np.dtype] | None] = [None] * n_values
    for prog in (cond, body):
        for n in prog.nodes:
            if n.op == "input":
                types[n.attr("index")] = (len(n.shape), np.dtype(n.dtype))
    for j, v in enumerate(body.outputs[:k]):
        n = body.nodes[v]
        types[j] = (len(n.shape), np.dtype(n.dtype))
    if any(t is None for t in types):
        raise CompileError("internal: a loop value is read by neither the condition nor the body")
    if cond.nodes[cond.outputs[0]].shape != ():
        raise CompileError("the loop condition is not one value")
    source, loops, consts = generate(cond, body, k, n_values)
    got = resolve(loops)
    if got is None:
        raise CompileError("NumPy gives no inner loop for one of the loop's ufuncs")
    handles, lp = got
    key = "w" + hashlib.sha256(source.encode()).hexdigest()[:32]
    mod = (load or load_module)(key, source)
    _typecheck(mod.run, types, consts, lp)   # type: ignore[arg-type]
    return CompiledLoop(mod.run, types, k, handles, lp, consts)  # type: ignore[arg-type]


def _typecheck(fn: Any, sig: list[tuple[int, np.dtype]], consts: list[np.ndarray], lp: np.ndarray) -> None:
    """Compile ``fn`` now for the argument types a call passes (C-contiguous arrays, NumPy scalars),
    so that source Numba cannot type is a CompileError here, and the loop runs as a Python loop,
    instead of a failure at the first call that turns the whole jitted function interpreted."""
    from numba import typeof  # noqa: PLC0415 - imports Numba
    from numba.core.errors import NumbaError  # noqa: PLC0415

    args = [typeof(dt.type(0)) if rank == 0 else typeof(np.empty((0,) * rank, dt)) for rank, dt in sig]
    args += [typeof(np.ascontiguousarray(c)) for c in consts] + [typeof(lp)]
    try:
        fn.compile(tuple(args))
    except NumbaError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CompileError(f"Numba cannot type the generated loop: {first}") from exc


__all__ = ["CompiledLoop", "compile_while", "generate"]
