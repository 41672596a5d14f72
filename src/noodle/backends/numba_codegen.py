"""Python/Numba source generation for one :class:`KernelSpec`.

Why generate source text (instead of composing closures): the text is the
on-disk cache entry (``<cache_dir>/kernels/<key>.py``) that Numba's own
``cache=True`` keys its compiled machine code on, so a second process imports
it and skips compilation; and a human can read exactly what runs.

Shapes of the generated code (all sizes and strides are literal constants):

* ``flat``: one (p)range loop over the collapsed 1-D iteration space;
* ``rows``: (p)range over the outer dims, inner loop over the last one
  (broadcast inputs read with stride 0);
* ``chunks``: full reduction of a 1-D space in ``NCHUNK`` fixed chunks, four
  independent accumulators per chunk (breaks the add latency chain; NumPy's
  pairwise sum combines the chunk partials), identical in the serial and the
  parallel variant so results do not depend on the thread count;
* ``outer``: reductions over outer axes with the contiguous last axis kept
  (``x.sum(axis=0)``): each task owns a segment of result elements and walks
  the reduced rows, so reads stay contiguous and the update vectorizes;
* ``nested``: other reductions over some axes: (p)range over kept elements,
  nested loops over the reduced axes;
* ``stages``: transcendental ops (``exp``...) evaluated by NumPy's SIMD
  ufuncs on cache-sized blocks (32 Ki elements) between serial Numba stages (Numba's ``exp`` is
  a scalar libm call, ~5x slower than NumPy's vectorized one on this machine).

Each variant is emitted twice, ``k_par`` (prange) and ``k_ser`` (range): the
runtime never uses threads below ~1e5 elements.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from noodle.backends.layout import spec_layout
from noodle.backends.op_text import COMPARE, MATH, cast_pair, compare_dtype, infix, is_float, truth
from noodle.backends.spec import KernelSpec
from noodle.errors import CompileError, DTypeError

PARALLEL_MIN = 100_000          # elements; below this every kernel runs serially (no thread start-up)
NCHUNK = 64                      # fixed chunk count of full reductions (deterministic results)
BLOCK = 1 << 15                  # elements per block in the ``stages`` variant (256 KiB of float64)
# ops NumPy evaluates faster (SIMD) than Numba's scalar libm call, measured on this machine
UFUNC_OPS = {"exp": "exp", "log": "log", "sin": "sin", "cos": "cos", "tanh": "tanh"}
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


def op_expr(op: str, args: list[str], dts: list[str], out: str) -> str:
    """One elementwise op as a Numba expression over scalar names (NumPy semantics)."""
    if op in ARITH:
        return infix(ARITH[op], args, dts, out, _cast)
    if op in COMPARE:
        return infix(COMPARE[op], args, dts, compare_dtype(dts), _cast)
    if op in ("maximum", "minimum"):
        a, b = cast_pair(args, dts, out, _cast)
        rel = ">=" if op == "maximum" else "<="
        if is_float(out):  # NumPy propagates NaN from either side
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


def acc_dtype(op: str, dtype: str, value_dtype: str) -> str:
    """Accumulator dtype: float64 for float sums (even of float32), int64 for integer sums."""
    if op in ("sum", "mean"):
        return "float64" if is_float(value_dtype) or is_float(dtype) else "int64"
    return "int64" if value_dtype == "bool" else value_dtype


def plan(spec: KernelSpec, allow_stages: bool = True) -> Plan:
    """Pick the loop shape for ``spec`` (see the module docstring)."""
    lay = spec_layout(spec, nb_type)
    red = spec.reduce
    cshape, cred, n = lay.cshape, lay.reduced, lay.n
    p = Plan("flat", cshape, lay.in_strides, lay.out_strides, cred, n)
    if red is not None:
        p.acc_dtype = acc_dtype(red.op, red.dtype, spec.dtype_of(red.value))
    full_reduce = red is not None and all(cred)
    if (red is None or full_reduce) and allow_stages and n >= 2 * BLOCK and _has_ufunc_work(spec, p):
        from noodle.backends.numba_stages import plan_stages  # (imports this module)

        p.mode = "stages"
        plan_stages(spec, p)
    elif len(cshape) <= 1 and (red is None or full_reduce):
        p.mode = "flat" if red is None else "chunks"
    elif red is None:
        p.mode = "rows"
    elif not cred[-1]:
        p.mode = "outer"  # the contiguous last axis is kept: accumulate whole row segments
    else:
        p.mode = "nested"
    return p


def _uniform(spec: KernelSpec, p: Plan) -> list[bool]:
    """Per value: True when it is the same at every point (constants, size-1 inputs)."""
    n_in = len(spec.inputs)
    uni = [all(s == 0 for s in p.in_strides[k]) for k in range(n_in)]
    uni += [True] * len(spec.consts)
    for ins in spec.body:
        uni.append(all(uni[a] for a in ins.args))
    return uni


def _has_ufunc_work(spec: KernelSpec, p: Plan) -> bool:
    uni = _uniform(spec, p)
    base = len(spec.inputs) + len(spec.consts)
    return any(ins.op in UFUNC_OPS and is_float(ins.dtype) and not uni[base + i]
               for i, ins in enumerate(spec.body))


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
                lit = repr(bool(val)) if d == "bool" else repr(int(val)) if not is_float(d) else repr(float(val))
                lines.append(f"v{v} = {np_ctor(d)}({lit})")
            else:
                lines.append(f"v{v} = {self._expr(v, '')}")
        return lines

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
        return f"{acc} = {x} if ({x} {rel} {acc} or {x} != {x}) else {acc}"
    return f"{acc} = {x} if {x} {rel} {acc} else {acc}"


def acc_init(op: str, acc_dt: str) -> str:
    if op in ("sum", "mean"):
        return f"{np_ctor(acc_dt)}(0)"
    if is_float(acc_dt):
        return f"{np_ctor(acc_dt)}({'-' if op == 'max' else ''}np.inf)"
    info = np.iinfo(np.dtype(acc_dt))
    return f"{np_ctor(acc_dt)}({info.min if op == 'max' else info.max})"


def _acc_combine(op: str, accs: list[str], acc_dt: str) -> list[str]:
    lines = []
    for a in accs[1:]:
        lines.append(_acc_update(op, accs[0], a, acc_dt, acc_dt))
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
        gen = {"flat": _gen_flat, "rows": _gen_rows, "chunks": _gen_chunks, "nested": _gen_nested,
               "outer": _gen_outer}[p.mode]
        body = gen(spec, p, e, loop)
        src.append(f"@njit({vsig + ', ' if vsig else ''}parallel={par}, **_OPTS)")
        src.append(f"def {variant}({', '.join(args)}):")
        src += _indent([f"if {size_check}:", "    return False"] + body + ["return True"], 1)
        src.append("")
    return "\n".join(src) + "\n"


def n_partials(p: Plan) -> int:
    """Length of the partials array a reduction kernel writes (see NumbaKernel._finish)."""
    if p.mode == "chunks":
        return max(1, min(NCHUNK, p.n))
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


UNROLL = 4                       # independent accumulators per chunk of a full reduction


def _gen_chunks(spec: KernelSpec, p: Plan, e: _Emitter, loop: str) -> list[str]:
    """Full reduction of a 1-D space: fixed chunks, each sliced so its index starts at 0 (no
    negative-index checks), ``UNROLL`` independent accumulators (no add-latency chain)."""
    red = spec.reduce
    assert red is not None
    vdt = spec.dtype_of(red.value)
    nchunk = max(1, min(NCHUNK, p.n))
    lines = e.hoisted(_targets(spec))
    lines.append(f"for c in {loop}({nchunk}):")
    inner = [f"lo = (c * {p.n}) // {nchunk}", f"hi = ((c + 1) * {p.n}) // {nchunk}", "m = hi - lo"]
    inner += [f"x{k} = i{k}[lo:hi]" for k in range(e.n_in) if not e.uni[k]]
    inner += [f"y{j} = o{j}[lo:hi]" for j in range(len(spec.outputs))]
    accs = [f"acc{u}" for u in range(UNROLL)]
    inner += [f"{a} = {acc_init(red.op, p.acc_dtype)}" for a in accs]
    inner.append(f"for q in range(m // {UNROLL}):")
    unrolled = [f"i = q * {UNROLL}"]
    for u in range(UNROLL):
        sfx = f"_{u}"
        iu = f"i + {u}" if u else "i"
        unrolled += e.body(_targets(spec), _loads(e, [iu] * e.n_in, "x"), sfx)
        unrolled += _store_outputs(spec, e, iu, sfx, "y")
        unrolled.append(_acc_update(red.op, accs[u], e.name(red.value, sfx), p.acc_dtype, vdt))
    inner += _indent(unrolled, 1)
    inner.append(f"for i in range((m // {UNROLL}) * {UNROLL}, m):")
    tail = e.body(_targets(spec), _loads(e, ["i"] * e.n_in, "x"), "")
    tail += _store_outputs(spec, e, "i", "", "y")
    tail.append(_acc_update(red.op, accs[0], e.name(red.value, ""), p.acc_dtype, vdt))
    inner += _indent(tail, 1)
    inner += _acc_combine(red.op, accs, p.acc_dtype)
    inner.append("part[c] = acc0")
    return lines + _indent(inner, 1)


def _kept_offsets(p: Plan, kept: list[int], varying: list[int]) -> list[str]:
    """Lines turning the kept-element index ``q0`` into the base offsets ``ob`` and ``b{k}``.

    Why shared: the ``nested`` and ``outer`` reductions both walk their kept axes this way
    (fresh ``x``/``q`` names per level: Numba's parfor pass rejects reassigning them).
    """
    lines = []
    for lvl, d in enumerate(reversed(kept)):
        lines.append(f"x{lvl} = q{lvl} % {p.shape[d]}")
        lines.append(f"q{lvl + 1} = q{lvl} // {p.shape[d]}")
        lines.append(f"ob += x{lvl} * {p.out_strides[d]}")
        for k in varying:
            if p.in_strides[k][d]:
                lines.append(f"b{k} += x{lvl} * {p.in_strides[k][d]}")
    return lines


def _reduced_nest(p: Plan, redd: list[int], varying: list[int]
                  ) -> tuple[list[str], int, dict[int, str], str]:
    """Nested loops over the reduced axes ``redd``, each level deriving fresh offset names.

    Returns the loop lines, the nesting depth reached, the innermost input offset name per
    varying input and the innermost output offset name (the ``nested`` and ``outer``
    reductions put their per-element body at that depth).
    """
    level = 0
    prev_b = {k: f"b{k}" for k in varying}
    prev_o = "ob"
    nest: list[str] = []
    for li, d in enumerate(redd):
        nest += _indent([f"for j{li} in range({p.shape[d]}):"], level)
        level += 1
        cur = []
        for k in varying:
            st = p.in_strides[k][d]
            cur.append(f"b{k}_{li} = {prev_b[k]} + j{li} * {st}" if st else f"b{k}_{li} = {prev_b[k]}")
            prev_b[k] = f"b{k}_{li}"
        cur.append(f"o_{li} = {prev_o} + j{li} * {p.out_strides[d]}")
        prev_o = f"o_{li}"
        nest += _indent(cur, level)
    return nest, level, prev_b, prev_o


def _gen_nested(spec: KernelSpec, p: Plan, e: _Emitter, loop: str) -> list[str]:
    """Reduction over some axes: parallel over kept elements, nested loops over reduced ones.

    When every axis is reduced (a broadcast input kept the space N-d), the first
    axis plays the kept role and the caller combines its partials.
    """
    red = spec.reduce
    assert red is not None
    vdt = spec.dtype_of(red.value)
    shape, kept_flags = p.shape, [not r for r in p.reduced]
    if not any(kept_flags):
        kept_flags[0] = True
    kept = [d for d in range(len(shape)) if kept_flags[d]]
    redd = [d for d in range(len(shape)) if not kept_flags[d]]
    n_kept = int(np.prod([shape[d] for d in kept])) if kept else 1
    lines = e.hoisted(_targets(spec))
    lines.append(f"for r in {loop}({n_kept}):")
    varying = [k for k in range(e.n_in) if not e.uni[k]]
    inner = ["q0 = r", "ob = 0"] + [f"b{k} = 0" for k in varying]
    inner += _kept_offsets(p, kept, varying)
    inner.append(f"acc = {acc_init(red.op, p.acc_dtype)}")
    nest, level, prev_b, prev_o = _reduced_nest(p, redd, varying)
    idx = [prev_b.get(k, "0") for k in range(e.n_in)]
    body = e.body(_targets(spec), _loads(e, idx), "") + _store_outputs(spec, e, prev_o, "")
    body.append(_acc_update(red.op, "acc", e.name(red.value, ""), p.acc_dtype, vdt))
    nest += _indent(body, level)
    inner += nest
    inner.append("part[r] = acc")
    return lines + _indent(inner, 1)


OUTER_COLUMNS = 1024              # kept-axis elements per task of an ``outer`` reduction


def _gen_outer(spec: KernelSpec, p: Plan, e: _Emitter, loop: str) -> list[str]:
    """Reduction over outer axes with the contiguous last axis kept (``x.sum(axis=0)``).

    Each task owns a segment of up to ``OUTER_COLUMNS`` result elements and walks every
    reduced row, updating the segment elementwise: rows are read contiguously and the
    update vectorizes (each result element has its own accumulator, so no reassociation).
    """
    red = spec.reduce
    assert red is not None
    vdt = spec.dtype_of(red.value)
    shape = p.shape
    nd = len(shape)
    last = shape[-1]
    kept_outer = [d for d in range(nd - 1) if not p.reduced[d]]
    redd = [d for d in range(nd - 1) if p.reduced[d]]
    n_ko = int(np.prod([shape[d] for d in kept_outer])) if kept_outer else 1
    cols = min(last, OUTER_COLUMNS)
    n_cb = -(-last // cols)
    varying = [k for k in range(e.n_in) if not e.uni[k]]
    lines = e.hoisted(_targets(spec))
    lines.append(f"for task in {loop}({n_ko * n_cb}):")
    inner = [f"ko = task // {n_cb}", f"c0 = (task % {n_cb}) * {cols}", f"c1 = min(c0 + {cols}, {last})",
             "m = c1 - c0", "q0 = ko", "ob = 0"] + [f"b{k} = 0" for k in varying]
    inner += _kept_offsets(p, kept_outer, varying)
    inner.append(f"acc = part[ko * {last} + c0:ko * {last} + c1]")
    inner.append("for j in range(m):")
    inner.append(f"    acc[j] = {acc_init(red.op, p.acc_dtype)}")
    nest, level, prev_b, prev_o = _reduced_nest(p, redd, varying)
    seg, load = _segment_loads(p, prev_b, " + c0", " + c1", "(c0 + j)")
    seg += [f"y{j} = o{j}[{prev_o} + c0:{prev_o} + c1]" for j in range(len(spec.outputs))]
    seg.append("for j in range(m):")
    body = e.body(_targets(spec), load, "") + _store_outputs(spec, e, "j", "", "y")
    body.append(_acc_update(red.op, "acc[j]", e.name(red.value, ""), p.acc_dtype, vdt))
    seg += _indent(body, 1)
    nest += _indent(seg, level)
    inner += nest
    return lines + _indent(inner, 1)


__all__ = ["BLOCK", "NCHUNK", "PARALLEL_MIN", "Plan", "generate", "n_partials", "plan"]
