"""Row-wise regions (:class:`~noodle.backends.spec.RowSpec`: softmax, layernorm, normalizations) as
one Numba kernel that walks blocks of rows from cache.

Why this shape: a row that fits in L2 is read two or three times from cache instead of the whole
array once per op. Per block of rows (``BLOCK`` elements), the kernel runs *stages*: generated
serial ``nogil`` Numba functions that, row by row, run *passes* over the row (a reduction's
result is available to the pass after the one that produced its operand), and between stages
NumPy's ufuncs compute ``exp``/``log``/... on the whole block (their bits are NumPy's, and
Numba's libm calls differ in the last bit: the rule of :mod:`noodle.backends.numba_plan`). A
value that crosses a pass or a stage, or is reduced, is kept in a per-thread block scratch
(or in its output). Sums follow the defined order of :mod:`noodle.ir.reduction` per row
(chunks of ``CHUNK``, eight lanes in one vector, :func:`noodle.backends.numba_reduce._rsum`;
a stage with a sum runs its rows in groups of four whose sums overlap, ``_rsum_rows``),
``max``/``min`` its NaN and signed-zero rules: the bits are the interpreter's. A sum whose
operand nothing else reads (layernorm's ``d * d``) is computed from its expression as it is
summed, never stored (:mod:`noodle.backends.numba_row_lanes`). Blocks run on
the shared worker threads (dynamic scheduling) when the array is large, else in the caller.

Example::

    from noodle.backends import get_backend
    kernel = get_backend("numba").compile_rowwise(row_spec)
    (out,) = kernel(x)
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np

from noodle import metrics
from noodle.backends import numba_threads
from noodle.backends.base import Kernel, check_inputs, refuse_swapped
from noodle.backends.cache_dir import backends_digest
from noodle.backends.numba_cache import from_cache, load_module
from noodle.backends.numba_emit import cast, float_literal, indent, literal, nb_type, op_expr, sig_array
from noodle.backends.numba_expf import inline_exp
from noodle.backends.numba_plan import PARALLEL_MIN, UFUNC_OPS
from noodle.backends.numba_reduce import ROWS
from noodle.backends.numba_row_lanes import call_text, find_lane_sums, helper_source, lane_only
from noodle.backends.numpy_loops import resolve
from noodle.backends.op_text import check_integer_power, check_portable_casts, is_float
from noodle.backends.spec import RowSpec
from noodle.devices.detect import cpu_threads
from noodle.errors import CompileError, ExecutionError, ShapeError
from noodle.memory.pool import default_pool

BLOCK = 1 << 15          # elements per block of rows (a scratch buffer: 128-256 KiB, in L2)
PRANGE_MIN_BLOCKS = 2   # from this many blocks the parallel driver is Numba's prange (RowKernel._drive)
_REDUCE = ("sum", "mean", "max", "min")
#: ops cheap enough to compute again in a later pass rather than keep (RowPlan._recomputed)
ARITHMETIC = frozenset({"add", "subtract", "multiply", "negative"})

_COMPILES = metrics.counter("noodle_jit_rowwise_compiles_total", "row-wise kernels built by the Numba backend",
                            ["source"])
_local = threading.local()


# ---------------------------------------------------------------------------- the plan
class RowPlan:
    """What the generator decided for one spec: input views, stages, passes and homes."""

    def __init__(self, spec: RowSpec) -> None:
        self.spec = spec
        n_in, n_c = len(spec.inputs), len(spec.consts)
        self.n_in, self.base = n_in, n_in + n_c
        self.L = int(spec.length)
        self.R = math.prod(spec.rows)
        self.full = (*spec.rows, self.L)
        nv = spec.n_values
        body = spec.body
        if len(spec.levels) != len(body):
            raise CompileError("a RowSpec needs one level per body instruction")
        self.level = ["?"] * self.base + list(spec.levels)
        # uniform: constants, one-element inputs, and what only they feed
        self.uni = [math.prod(shape) == 1 for _, shape in spec.inputs] + [True] * n_c
        for ins in body:
            self.uni.append(ins.op not in _REDUCE and all(self.uni[a] for a in ins.args))
        # input views: (input, kind) with kind mat | col | rowv | one
        self.views: list[tuple[int, str]] = []
        self.view_of: dict[tuple[int, str], int] = {}
        for i, ins in enumerate(body):
            lvl = spec.levels[i]
            for a in ins.args:
                if a < n_in:
                    self._view(a, "full" if ins.op in _REDUCE else lvl)
        self.ufunc = [False] * nv
        self.stage = [0] * nv
        #: float32 ``exp`` computed in the pass (NumPy's algorithm, :mod:`numba_expf`), not a stage
        self.inline: set[int] = set()
        for i, ins in enumerate(body):
            v = self.base + i
            s = max((self.stage[a] for a in ins.args), default=0)
            if inline_exp(spec, ins):
                self.inline.add(v)
            elif ins.op in _REDUCE:
                if not is_float(spec.dtype_of(ins.args[0])):
                    raise CompileError(f"row-wise {ins.op} of {spec.dtype_of(ins.args[0])} values: only float rows")
            elif ins.op in UFUNC_OPS and is_float(ins.dtype):
                if self.uni[v]:
                    raise CompileError(f"row-wise {ins.op} of scalars would not give NumPy's bits; it runs interpreted")
                self.ufunc[v] = True
                s += 1
            self.stage[v] = s
        self.n_stages = max(self.stage[self.base:], default=0) + 1
        self.passes = self._passes()
        self.out_index: dict[int, int] = {}
        for j, (v, _shape) in enumerate(spec.outputs):
            if v < self.base or self.uni[v]:
                raise CompileError("a row-wise output must be computed per element or per row")
            self.out_index.setdefault(v, j)
        #: value -> the body values that read it
        self.readers: dict[int, set[int]] = {}
        for i, ins in enumerate(body):
            for a in ins.args:
                self.readers.setdefault(a, set()).add(self.base + i)
        #: row sums computed from their expression (numba_row_lanes), and the values only they read
        self.lane_sums = find_lane_sums(self)
        self.lane_only = lane_only(self, self.lane_sums)
        self.recompute = self._recomputed()
        self.home = self._homes()
        self.rows_per_block = max(1, BLOCK // self.L)

    def _view(self, k: int, level: str) -> int:
        shape = self.spec.inputs[k][1]
        if math.prod(shape) == 1:
            kind = "one"
        else:
            padded = (1,) * (len(self.full) - len(shape)) + tuple(shape)
            rows_vary = any(d > 1 for d in padded[:-1])
            cols_vary = padded[-1] > 1 and level == "full"
            kind = "mat" if rows_vary and cols_vary else "col" if cols_vary else "rowv"
        key = (k, kind)
        if key not in self.view_of:
            self.view_of[key] = len(self.views)
            self.views.append(key)
        self.view_of[(k, level)] = self.view_of[key]
        return self.view_of[key]

    def _passes(self) -> list[int]:
        p = [0] * self.spec.n_values
        for i, ins in enumerate(self.spec.body):
            v = self.base + i
            if self.ufunc[v] or self.uni[v]:
                continue
            same = [a for a in ins.args if a >= self.base and self.stage[a] == self.stage[v]
                    and not self.ufunc[a] and not self.uni[a]]
            if ins.op in _REDUCE:
                p[v] = p[same[0]] + 1 if same else 0
            else:
                p[v] = max((p[a] for a in same), default=0)
        return p

    def _recomputed(self) -> set[int]:
        """Per-element values a later pass computes again instead of reading from a scratch row:
        one arithmetic op on inputs, constants and row values (layernorm's ``x - mean``).

        Why: the op is cheaper than the store and the load (the same op on the same operands:
        the same bits); keeping ``d`` in scratch made layernorm's second pass write two rows."""
        spec, base = self.spec, self.base
        out: set[int] = set()
        for i, ins in enumerate(spec.body):
            v = base + i
            if (self.level[v] != "full" or self.uni[v] or self.ufunc[v] or ins.op in _REDUCE
                    or ins.op not in ARITHMETIC):
                continue
            if all(a < base or self.uni[a] or self.level[a] == "row" for a in ins.args):
                out.add(v)
        return out

    def _homes(self) -> dict[int, tuple[str, int]]:
        """Where each value that crosses a pass or stage, or is reduced, is kept per block."""
        spec, base = self.spec, self.base
        need: set[int] = set()
        for i, ins in enumerate(spec.body):
            u = base + i
            if u in self.lane_sums or u in self.lane_only:   # computed in the lanes: reads nothing kept
                continue
            for a in ins.args:
                if a < base or self.uni[a]:
                    continue
                if self.ufunc[u] or self.stage[u] > self.stage[a] or ins.op in _REDUCE:
                    need.add(a)
                elif self.level[a] == "full" and self.passes[u] > self.passes[a] and a not in self.recompute:
                    need.add(a)
            if self.ufunc[u]:
                need.add(u)
        home: dict[int, tuple[str, int]] = {}
        self.t_dtypes: list[str] = []
        self.u_dtypes: list[str] = []
        shared = self._in_output(need)
        for v in sorted(need | set(self.out_index)):
            if v in self.out_index:
                home[v] = ("o", self.out_index[v])
            elif v in shared:
                home[v] = ("o", shared[v])
            elif self.level[v] == "full":
                home[v] = ("t", len(self.t_dtypes))
                self.t_dtypes.append(spec.dtype_of(v))
            else:
                home[v] = ("u", len(self.u_dtypes))
                self.u_dtypes.append(spec.dtype_of(v))
        return home

    def _order(self, u: int) -> tuple[int, int, int, int]:
        """When value ``u`` is computed in a block: stage, its ufunc step before the stage's
        Numba function, pass, and a pass's row values before its loop over the row."""
        return (self.stage[u], 0 if self.ufunc[u] else 1, self.passes[u], 0 if self.level[u] == "row" else 1)

    def _in_output(self, need: set[int]) -> dict[int, int]:
        """Per-element values kept in an output's buffer instead of a scratch row: softmax's
        ``e = exp(x - max)`` lives where ``e / sum(e)`` is written.

        Why: the scratch row is one more buffer written and read per row (a fifth of a float32
        softmax's time here). Safe when the value's only per-element reader is that output (same
        dtype, computed by a Numba loop that reads element ``j`` before it writes it), or it has
        none (layernorm's ``d * d``, only summed) and the output is written after it, and every
        reduction of the value runs before that output's pass. One value per output buffer, except
        a value whose only reader is a one-operand NumPy ufunc writing that buffer (it runs in place)."""
        spec, base, readers = self.spec, self.base, self.readers
        out: dict[int, int] = {}
        for v in sorted(need):
            if v in self.out_index or self.level[v] != "full" or self.uni[v]:
                continue
            elem = [u for u in readers.get(v, ()) if spec.body[u - base].op not in _REDUCE]
            reds = [u for u in readers.get(v, ()) if spec.body[u - base].op in _REDUCE]
            if len(elem) > 1:
                continue
            # its one per-element reader, or (read by reductions only) any output written later
            for w in elem or sorted(self.out_index):
                if (w not in self.out_index or self.ufunc[w] or self.uni[w] or self.level[w] != "full"
                        or spec.dtype_of(w) != spec.dtype_of(v) or self.out_index[w] in out.values()):
                    continue
                if self._order(v) < self._order(w) and all(self._order(r) < self._order(w) for r in reds):
                    out[v] = self.out_index[w]
                    break
        # a value whose one reader is a one-operand NumPy ufunc (f64 softmax's ``x - max``, read
        # by ``exp``) whose result lives in an output: written there too, and the ufunc runs in
        # place (NumPy's loops allow an exact overlap); it is dead once the ufunc has read it
        for v in sorted(need, reverse=True):
            if v in out or v in self.out_index or self.level[v] != "full" or self.uni[v]:
                continue
            rd = readers.get(v, set())
            if len(rd) != 1:
                continue
            (w,) = rd
            j = out.get(w, self.out_index.get(w))
            if (j is None or not self.ufunc[w] or len(spec.body[w - base].args) != 1 or self.level[w] != "full"
                    or spec.dtype_of(w) != spec.dtype_of(v)):
                continue
            out[v] = j
        return out

    def steps(self) -> list[tuple[str, int]]:
        """("numba", stage) and ("ufunc", value) in the order a block runs them."""
        out: list[tuple[str, int]] = []
        for s in range(self.n_stages):
            if s > 0:
                out += [("ufunc", v) for v in range(self.base, self.spec.n_values)
                        if self.ufunc[v] and self.stage[v] == s]
            out.append(("numba", s))
        return out


# --------------------------------------------------------------------------- the source
class _Gen:
    def __init__(self, p: RowPlan) -> None:
        self.p = p
        self.spec = p.spec
        self.args = ([f"i{k}" for k in range(len(p.views))] + [f"t{j}" for j in range(len(p.t_dtypes))]
                     + [f"u{j}" for j in range(len(p.u_dtypes))] + [f"o{j}" for j in range(len(self.spec.outputs))])
        sigs = ([sig_array(self.spec.inputs[k][0]) for k, _ in p.views] + [sig_array(d) for d in p.t_dtypes]
                + [sig_array(d) for d in p.u_dtypes] + [sig_array(self.spec.dtype_of(v)) for v, _ in self.spec.outputs])
        self.sig = f'"void(int64, int64, {", ".join(sigs)})"'
        self.sliced: set[str] = set()

    def module(self) -> str:
        p = self.p
        src = ["# generated by noodle.backends.numba_rowwise: one row-wise region",
               f"# noodle backends {backends_digest()} (the helpers it calls: a change recompiles it)",
               "import math", "import numpy as np", "from numba import njit, prange",
               # the row reductions live beside the intrinsics they call: Numba's cache of a
               # compiled function is invalidated only by a change to its own file
               "from noodle.backends.numba_extreme import _rmax, _rmin",
               "from noodle.backends.numba_reduce import ROWS, _rsum, _rsum_rows",
               "from noodle.backends.numpy_loops_call import call2, call3",
               *(["from noodle.backends.numba_expf import expf_numpy"] if p.inline else []),
               *(["from noodle.backends.numba_lane_expr import LaneProgram, lane_expr_rows"] if p.lane_sums else []),
               "", "_OPTS = dict(cache=True, error_model='numpy', fastmath=False, nogil=True)", ""]
        for ls in p.lane_sums.values():
            src += helper_source(ls, p.L, ROWS) + helper_source(ls, p.L, 1)
        for s in range(p.n_stages):
            src += self.stage(s)
        src += self.driver()
        return "\n".join(src) + "\n"

    def driver(self) -> list[str]:
        """``run(r0, r1, ..., lp, kp, buf)``: every block of rows ``[r0, r1)``, its stages and its
        ufunc steps, in compiled code (the ufuncs through NumPy's own loops, :mod:`numpy_loops`);
        none (an empty list) when a ufunc operand is not one strided run over the block (a row
        value broadcast along rows, a column vector, a cast): then Python drives the blocks.

        ``lp``: per ufunc step, NumPy's loop as ``[fn, context, auxdata]``; ``kp``: the address of
        each constant (0-d arrays the kernel keeps); ``buf``: scratch for a loop's arguments."""
        p, spec = self.p, self.spec
        lines = ["for b0 in range(r0, r1, RPB):", "    b1 = min(r1, b0 + RPB)", "    nb = b1 - b0"]
        loops: list[tuple[str, tuple[str, ...]]] = []
        for kind, x in p.steps():
            if kind == "numba":
                lines.append(f"    s{x}({', '.join(['b0', 'b1', *self.args])})")
                continue
            ins = spec.body[x - p.base]
            if any(spec.dtype_of(a) != ins.dtype for a in ins.args):
                return []
            lvl = p.level[x]
            ops = [self._address(a, lvl) for a in (*ins.args, x)]
            if any(o is None for o in ops):
                return []
            fn = {1: "call2", 2: "call3"}.get(len(ins.args))
            if fn is None:
                return []
            count = f"nb * {p.L}" if lvl == "full" else "nb"
            flat = [part for o in ops for part in o]   # type: ignore[union-attr]
            k = len(loops)
            loops.append((UFUNC_OPS[ins.op], tuple(spec.dtype_of(a) for a in (*ins.args, x))))
            lines.append(f"    if not {fn}(lp[{3 * k}:{3 * k + 3}], {', '.join(flat)}, {count}, buf):")
            lines.append("        return False")
        lines.append("return True")
        head = self.sig[1:-1].replace("void(", "boolean(", 1).rstrip(")")
        sig = f'"{head}, int64[::1], int64[::1], int64[::1])"'
        # the parallel variant: one task per thread, each with its own row of the 2-D scratch
        # (compiled on first use; a launch costs ~1 µs, a Python thread pool's hand-off ~20-50)
        shared = [a if a[0] in "io" else a.upper() for a in self.args]
        per_task = [a if a[0] in "io" else f"{a.upper()}[k]" for a in self.args]
        par = ["n = (r1 - r0 + per - 1) // per", "ok = np.zeros(n, np.bool_)", "for k in prange(n):",
               "    a = r0 + k * per",
               f"    ok[k] = run({', '.join(['a', 'min(r1, a + per)', *per_task, 'lp', 'kp', 'BUF[k]'])})",
               "for k in range(n):", "    if not ok[k]:", "        return False", "return True"]
        return [f"RPB = {p.rows_per_block}", f"LOOPS = {loops!r}", "", f"@njit({sig}, **_OPTS)",
                f"def run({', '.join(['r0', 'r1', *self.args, 'lp', 'kp', 'buf'])}):", *indent(lines, 1), "",
                "@njit(parallel=True, **_OPTS)",
                f"def run_par({', '.join(['r0', 'r1', 'per', *shared, 'lp', 'kp', 'BUF'])}):", *indent(par, 1), ""]

    def _address(self, a: int, lvl: str) -> tuple[str, str] | None:
        """Value ``a`` over block ``[b0, b1)`` as one strided run at level ``lvl``: (address, byte
        stride) in generated code, or None when it is not one (see :meth:`driver`)."""
        p, spec = self.p, self.spec
        size = np.dtype(spec.dtype_of(a)).itemsize
        per_row = p.L if lvl == "full" else 1
        if p.n_in <= a < p.base:
            return f"kp[{a - p.n_in}]", "0"
        if a < p.n_in:
            key = (a, lvl)
            if key not in p.view_of:
                return None
            vi = p.view_of[key]
            kind = p.views[vi][1]
            if kind == "one":
                return f"i{vi}.ctypes.data", "0"
            if (kind == "mat" and lvl == "full") or (kind == "rowv" and lvl == "row"):
                return f"i{vi}.ctypes.data + b0 * {per_row * size}", str(size)
            return None
        if a not in p.home or p.level[a] != lvl:
            return None
        kind, j = p.home[a]
        if kind == "o":
            return f"o{j}.ctypes.data + b0 * {per_row * size}", str(size)
        return f"{kind}{j}.ctypes.data", str(size)

    def name(self, a: int, level: str) -> str:
        """The variable holding value ``a`` where a value of ``level`` is computed."""
        if a < self.p.n_in:
            return f"x{a}" if level == "full" else f"y{a}"
        return f"v{a}"

    def expr(self, v: int) -> str:
        ins = self.spec.body[v - self.p.base]
        if v in self.p.inline:
            return f"expf_numpy({self.name(ins.args[0], self.p.level[v])})"
        lvl = self.p.level[v]
        return op_expr(ins.op, [self.name(a, lvl) for a in ins.args], [self.spec.dtype_of(a) for a in ins.args],
                       ins.dtype)

    def _at(self, v: int, row: bool) -> str:
        kind, j = self.p.home[v]
        if self.p.level[v] == "full":
            self.sliced.add(f"{kind}{j}")
            return f"{kind}{j}r[j]"
        return f"{kind}{j}[{'r' if kind == 'o' else 'rb'}]"

    def _reduce_operand(self, v: int, row: str) -> tuple[str, str]:
        """(buffer, offset of row ``row``) of the row reduction ``v``'s operand: an input or an
        output (rows at ``row * L``) or a block scratch (rows from the block start ``r0``)."""
        p = self.p
        a = p.spec.body[v - p.base].args[0]
        if a < p.n_in:
            return f"i{p.view_of[(a, 'full')]}", f"{row} * {p.L}"
        kind, j = p.home[a]
        return f"{kind}{j}", f"{row} * {p.L}" if kind == "o" else f"({row} - r0) * {p.L}"

    def _reduce(self, v: int, grouped: bool = False) -> str:
        """``v{v} = `` the row reduction ``v`` of row ``r``; ``grouped``: from ``m{v}[g]``, the
        sums of a group's rows computed at once (:meth:`_group_sums`)."""
        ins = self.spec.body[v - self.p.base]
        if grouped:
            val = f"m{v}[g]"
        elif v in self.p.lane_sums:
            val = self._lane_call(v, "r", 1)
        else:
            buf, off = self._reduce_operand(v, "r")
            fn = {"sum": "_rsum", "mean": "_rsum", "max": "_rmax", "min": "_rmin"}[ins.op]
            val = f"{fn}({buf}, {off}, {self.p.L})"
        if ins.op == "mean":
            val = f"({val} / {float_literal(float(self.p.L))})"
        return f"v{v} = {cast(val, 'float64', ins.dtype)}"

    def _group_sums(self, vs: list[int]) -> list[str]:
        """``m{v} = `` the sums of rows ``rg .. rg + ROWS - 1`` for each sum/mean ``v``."""
        lines = []
        for v in vs:
            if v in self.p.lane_sums:
                lines.append(f"m{v} = {self._lane_call(v, 'rg', ROWS)}")
                continue
            buf, off = self._reduce_operand(v, "rg")
            lines.append(f"m{v} = _rsum_rows({buf}, {off}, {self.p.L}, {self.p.L})")
        return lines

    def _lane_call(self, v: int, row: str, rows: int) -> str:
        """The call of row sum ``v``'s lane helper for rows ``row .. row + rows - 1`` (one row:
        its values by name; a group: kept row values ``k{u}[g]``)."""
        p = self.p

        def offset(kind: str, g: int) -> str:
            return "0" if kind == "col" else f"({row} + {g}) * {p.L}"

        def scalar(u: int, g: int) -> str:
            if u < p.n_in:
                return f"x{u}"
            return f"v{u}" if p.uni[u] or rows == 1 else f"k{u}[{g}]"

        return call_text(p.lane_sums[v], rows, offset, scalar)

    def _load_input(self, a: int, body: list[str], loaded: set[int]) -> None:
        """Input ``a``'s element ``j`` of this row as ``x{a}`` (a matrix or a column vector; a
        row-broadcast input is the per-row ``y{a}``, loaded before the loop)."""
        p = self.p
        kind = p.views[p.view_of[(a, "full")]][1]
        if kind in ("mat", "col"):
            vi = p.view_of[(a, "full")]
            if kind == "mat":
                self.sliced.add(f"i{vi}")
            body.append(f"x{a} = i{vi}{'r' if kind == 'mat' else ''}[j]")
            loaded.add(a)

    def stage(self, s: int) -> list[str]:
        """``s{s}(r0, r1, ...)``: stage ``s`` over rows ``[r0, r1)``. A stage with a row sum
        runs its rows in groups of ``ROWS``, pass by pass, the group's sums of a pass at once
        (:func:`~noodle.backends.numba_reduce._rsum_rows`: one row's sum is a chain of dependent
        adds; four overlap), then row by row as before for the rows left over."""
        p, spec = self.p, self.spec
        base = p.base
        mine = [v for v in range(base, spec.n_values) if p.stage[v] == s and not p.ufunc[v] and not p.uni[v]]
        used: set[int] = set()   # values read by this stage's instructions
        for v in mine:
            used.update(spec.body[v - base].args)
        top: list[str] = []
        for v in sorted(spec.closure(u for u in used if p.uni[u])):
            if v < p.n_in:
                top.append(f"y{v} = i{p.view_of[(v, 'row')] if (v, 'row') in p.view_of else p.view_of[(v, 'full')]}[0]")
                top.append(f"x{v} = y{v}")
            elif v < base:
                d, val = spec.consts[v - p.n_in]
                top.append(f"v{v} = {literal(d, val)}")
            else:
                top.append(f"v{v} = {self.expr(v)}")
        head = ["ro = r * " + str(p.L), f"bo = (r - r0) * {p.L}", "rb = r - r0"]
        for k in range(p.n_in):
            if p.uni[k] or k not in used:
                continue
            for lvl, var in (("full", "x"), ("row", "y")):
                if (k, lvl) in p.view_of and p.views[p.view_of[(k, lvl)]][1] == "rowv":
                    head.append(f"{var}{k} = i{p.view_of[(k, lvl)]}[r]")
        # row values from earlier stages (or ufuncs) read here
        for a in sorted(used):
            if a >= base and not p.uni[a] and p.level[a] == "row" and (p.stage[a] < s or p.ufunc[a]):
                head.append(f"v{a} = {self._at(a, True)}")
        n_pass = max((p.passes[v] for v in mine), default=0) + 1
        sums = [[v for v in mine if p.passes[v] == q and p.level[v] == "row"
                 and spec.body[v - base].op in ("sum", "mean")] for q in range(n_pass)]
        row = list(head)
        for q in range(n_pass):
            row += self._pass(q, mine, grouped=False)
        src = [f"@njit({self.sig}, **_OPTS)", f"def s{s}({', '.join(['r0', 'r1', *self.args])}):"]
        if not any(sums):
            return src + indent(top + ["for r in range(r0, r1):"] + indent(row or ["pass"], 1), 1) + [""]
        # grouped: row values a later pass reads are kept per row of the group
        kept = [v for v in mine if p.level[v] == "row" and p.passes[v] < n_pass - 1]
        top += [f"k{v} = np.empty(ROWS, np.{'bool_' if spec.dtype_of(v) == 'bool' else spec.dtype_of(v)})"
                for v in kept]
        group: list[str] = []
        for q in range(n_pass):
            body = ["r = rg + g", *head]
            body += [f"v{v} = k{v}[g]" for v in kept if p.passes[v] < q]
            body += self._pass(q, mine, grouped=True)
            body += [f"k{v}[g] = v{v}" for v in kept if p.passes[v] == q]
            group += self._group_sums(sums[q]) + ["for g in range(ROWS):"] + indent(body, 1)
        lines = top + ["rn = r0 + (r1 - r0) // ROWS * ROWS", "for rg in range(r0, rn, ROWS):"] + indent(group, 1)
        lines += ["for r in range(rn, r1):"] + indent(row, 1)
        return src + indent(lines, 1) + [""]

    def _pass(self, q: int, mine: list[int], grouped: bool) -> list[str]:
        """Pass ``q`` of one row (``r``): its row values, then its loop over the row's elements."""
        p, spec = self.p, self.spec
        base = p.base
        row: list[str] = []
        for v in mine:
            if p.passes[v] != q or p.level[v] != "row":
                continue
            ins = spec.body[v - base]
            if ins.op in _REDUCE:
                row.append(self._reduce(v, grouped and ins.op in ("sum", "mean")))
            else:
                row.append(f"v{v} = {self.expr(v)}")
            if v in p.home:
                row.append(f"{self._at(v, True)} = v{v}")
        loop = [v for v in mine if p.passes[v] == q and p.level[v] == "full" and v not in p.lane_only]
        live: set[int] = set()   # kept, or read by what is kept: the rest is computed elsewhere or not at all
        for v in reversed(loop):
            if v in p.home or v in live:
                live.add(v)
                live.update(spec.body[v - base].args)
        loop = [v for v in loop if v in live]
        if not loop:
            return row
        body: list[str] = []
        loaded: set[int] = set()
        for v in loop:
            for a in spec.body[v - base].args:
                if a in loaded or p.uni[a]:
                    continue
                if a < p.n_in:
                    self._load_input(a, body, loaded)
                elif a >= base and p.level[a] == "full" and (a not in loop):
                    if a in p.recompute and a not in p.home:
                        for b in spec.body[a - base].args:
                            if b < p.n_in and b not in loaded and not p.uni[b]:
                                self._load_input(b, body, loaded)
                        body.append(f"v{a} = {self.expr(a)}")
                    else:
                        body.append(f"v{a} = {self._at(a, False)}")
                    loaded.add(a)
        for v in loop:
            body.append(f"v{v} = {self.expr(v)}")
            if v in p.home:
                body.append(f"{self._at(v, False)} = v{v}")
        # each row's arrays sliced first: the loop index starts at 0 and LLVM drops the
        # negative-index checks that otherwise keep the loop from vectorizing
        for name in sorted(self.sliced):
            off = "bo" if name[0] in "t" else "ro"
            row.append(f"{name}r = {name}[{off}:{off} + {p.L}]")
        self.sliced.clear()
        row.append(f"for j in range({p.L}):")
        row += indent(body, 1)
        return row


# ---------------------------------------------------------------------------- the kernel
class RowKernel(Kernel):
    """A compiled row-wise region: ``kernel(*inputs)`` -> one array per ``spec.outputs`` entry."""

    backend = "numba"

    def __init__(self, spec: RowSpec, p: RowPlan, module: Any, hit: bool) -> None:
        self.spec = spec  # type: ignore[assignment]
        self.plan = p
        self.module = module
        self.from_cache = hit
        self._in = [(np.dtype(d), tuple(s)) for d, s in spec.inputs]
        self._out = [(np.dtype(spec.dtype_of(v)), tuple(shape)) for v, shape in spec.outputs]
        self._steps = []
        for kind, x in p.steps():
            if kind == "numba":
                self._steps.append(("numba", getattr(module, f"s{x}")))
            else:
                ins = spec.body[x - p.base]
                fn = getattr(np, UFUNC_OPS[ins.op])
                cast_to = ins.dtype if any(spec.dtype_of(a) != ins.dtype for a in ins.args) else None
                self._steps.append(("ufunc", (fn, x, ins.args, cast_to)))
        self._consts = {p.n_in + c: np.asarray(val, dtype=d) for c, (d, val) in enumerate(spec.consts)}
        self._pool = default_pool()
        self._run, self._lp, self._kp = self._driver()
        self._run_par = getattr(module, "run_par", None)

    def _driver(self) -> tuple[Any, np.ndarray, np.ndarray]:
        """The generated block driver with NumPy's loops for its ufunc steps (None where the
        module has none, or this NumPy gives no loop for a step: Python drives the blocks)."""
        found = resolve(self.module.LOOPS) if hasattr(self.module, "run") else None
        if found is None:
            return None, np.empty(0, np.int64), np.empty(0, np.int64)
        self._loops, lp = found   # the handles' capsules own what the addresses point to
        kp = np.array([c.ctypes.data for c in self._consts.values()], np.int64)
        return self.module.run, lp, kp

    def _views(self, inputs: tuple[Any, ...]) -> list[np.ndarray]:
        if len(inputs) != len(self._in):
            check_inputs(self.spec, inputs)   # type: ignore[arg-type]
        p = self.plan
        arrays = []
        for k, x in enumerate(inputs):
            dt, shape = self._in[k]
            if type(x) is not np.ndarray or x.dtype != dt or x.shape != shape:
                arr = np.asarray(x)
                if arr.dtype != dt or (arr.shape != shape and not (arr.size == 1 and math.prod(shape) == 1)):
                    check_inputs(self.spec, inputs)   # type: ignore[arg-type]
                    raise ShapeError(f"kernel inputs do not match the compiled spec (input shape {arr.shape})")
                inputs = (*inputs[:k], arr.reshape(shape), *inputs[k + 1:])
        for k, kind in p.views:
            x = inputs[k]
            # (never a broadcast view itself: it is read-only, and the stages take writable arrays)
            if kind == "one":
                v = np.ascontiguousarray(x).reshape(1)
            elif kind == "mat":
                v = np.ascontiguousarray(x if x.shape == p.full else np.broadcast_to(x, p.full)).reshape(-1)
            elif kind == "col":
                v = np.ascontiguousarray(x).reshape(p.L)
            else:
                v = np.ascontiguousarray(x if x.size == p.R else np.broadcast_to(x, (*self.spec.rows, 1))).reshape(p.R)
            if not v.flags.writeable:
                v = v.copy()
            arrays.append(v)
        return arrays

    def __call__(self, *inputs: Any) -> tuple[Any, ...]:
        refuse_swapped(self.spec, inputs)
        p = self.plan
        views = self._views(inputs)
        # large outputs from the tracked pool (reused once the caller drops them): fresh memory
        # costs a page fault per 4 KiB, as much as the kernel's own work here
        pool = self._pool
        outs = [np.empty(math.prod(shape), dt) if math.prod(shape) * dt.itemsize < pool.min_bytes
                else pool.take((math.prod(shape),), dt, track=True) for dt, shape in self._out]
        for j, (v, _shape) in enumerate(self.spec.outputs):
            first = p.out_index[v]
            if first != j:
                outs[j] = outs[first]
        n_blocks = -(-p.R // p.rows_per_block)
        threads = 1 if n_blocks == 1 or p.R * p.L < PARALLEL_MIN else cpu_threads()   # (a syscall: once)
        if self._run is not None:
            self._drive(views, outs, n_blocks, threads)
        elif threads < 2:
            t, u = self._scratch()
            for b in range(n_blocks):
                self._block(b, views, outs, t, u)
        else:
            shared = iter(range(n_blocks))   # next() on a range iterator is atomic under the GIL
            workers = min(threads, n_blocks)
            pool = numba_threads.workers()
            futures = [pool.submit(self._blocks, shared, views, outs) for _ in range(1, workers)]
            self._blocks(shared, views, outs)
            for f in futures:
                f.result()
        return tuple(o.reshape(shape) for o, (_dt, shape) in zip(outs, self._out, strict=True))

    def _drive(self, views: list[np.ndarray], outs: list[np.ndarray], n_blocks: int, threads: int) -> None:
        """Every block through the compiled driver: in the caller alone (``threads`` 1); as one task per thread
        in the driver's ``prange`` variant; or, when another thread holds the parallel lock,
        block by block on the shared worker threads (dynamic scheduling).

        Why ``prange`` from two blocks: with OpenMP's workers spinning briefly after a loop
        (``GOMP_SPINCOUNT``, see ``noodle/__init__``) a launch costs 1-2 µs, and the Python pool's
        hand-off still costs a thread wake-up (tens of µs). Measured here (2 cores) at 16 blocks
        (512x1024 float32 layernorm): 64-78 µs through ``prange``, 112-150 µs before, when
        OpenMP's workers slept at once."""
        p = self.plan
        if threads < 2:
            self._task(0, p.R, views, outs)
            return
        workers = min(threads, n_blocks)
        lock = numba_threads.parallel_lock()
        if self._run_par is not None and n_blocks >= PRANGE_MIN_BLOCKS and lock.acquire(blocking=False):
            try:
                t, u, buf = self._shared_scratch(workers)
                if not self._run_par(0, p.R, -(-p.R // workers), *views, *t, *u, *outs, self._lp, self._kp, buf):
                    raise ExecutionError(f"NumPy's inner loop failed in row-wise kernel {self.spec.key()}")
            finally:
                lock.release()
            return
        rb = p.rows_per_block
        shared = iter(range(0, p.R, rb))   # next() on a range iterator is atomic under the GIL
        pool = numba_threads.workers()
        futures = [pool.submit(self._tasks, shared, views, outs) for _ in range(1, workers)]
        self._tasks(shared, views, outs)
        for f in futures:
            f.result()

    def _tasks(self, shared: Any, views: list[np.ndarray], outs: list[np.ndarray]) -> None:
        rb, n = self.plan.rows_per_block, self.plan.R
        for r0 in shared:
            self._task(r0, min(n, r0 + rb), views, outs)

    def _task(self, r0: int, r1: int, views: list[np.ndarray], outs: list[np.ndarray]) -> None:
        t, u = self._scratch()
        if not self._run(r0, r1, *views, *t, *u, *outs, self._lp, self._kp, np.empty(8, np.int64)):
            raise ExecutionError(f"NumPy's inner loop failed in row-wise kernel {self.spec.key()}")

    def _shared_scratch(self, workers: int) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """One scratch row per task of the parallel driver (used under the parallel lock only)."""
        p = self.plan
        got = getattr(self, "_par_scratch", None)
        if got is None or got[2].shape[0] != workers:
            rb = p.rows_per_block
            got = self._par_scratch = ([np.empty((workers, rb * p.L), d) for d in p.t_dtypes],
                                       [np.empty((workers, rb), d) for d in p.u_dtypes],
                                       np.empty((workers, 8), np.int64))
        return got

    def _scratch(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        cache = getattr(_local, "scratch", None)
        if cache is None:
            cache = _local.scratch = {}
        p = self.plan
        rb = p.rows_per_block
        key = (rb * p.L, rb, tuple(p.t_dtypes), tuple(p.u_dtypes))
        bufs = cache.get(key)
        if bufs is None:
            bufs = cache[key] = ([np.empty(rb * p.L, d) for d in p.t_dtypes], [np.empty(rb, d) for d in p.u_dtypes])
        return bufs

    def _blocks(self, shared: Any, views: list[np.ndarray], outs: list[np.ndarray]) -> None:
        t, u = self._scratch()
        for b in shared:
            self._block(b, views, outs, t, u)

    def _block(self, b: int, views: list[np.ndarray], outs: list[np.ndarray], t: list[np.ndarray],
               u: list[np.ndarray]) -> None:
        p = self.plan
        r0 = b * p.rows_per_block
        r1 = min(p.R, r0 + p.rows_per_block)
        for kind, what in self._steps:
            if kind == "numba":
                what(r0, r1, *views, *t, *u, *outs)
                continue
            fn, v, args, cast_to = what
            lvl = p.level[v]
            srcs = [self._operand(a, lvl, r0, r1, views, outs, t, u) for a in args]
            dst = self._operand(v, lvl, r0, r1, views, outs, t, u)
            if cast_to is None:
                fn(*srcs, out=dst)
            else:
                fn(*srcs, out=dst, dtype=cast_to)

    def _operand(self, a: int, lvl: str, r0: int, r1: int, views: list[np.ndarray], outs: list[np.ndarray],
                 t: list[np.ndarray], u: list[np.ndarray]) -> Any:
        """Value ``a`` over rows ``r0 .. r1`` as an array a ufunc of level ``lvl`` broadcasts."""
        p = self.plan
        nb, L = r1 - r0, p.L
        if a in self._consts:
            return self._consts[a]
        if a < p.n_in:
            vi = p.view_of[(a, lvl)]
            kind = p.views[vi][1]
            x = views[vi]
            if kind == "mat":
                return x[r0 * L:r1 * L].reshape(nb, L)
            if kind == "rowv":
                return x[r0:r1].reshape(nb, 1) if lvl == "full" else x[r0:r1]
            return x
        kind, j = p.home[a]
        if p.level[a] == "full":
            return (outs[j][r0 * L:r1 * L] if kind == "o" else t[j][:nb * L]).reshape(nb, L)
        col = outs[j][r0:r1] if kind == "o" else u[j][:nb]
        return col.reshape(nb, 1) if lvl == "full" else col


def source(spec: RowSpec) -> str:
    """The generated module source for ``spec`` (what the kernel cache holds)."""
    return _Gen(RowPlan(spec)).module()


def compile_rowwise(spec: RowSpec, cache_dir: Any = None) -> RowKernel:
    """Plan, generate and load the kernel of ``spec`` (CompileError when it cannot be built here)."""
    for dt, _ in spec.inputs:
        nb_type(dt)
    for ins in spec.body:
        nb_type(ins.dtype)
    t0 = time.perf_counter()
    p = RowPlan(spec)
    check_portable_casts(spec)   # type: ignore[arg-type]
    check_integer_power(spec)    # type: ignore[arg-type]
    src = _Gen(p).module()
    key = "row_" + spec.key() + ("_xf" if p.inline else "")
    try:
        module = load_module(key, src, cache_dir)
    except CompileError:
        raise
    except Exception as exc:
        raise CompileError(f"numba failed to compile row-wise kernel {key}: {type(exc).__name__}: {exc}") from exc
    hit = from_cache(module)
    _COMPILES.labels("disk" if hit else "compiled").inc()
    metrics.emit("jit.compile", backend="numba", key=key, mode="rowwise", seconds=time.perf_counter() - t0,
                 from_cache=hit)
    return RowKernel(spec, p, module, hit)


__all__ = ["BLOCK", "RowKernel", "RowPlan", "compile_rowwise", "source"]
