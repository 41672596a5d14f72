"""Python/Numba source generation for one :class:`KernelSpec`.

Why generate source text (instead of composing closures): the text is the
on-disk cache entry (``<cache_dir>/kernels/<key>.py``) that Numba's own
``cache=True`` keys its compiled machine code on, so a second process imports
it and skips compilation; and a human can read exactly what runs.

Shapes of the generated code (all sizes and strides are literal constants):

* ``flat``: one (p)range loop over the collapsed 1-D iteration space;
* ``rows``: (p)range over the outer dims, inner loop over the last one
  (broadcast inputs read with stride 0);
* ``chunks``: full reduction of a 1-D space in the defined order of
  :mod:`noodle.ir.reduction` (chunks of ``CHUNK`` elements in parallel, ``LANES``
  independent accumulators in each, chunk values added in order by the driver),
  identical in the serial and the parallel variant and in the interpreter;
* ``stages``: transcendental ops (``exp``...) evaluated by NumPy's SIMD
  ufuncs on cache-sized blocks (32 Ki elements) between serial Numba stages, at
  every size: Numba's ``exp`` is a scalar libm call, ~5x slower than NumPy's
  vectorized one on this machine and different from it in the last bit;
* ``split``: any other reduction (over some axes, or over an N-d space): the
  kernel computes the values, the defined-order reduction runs on them.

Each variant is emitted twice, ``k_par`` (prange) and ``k_ser`` (range): the
runtime never uses threads below ~1e5 elements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from noodle.backends.layout import spec_layout
from noodle.backends.op_text import (
    COMPARE,
    MATH,
    cast_pair,
    check_integer_power,
    check_portable_casts,
    compare_dtype,
    infix,
    is_float,
    truth,
)
from noodle.backends.spec import KernelSpec
from noodle.errors import CompileError, DTypeError
from noodle.ir.ops import LIBM_OPS, OPS
from noodle.ir.reduction import CHUNK, LANES, acc_dtype

PARALLEL_MIN = 100_000          # elements; below this every kernel runs serially (no thread start-up)
BLOCK = 1 << 15                  # elements per block in the ``stages`` variant (256 KiB of float64)
assert BLOCK % CHUNK == 0, "a stages block must hold whole reduction chunks"
# ops whose float bits are NumPy's (its SIMD/SVML loops; ir/ops.py ``libm``): evaluated by NumPy
# ufuncs between Numba stages; also ~5x faster than Numba's scalar libm calls on this machine
UFUNC_OPS = {name: str(OPS[name].numpy) for name in sorted(LIBM_OPS)}
ARITH = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/", "power": "**"}
SUPPORTED_DTYPES = {"float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
                    "uint32", "uint64", "bool"}


def nb_type(dtype: str) -> str:
    """Numba type name of a dtype string."""
    if dtype not in SUPPORTED_DTYPES:
        raise DTypeError(f"the Numba backend does not support dtype {dtype!r}; "
                         f"supported: {', '.join(sorted(SUPPORTED_DTYPES))}")
    return "boolean" if dtype == "bool" else dtype


def np_ctor(dtype: str) -> str:
    return "np.bool_" if dtype == "bool" else f"np.{dtype}"


def _cast(name: str, have: str, want: str) -> str:
    if have == want:
        return name
    if want == "bool":
        return f"({name} != 0)"
    return f"{np_ctor(want)}({name})"


_NARROW_INTS = frozenset({"int8", "int16", "int32", "uint8", "uint16", "uint32"})


def op_expr(op: str, args: list[str], dts: list[str], out: str) -> str:
    """One elementwise op as a Numba expression over scalar names (NumPy semantics)."""
    expr = _op_expr(op, args, dts, out)
    if out in _NARROW_INTS and (op in ARITH or op in ("negative", "abs")):
        # Numba computes int8 * int8 in int64; NumPy wraps to int8, and so must every use of the
        # value (a reduction, a comparison), not only the store
        return f"{np_ctor(out)}({expr})"
    return expr


def _op_expr(op: str, args: list[str], dts: list[str], out: str) -> str:
    if op in ARITH:
        return infix(ARITH[op], args, dts, out, _cast)
    if op in COMPARE:
        return infix(COMPARE[op], args, dts, compare_dtype(dts), _cast)
    if op in ("maximum", "minimum"):
        a, b = cast_pair(args, dts, out, _cast)
        rel = ">" if op == "maximum" else "<"
        if is_float(out):  # NumPy: NaN from either side (a's if both), and b when they are equal (±0)
            return f"({a} if ({a} {rel} {b} or {a} != {a}) else {b})"
        return f"({a} if {a} {rel} {b} else {b})"
    if op == "negative":
        return f"(-{_cast(args[0], dts[0], out)})"
    if op == "abs":
        return f"abs({_cast(args[0], dts[0], out)})"
    if op in MATH:
        return f"np.{op}({_cast(args[0], dts[0], out)})"
    if op == "where":
        c = truth(args[0], dts[0])
        return f"({_cast(args[1], dts[1], out)} if {c} else {_cast(args[2], dts[2], out)})"
    if op == "astype":
        return _cast(args[0], dts[0], out)
    raise CompileError(f"the Numba backend cannot generate op {op!r} inside a fused kernel")


@dataclass
class Plan:
    """What the generator decided: loop shape, collapsed layout, and the stages."""

    mode: str
    shape: tuple[int, ...]
    in_strides: list[tuple[int, ...]]
    out_strides: tuple[int, ...]
    reduced: list[bool]
    n: int
    acc_dtype: str = ""
    stages: list[dict] = field(default_factory=list)
    n_scratch: int = 0
    scratch_dtypes: list[str] = field(default_factory=list)


def plan(spec: KernelSpec) -> Plan:
    """Pick the loop shape for ``spec`` (see the module docstring)."""
    check_integer_power(spec)
    check_portable_casts(spec)
    lay = spec_layout(spec, nb_type)
    red = spec.reduce
    cshape, cred, n = lay.cshape, lay.reduced, lay.n
    p = Plan("flat", cshape, lay.in_strides, lay.out_strides, cred, n)
    if red is not None:
        p.acc_dtype = acc_dtype(red.op, spec.dtype_of(red.value))   # the defined order's
    full_1d = red is not None and all(cred) and len(cshape) <= 1
    if red is not None and not full_1d:
        # a reduction over some axes (or over an N-d space): the kernel computes the values and
        # the defined-order reduction (noodle.ir.reduction) runs on them, so the bits are the
        # interpreter's; only 1-D full reductions follow the order inside the kernel
        p.mode = "split"
    elif n > 0 and _has_ufunc_work(spec, p):
        # NumPy's SIMD exp/log/sin/cos/tanh at every size: Numba's libm calls differ from them
        # in the last bit, and the compiled result must be the interpreter's
        from noodle.backends.numba_stages import plan_stages  # (imports this module)

        p.mode = "stages"
        plan_stages(spec, p)
    elif len(cshape) <= 1:
        p.mode = "flat" if red is None else "chunks"
    else:
        p.mode = "rows"
    return p


def _uniform(spec: KernelSpec, p: Plan) -> list[bool]:
    """Per value: True when it is the same at every point (constants, size-1 inputs). In a
    one-point space inputs count as varying: their exp/pow... then run as NumPy stages."""
    n_in = len(spec.inputs)
    uni = [p.n > 1 and all(s == 0 for s in p.in_strides[k]) for k in range(n_in)]
    uni += [True] * len(spec.consts)
    for ins in spec.body:
        uni.append(all(uni[a] for a in ins.args))
    return uni


def _has_ufunc_work(spec: KernelSpec, p: Plan) -> bool:
    uni = _uniform(spec, p)
    base = len(spec.inputs) + len(spec.consts)
    e = _Emitter(spec, p)
    for i, ins in enumerate(spec.body):
        if ins.op in UFUNC_OPS and is_float(ins.dtype) and uni[base + i] and not e._const_only(base + i):
            # the fusion pass leaves one-element exp/pow... to the interpreter; a value that is
            # uniform only through a broadcast input would be computed here with libm: refuse
            raise CompileError(f"kernel {spec.key()}: {ins.op} of a broadcast scalar would not give NumPy's "
                               "bits in a Numba kernel; it runs interpreted")
    return any(ins.op in UFUNC_OPS and is_float(ins.dtype) for ins in spec.body)


def float_literal(x: float) -> str:
    """Source text for ``x`` that Numba compiles (repr gives 'nan'/'inf', which it does not)."""
    if x != x:
        return "np.nan"
    if x in (float("inf"), float("-inf")):
        return "np.inf" if x > 0 else "-np.inf"
    return repr(x)


# ----------------------------------------------------------------------------- emission
class _Emitter:
    def __init__(self, spec: KernelSpec, p: Plan) -> None:
        self.spec = spec
        self.p = p
        self.n_in = len(spec.inputs)
        self.base = self.n_in + len(spec.consts)
        self.uni = _uniform(spec, p)

    def name(self, v: int, sfx: str = "") -> str:
        return f"v{v}" if self.uni[v] else f"v{v}{sfx}"

    def hoisted(self, needed: set[int]) -> list[str]:
        """Lines computing the uniform values among ``needed`` once, before the loop."""
        lines = []
        closure = self._closure(needed)
        for v in sorted(closure):
            if not self.uni[v]:
                continue
            if v < self.n_in:
                lines.append(f"v{v} = i{v}[0]")
            elif v < self.base:
                d, val = self.spec.consts[v - self.n_in]
                lit = repr(bool(val)) if d == "bool" else repr(int(val)) if not is_float(d) else float_literal(float(val))
                lines.append(f"v{v} = {np_ctor(d)}({lit})")
            elif self.spec.body[v - self.base].op in UFUNC_OPS and self._const_only(v):
                lines.append(f"v{v} = {self._literal(v)}")   # NumPy's bits, folded here
            else:
                lines.append(f"v{v} = {self._expr(v, '')}")
        return lines

    def _const_only(self, v: int) -> bool:
        if v < self.n_in:
            return False
        return v < self.base or all(self._const_only(a) for a in self.spec.body[v - self.base].args)

    def _value(self, v: int) -> np.ndarray:
        """A constant-only value computed with NumPy, as the interpreter would (0-d array)."""
        if v < self.base:
            d, val = self.spec.consts[v - self.n_in]
            return np.asarray(val, dtype=d)
        ins = self.spec.body[v - self.base]
        from noodle.backends.reference import apply_op  # noqa: PLC0415 - reference imports nothing of ours

        return np.asarray(apply_op(ins.op, [self._value(a) for a in ins.args], ins.dtype, dict(ins.attrs)))

    def _literal(self, v: int) -> str:
        val = self._value(v)
        d = val.dtype.name
        if d == "bool":
            return f"np.bool_({bool(val)!r})"
        return f"{np_ctor(d)}({float_literal(float(val))})" if is_float(d) else f"{np_ctor(d)}({int(val)!r})"


    def _closure(self, values: set[int]) -> set[int]:
        seen: set[int] = set()
        stack = list(values)
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            if v >= self.base:
                stack.extend(self.spec.body[v - self.base].args)
        return seen

    def _expr(self, v: int, sfx: str) -> str:
        ins = self.spec.body[v - self.base]
        return op_expr(ins.op, [self.name(a, sfx) for a in ins.args],
                       [self.spec.dtype_of(a) for a in ins.args], ins.dtype)

    def body(self, targets: set[int], load: dict[int, str], sfx: str, stop: set[int] | None = None) -> list[str]:
        """Lines computing every varying value ``targets`` needs; ``load`` gives array reads."""
        lines = []
        need = set()
        stack = list(targets)
        while stack:
            v = stack.pop()
            if v in need or self.uni[v]:
                continue
            need.add(v)
            if v in load:
                continue
            if v < self.n_in:
                raise CompileError(f"internal: no load for input {v}")
            stack.extend(self.spec.body[v - self.base].args)
        for v in sorted(need):
            if v in load:
                lines.append(f"v{v}{sfx} = {load[v]}")
            else:
                lines.append(f"v{v}{sfx} = {self._expr(v, sfx)}")
        return lines


def _acc_update(op: str, acc: str, val: str, acc_dt: str, val_dt: str) -> str:
    x = _cast(val, val_dt, acc_dt)
    if op in ("sum", "mean"):
        return f"{acc} += {x}"
    rel = ">" if op == "max" else "<"
    if is_float(acc_dt):
        # NaN wins; between zeros max takes +0.0 and min -0.0 (the defined order's rule)
        zero = f"math.copysign(1.0, {acc}) < 0" if op == "max" else f"math.copysign(1.0, {x}) < 0"
        return f"{acc} = {x} if ({x} {rel} {acc} or {x} != {x} or ({x} == {acc} and {acc} == 0 and {zero})) else {acc}"
    return f"{acc} = {x} if {x} {rel} {acc} else {acc}"


def acc_init(op: str, acc_dt: str) -> str:
    if op in ("sum", "mean"):
        return f"{np_ctor(acc_dt)}(-0.0)" if is_float(acc_dt) else f"{np_ctor(acc_dt)}(0)"
    if is_float(acc_dt):
        return f"{np_ctor(acc_dt)}({'-' if op == 'max' else ''}np.inf)"
    info = np.iinfo(np.dtype(acc_dt))
    return f"{np_ctor(acc_dt)}({info.min if op == 'max' else info.max})"


def lane_reduce(spec: KernelSpec, e: _Emitter, p: Plan, targets: set[int], start: str, m: str,
                loads: Callable[[str], dict[int, str]], out_prefix: str | None,
                extra: Callable[[str], dict[int, str]] | None = None) -> list[str]:
    """Lines reducing the ``m`` values at positions ``start .. start+m`` of one chunk into
    ``acc0``, in the defined order (:mod:`noodle.ir.reduction`): element ``t`` of the chunk goes
    to lane ``t % LANES``, each lane adds in order, then the lanes are added in order.

    The lanes are a small array updated in an inner loop of ``LANES`` steps (eight scalar
    accumulators measured 2.6x slower in float64 here; LLVM does not vectorize either form, since
    Numba turns off its SLP vectorizer: ``backends/numba_reduce.py`` shows a vector form).
    ``loads(index) -> {value: expression}`` reads the arrays at a position; ``extra(index)`` adds
    loads (scratch buffers); outputs (if ``out_prefix``) are stored at the same positions.
    """
    red = spec.reduce
    assert red is not None
    vdt = spec.dtype_of(red.value)

    def element(idx: str) -> list[str]:
        load = dict(loads(idx))
        if extra is not None:
            load.update(extra(idx))
        out = e.body(targets, load, "")
        if out_prefix is not None:
            out += _store_outputs(spec, e, idx, "", out_prefix)
        out.append(_acc_update(red.op, "lane[u]", e.name(red.value, ""), p.acc_dtype, vdt))
        return out

    lines = [f"lane = np.full({LANES}, {acc_init(red.op, p.acc_dtype)}, {np_ctor(p.acc_dtype)})"]
    lines.append(f"for q in range({m} // {LANES}):")
    lines.append(f"    j = {start} + q * {LANES}")
    lines.append(f"    for u in range({LANES}):")
    lines += _indent(element("j + u"), 2)
    lines.append(f"jt = {start} + ({m} // {LANES}) * {LANES}")
    lines.append(f"for u in range({m} - ({m} // {LANES}) * {LANES}):")
    lines += _indent(element("jt + u"), 1)
    lines.append("acc0 = lane[0]")
    lines.append(f"for u in range(1, {LANES}):")
    lines.append("    " + _acc_update(red.op, "acc0", "lane[u]", p.acc_dtype, p.acc_dtype))
    return lines


def _indent(lines: list[str], n: int) -> list[str]:
    return [" " * (4 * n) + ln for ln in lines]


def _sig_array(dtype: str) -> str:
    return f"{nb_type(dtype)}[::1]"


def generate(spec: KernelSpec, p: Plan) -> str:
    """The full module source for ``spec`` under plan ``p``."""
    fm = "True" if spec.fastmath else "False"
    head = [
        f'"""noodle kernel {spec.key()} (mode {p.mode}); generated, do not edit."""',
        "import math",
        "import numpy as np",
        "from numba import njit, prange",
        "",
        f"_OPTS = dict(cache=True, error_model='numpy', fastmath={fm}, nogil=True)",
        f"MODE = {p.mode!r}",
        f"N = {p.n}",
        "",
    ]
    e = _Emitter(spec, p)
    in_args = [f"i{k}" for k in range(e.n_in)]
    out_args = [f"o{j}" for j in range(len(spec.outputs))]
    in_sig = [_sig_array(d) for d, _ in spec.inputs]
    out_sig = [_sig_array(spec.dtype_of(v)) for v in spec.outputs]
    src = list(head)
    if p.mode == "stages":
        from noodle.backends.numba_stages import gen_stages

        src += gen_stages(spec, p, e, in_args, out_args, in_sig, out_sig)
        return "\n".join(src) + "\n"
    red = spec.reduce
    extra_args, extra_sig = [], []
    if red is not None:
        extra_args, extra_sig = ["part"], [_sig_array(p.acc_dtype)]
    args = in_args + out_args + extra_args
    sig = f'"boolean({", ".join(in_sig + out_sig + extra_sig)})"'
    # the kernel checks its own operand sizes (nanoseconds here, a microsecond in Python) and
    # returns False without touching memory when they do not fit; the caller then reports why
    sizes = [int(np.prod(s)) if s else 1 for _, s in spec.inputs] + [p.n] * len(spec.outputs)
    size_check = " or ".join(f"{a}.shape[0] != {z}" for a, z in zip(in_args + out_args, sizes, strict=True))
    if red is not None:
        size_check += f" or part.shape[0] < {n_partials(p)}"
    # small spaces never run threaded: no parallel variant (it is the slow one to compile).
    # Large ones compile the parallel variant now and the serial one (used only when another
    # thread holds the parallel lock) lazily, on first use.
    variants = [("k_ser", "range", "False", sig)]
    if p.n >= PARALLEL_MIN:
        variants = [("k_par", "prange", "True", sig), ("k_ser", "range", "False", "")]
    for variant, loop, par, vsig in variants:
        if p.mode not in _GENERATORS:
            raise CompileError(f"internal: no generated code for loop shape {p.mode!r}")
        gen = _GENERATORS[p.mode]
        body = gen(spec, p, e, loop)
        src.append(f"@njit({vsig + ', ' if vsig else ''}parallel={par}, **_OPTS)")
        src.append(f"def {variant}({', '.join(args)}):")
        src += _indent([f"if {size_check}:", "    return False"] + body + ["return True"], 1)
        src.append("")
    return "\n".join(src) + "\n"


def n_partials(p: Plan) -> int:
    """Length of the partials array a reduction kernel writes (see NumbaKernel._finish)."""
    if p.mode in ("chunks", "stages"):
        return max(1, -(-p.n // CHUNK))
    kept = [s for s, r in zip(p.shape, p.reduced, strict=True) if not r]
    return int(np.prod(kept)) if kept else p.shape[0]


def _targets(spec: KernelSpec) -> set[int]:
    t = set(spec.outputs)
    if spec.reduce is not None:
        t.add(spec.reduce.value)
    return t


def _loads(e: _Emitter, idx: list[str], prefix: str = "i") -> dict[int, str]:
    return {k: f"{prefix}{k}[{idx[k]}]" for k in range(e.n_in) if not e.uni[k]}


def _store_outputs(spec: KernelSpec, e: _Emitter, oidx: str, sfx: str, prefix: str = "o") -> list[str]:
    return [f"{prefix}{j}[{oidx}] = {_cast(e.name(v, sfx), spec.dtype_of(v), spec.dtype_of(v))}"
            for j, v in enumerate(spec.outputs)]


def _gen_flat(spec: KernelSpec, p: Plan, e: _Emitter, loop: str) -> list[str]:
    lines = e.hoisted(_targets(spec))
    lines.append(f"for i in {loop}({p.n}):")
    body = e.body(_targets(spec), _loads(e, ["i"] * e.n_in), "")
    body += _store_outputs(spec, e, "i", "")
    return lines + _indent(body or ["pass"], 1)


def _segment_loads(p: Plan, base: dict[int, str], lo: str, hi: str, col: str
                   ) -> tuple[list[str], dict[int, str]]:
    """How each varying input is read along a contiguous-last-axis segment indexed by ``j``.

    ``base`` maps each varying input to its offset expression at the segment's row; the
    segment spans ``base + lo`` to ``base + hi`` and element ``j`` sits at column ``col``.
    Contiguous operands are sliced (index ``j`` from 0: no negative-index checks, the loop
    vectorizes), operands broadcast along the row are read once, others are strided.
    Returns the lines to emit before the loop and the per-input load expressions.
    """
    lines: list[str] = []
    load: dict[int, str] = {}
    for k, b in base.items():
        st = p.in_strides[k][-1]
        if st == 0:
            lines.append(f"s{k} = i{k}[{b}]")
            load[k] = f"s{k}"
        elif st == 1:
            lines.append(f"w{k} = i{k}[{b}{lo}:{b}{hi}]")
            load[k] = f"w{k}[j]"
        else:
            load[k] = f"i{k}[{b} + {col} * {st}]"
    return lines, load


def _gen_rows(spec: KernelSpec, p: Plan, e: _Emitter, loop: str) -> list[str]:
    shape = p.shape
    rows = int(np.prod(shape[:-1]))
    last = shape[-1]
    lines = e.hoisted(_targets(spec))
    lines.append(f"for r in {loop}({rows}):")
    # fresh names per level: Numba's parfor pass rejects reassigning anything derived from the index
    inner = ["q0 = r"] + [f"b{k} = 0" for k in range(e.n_in) if not e.uni[k]]
    for lvl, d in enumerate(range(len(shape) - 2, -1, -1)):
        inner.append(f"x{lvl} = q{lvl} % {shape[d]}")
        inner.append(f"q{lvl + 1} = q{lvl} // {shape[d]}")
        for k in range(e.n_in):
            if not e.uni[k] and p.in_strides[k][d]:
                inner.append(f"b{k} += x{lvl} * {p.in_strides[k][d]}")
    inner.append(f"ob = r * {last}")
    # per row: contiguous operands are sliced (index j from 0: no negative-index checks, the
    # inner loop vectorizes) and operands broadcast along the row are read once
    varying = [k for k in range(e.n_in) if not e.uni[k]]
    seg, load = _segment_loads(p, {k: f"b{k}" for k in varying}, "", f" + {last}", "j")
    inner += seg
    inner += [f"y{j} = o{j}[ob:ob + {last}]" for j in range(len(spec.outputs))]
    inner.append(f"for j in range({last}):")
    body = e.body(_targets(spec), load, "") + _store_outputs(spec, e, "j", "", "y")
    inner += _indent(body or ["pass"], 1)
    return lines + _indent(inner, 1)


def _gen_chunks(spec: KernelSpec, p: Plan, e: _Emitter, loop: str) -> list[str]:
    """Full reduction of a 1-D space in the defined order: chunks of ``CHUNK`` elements (the
    parallel loop), each sliced so its index starts at 0 (no negative-index checks), reduced in
    ``LANES`` lanes; the driver adds the chunk values in order."""
    nchunk = max(1, -(-p.n // CHUNK))
    lines = e.hoisted(_targets(spec))
    lines.append(f"for c in {loop}({nchunk}):")
    inner = [f"lo = c * {CHUNK}", f"hi = min(lo + {CHUNK}, {p.n})", "m = hi - lo"]
    inner += [f"x{k} = i{k}[lo:hi]" for k in range(e.n_in) if not e.uni[k]]
    inner += [f"y{j} = o{j}[lo:hi]" for j in range(len(spec.outputs))]
    inner += lane_reduce(spec, e, p, _targets(spec), "0", "m", lambda ix: _loads(e, [ix] * e.n_in, "x"), "y")
    inner.append("part[c] = acc0")
    return lines + _indent(inner, 1)


_GENERATORS = {"flat": _gen_flat, "rows": _gen_rows, "chunks": _gen_chunks}


__all__ = ["BLOCK", "PARALLEL_MIN", "Plan", "generate", "lane_reduce", "n_partials", "plan"]
