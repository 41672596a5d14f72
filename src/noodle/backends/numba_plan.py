"""What the Numba code generator decides for one spec before writing any source: the loop shape,
the collapsed layout and, for the ``stages`` shape, the typed stages.

One kernel for every length: the generated code reads its sizes at run time (the length of
an input or output, or a ``dims`` array of the collapsed extents for N-d layouts), and every
stride is a product of those extents. What the code depends on is the *layout class*: the
collapsed rank, which collapsed dims each input varies along (it is broadcast along the others),
which dims a reduction covers, the dtypes and the body. :func:`generic_key` hashes exactly that;
it is the compile-cache key, so a function called with 50 lengths compiles one module (two when
a length-1 call makes a size-1 input look like a full one, which is a different class). A
one-point space is planned as a length-1 flat space with every input varying (the uniform rule
of :func:`noodle.backends.numba_emit.uniform`), so length 1 shares the class of the other lengths.
Nothing is shape-specialized: every inner loop runs over a slice starting at 0 whose length
LLVM does not need to know to vectorize it, so literal sizes are not expected to pay (not
measured separately on this noisy machine; a case that shows a gain should say so here).

Loop shapes:

* ``flat``: one (p)range loop over the collapsed 1-D iteration space;
* ``rows``: (p)range over the outer dims, inner loop over the last one
  (broadcast inputs read with stride 0);
* ``chunks``: full reduction of a 1-D space in the defined order of
  :mod:`noodle.ir.reduction` (chunks of ``CHUNK`` elements in parallel, ``LANES``
  independent accumulators in each, chunk values added in order by the driver);
* ``stages``: transcendental ops (``exp``...) evaluated by NumPy's SIMD ufuncs on
  cache-sized blocks (``BLOCK`` elements) between serial Numba stages, at every
  size: Numba's ``exp`` is a scalar libm call (llvmlite from PyPI has no SVML),
  ~5x slower than NumPy's vectorized one on this machine and different from it in
  the last bit;
* ``split``: any other reduction (over some axes, or over an N-d space): the
  kernel computes the values, the defined-order reduction runs on them.

Stage scheduling: a transcendental op runs in the phase right after its argument
is available; every other value is sunk to the latest stage that still feeds its
consumers (so the final stage reads inputs directly rather than scratch copies).
A value crosses into a scratch buffer only when a later stage or a ufunc reads it.

Example::

    >>> from noodle.backends.spec import Instr, KernelSpec
    >>> spec = KernelSpec((("float64", (8,)),), (), (Instr("exp", (0,), "float64"),), (1,), (8,))
    >>> p = plan(spec)
    >>> p.mode, [type(s).__name__ for s in p.stages]
    ('stages', ['UfuncStep', 'NumbaStep'])
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from noodle.backends.layout import spec_layout
from noodle.backends.numba_emit import Emitter, nb_type, uniform
from noodle.backends.numba_expf import inline_exp
from noodle.backends.op_text import check_integer_power, check_portable_casts, is_float
from noodle.backends.spec import Instr, KernelSpec
from noodle.errors import CompileError
from noodle.ir.ops import LIBM_OPS, OPS
from noodle.ir.reduction import CHUNK, acc_dtype

PARALLEL_MIN = 100_000          # the default of numba_threads.parallel_min(); kept for importers
GENERIC_VERSION = 1             # bump when the generated code of a layout class changes meaning
BLOCK = 1 << 15                  # elements per block in the ``stages`` shape (256 KiB of float64)
assert BLOCK % CHUNK == 0, "a stages block must hold whole reduction chunks"
# ops whose float bits are NumPy's (its SIMD/SVML loops; ir/ops.py ``libm``): evaluated by NumPy
# ufuncs between Numba stages; also ~5x faster than Numba's scalar libm calls on this machine
UFUNC_OPS = {name: str(OPS[name].numpy) for name in sorted(LIBM_OPS)}


@dataclass
class UfuncStep:
    """NumPy's ``fn`` on one block: operands ``srcs`` (see ``NumbaKernel._blocks``) into scratch ``dst``."""

    fn: str
    srcs: list[tuple]
    dst: int
    cast: bool        # an operand's dtype differs from the result's: pass ``dtype=``
    dtype: str


@dataclass
class NumbaStep:
    """Generated function ``s<index>(lo, hi, *args)``: computes ``compute``, writes ``writes`` to scratch;
    the ``final`` one stores the outputs (and reduces). ``args`` is filled in when its source is written."""

    index: int
    compute: list[int]
    writes: list[int]
    final: bool
    args: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class Plan:
    """What the generator decided: loop shape, collapsed layout, and the stages."""

    mode: str
    shape: tuple                    # collapsed extents: ints, or names (``d0``...) in a generic plan
    in_strides: list[tuple]         # per input: 0 (broadcast), 1, an int, or a name in a generic plan
    out_strides: tuple
    reduced: list[bool]
    n: int | str                    # elements; ``"n"`` in a generic plan
    acc_dtype: str = ""
    stages: list[UfuncStep | NumbaStep] = field(default_factory=list)
    scratch_dtypes: list[str] = field(default_factory=list)
    scratch: dict[int, int] = field(default_factory=dict)   # value -> its scratch buffer

    @property
    def n_scratch(self) -> int:
        return len(self.scratch_dtypes)


def numpy_stage(spec: KernelSpec, ins: Instr) -> bool:
    """Whether ``ins`` runs as NumPy's ufunc on blocks between stages: a libm op on floats, except
    float32 ``exp`` where NumPy's algorithm runs inline (:mod:`noodle.backends.numba_expf`)."""
    return ins.op in UFUNC_OPS and is_float(ins.dtype) and not inline_exp(spec, ins)


def emitter(spec: KernelSpec, p: Plan) -> Emitter:
    """The source emitter for ``spec`` under ``p`` (libm ops folded, never emitted, when constant)."""
    return Emitter(spec, p.n, p.in_strides, frozenset(UFUNC_OPS))


def plan(spec: KernelSpec) -> Plan:
    """Pick the loop shape for ``spec`` (see the module docstring)."""
    check_integer_power(spec)
    check_portable_casts(spec)
    lay = spec_layout(spec, nb_type)
    red = spec.reduce
    cshape, cred, n = lay.cshape, lay.reduced, lay.n
    in_strides, out_strides = lay.in_strides, lay.out_strides
    if n == 1:
        # one point: a length-1 flat space, every input read at 0 (none is uniform: see
        # numba_emit.uniform), so a length-1 call shares the generic kernel of the other lengths
        cshape, out_strides, cred = (1,), (1,), [red is not None]
        in_strides = [(1,)] * len(spec.inputs)
    p = Plan("flat", cshape, in_strides, out_strides, cred, n)
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
        p.mode = "stages"
        plan_stages(spec, p)
    elif len(cshape) <= 1:
        p.mode = "flat" if red is None else "chunks"
    else:
        p.mode = "rows"
    return p


def generic(p: Plan) -> Plan:
    """``p`` with its sizes and strides as names the generated code defines at run time
    (``n``, ``d0``..., ``st<input>_<dim>``); 0 and 1 stay literal (broadcast, contiguous)."""
    rank = len(p.shape)
    dims = tuple(f"d{d}" for d in range(rank))

    def sym(strides: tuple, k: int | str) -> tuple:
        out: list[int | str] = []
        for d, st in enumerate(strides):
            later = [e for e in range(d + 1, rank) if strides[e] != 0]
            out.append(0 if st == 0 else 1 if not later else f"st{k}_{d}")
        return tuple(out)

    return replace(p, shape=dims, in_strides=[sym(st, k) for k, st in enumerate(p.in_strides)],
                   out_strides=sym(p.out_strides, "o"), n="n")


def stride_defs(p: Plan) -> list[str]:
    """Source lines defining the stride names of a generic plan from the extents ``d0``..."""
    lines = []
    rank = len(p.shape)
    for strides in [*p.in_strides, p.out_strides]:
        for d, st in enumerate(strides):
            if isinstance(st, str):
                later = [f"d{e}" for e in range(d + 1, rank) if strides[e] != 0]
                lines.append(f"{st} = {' * '.join(later)}")
    return lines


def generic_key(spec: KernelSpec, p: Plan) -> str:
    """The compile-cache key of ``spec``'s layout class (see the module docstring): the same for
    every shape that collapses to the same rank, broadcast pattern and reduced dims."""
    masks = [[st != 0 for st in strides] for strides in p.in_strides]
    red = spec.reduce
    bare = replace(spec, inputs=tuple((d, ()) for d, _ in spec.inputs), shape=(),
                   reduce=None if red is None else replace(red, axes=None, shape=()))
    payload = json.dumps({"spec": asdict(bare), "mode": p.mode, "rank": len(p.shape), "masks": masks,
                          "reduced": list(p.reduced), "generic": GENERIC_VERSION,
                          "inline_exp": any(inline_exp(spec, i) for i in spec.body)}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def _has_ufunc_work(spec: KernelSpec, p: Plan) -> bool:
    e = emitter(spec, p)
    for i, ins in enumerate(spec.body):
        v = e.base + i
        if numpy_stage(spec, ins) and e.uni[v] and not e.const_only(v):
            # the fusion pass leaves one-element exp/pow... to the interpreter; a value that is
            # uniform only through a broadcast input would be computed here with libm: refuse
            raise CompileError(f"kernel {spec.key()}: {ins.op} of a broadcast scalar would not give NumPy's "
                               "bits in a Numba kernel; it runs interpreted")
    return any(numpy_stage(spec, ins) for ins in spec.body)


def plan_stages(spec: KernelSpec, p: Plan) -> None:
    """Split the body into Numba stages separated by NumPy ufunc calls on blocks."""
    n_in, n_c = len(spec.inputs), len(spec.consts)
    base = n_in + n_c
    uni = uniform(spec, p.n, p.in_strides)
    stage = [0] * (base + len(spec.body))
    is_ufunc = [False] * len(stage)
    for i, ins in enumerate(spec.body):
        v = base + i
        s = max((stage[a] for a in ins.args), default=0)
        if numpy_stage(spec, ins) and not uni[v]:
            is_ufunc[v] = True
            s = max(stage[a] for a in ins.args) + 1
        stage[v] = s
    last = max(stage) if stage else 0
    # sink every other value to the latest stage that still feeds its consumers: the final
    # stage then reads inputs directly instead of a scratch copy made in an earlier stage
    finals_set = set(spec.outputs) | ({spec.reduce.value} if spec.reduce is not None else set())
    latest = [last] * len(stage)
    for i in range(len(spec.body) - 1, -1, -1):
        v = base + i
        if is_ufunc[v] or uni[v]:
            continue
        bound = last if v in finals_set else None
        for j in range(i + 1, len(spec.body)):
            c = base + j
            if v in spec.body[j].args:
                need = stage[c] - 1 if is_ufunc[c] else latest[c]
                bound = need if bound is None else min(bound, need)
        latest[v] = last if bound is None else bound
        stage[v] = max(stage[v], latest[v])
    # a value crosses into a scratch buffer when a later stage (or a ufunc) reads it; a ufunc
    # reads a uniform operand as a one-element array (an input) or a scalar (a constant)
    scratch: dict[int, int] = {}
    for i, ins in enumerate(spec.body):
        v = base + i
        for a in ins.args:
            if is_ufunc[v] and uni[a] and a >= base:
                raise CompileError(f"kernel {spec.key()}: {ins.op} of a computed scalar is not staged; "
                                   "it runs interpreted")
            if a >= base and not uni[a] and (is_ufunc[v] or stage[a] < stage[v]) and a not in scratch:
                scratch[a] = len(scratch)
        if is_ufunc[v] and v not in scratch:
            scratch[v] = len(scratch)
    # an input read with another layout than the output's (broadcast) cannot be handed to a
    # ufunc as a slice: stage 0 copies its block into scratch first
    full = tuple(p.out_strides)
    input_writes: list[int] = []
    for i, ins in enumerate(spec.body):
        if not is_ufunc[base + i]:
            continue
        for a in ins.args:
            if a < n_in and not uni[a] and tuple(p.in_strides[a]) != full and a not in scratch:
                scratch[a] = len(scratch)
                input_writes.append(a)
    finals = list(spec.outputs) + ([spec.reduce.value] if spec.reduce is not None else [])
    for v in finals:
        if v >= base and not uni[v] and stage[v] < last and v not in scratch:
            scratch[v] = len(scratch)
    p.scratch = scratch
    p.scratch_dtypes = [spec.dtype_of(v) for v in sorted(scratch, key=scratch.__getitem__)]
    steps: list[UfuncStep | NumbaStep] = []
    for s in range(last + 1):
        if s > 0:
            for i, ins in enumerate(spec.body):
                v = base + i
                if is_ufunc[v] and stage[v] == s:
                    srcs = [_ufunc_source(spec, a, n_in, uni, scratch) for a in ins.args]
                    steps.append(UfuncStep(UFUNC_OPS[ins.op], srcs, scratch[v],
                                           any(spec.dtype_of(a) != ins.dtype for a in ins.args), ins.dtype))
        compute = [base + i for i in range(len(spec.body))
                   if stage[base + i] == s and not is_ufunc[base + i] and not uni[base + i]]
        writes = [v for v in compute if v in scratch] + (input_writes if s == 0 else [])
        final = s == last
        if compute or writes or final:
            steps.append(NumbaStep(s, compute, writes, final))
    p.stages = steps


def _ufunc_source(spec: KernelSpec, a: int, n_in: int, uni: list[bool], scratch: dict[int, int]) -> tuple:
    """Where a ufunc step reads operand ``a`` (see ``NumbaKernel._blocks``)."""
    if a < n_in:
        if a in scratch:
            return ("t", scratch[a])
        return ("u", a) if uni[a] else ("in", a)
    if a < n_in + len(spec.consts):
        dtype, value = spec.consts[a - n_in]
        return ("c", dtype, value)
    return ("t", scratch[a])


def n_partials(p: Plan) -> int:
    """Length of the partials array a reduction kernel writes (see NumbaKernel._finish)."""
    if p.mode in ("chunks", "stages"):
        return max(1, -(-p.n // CHUNK))
    kept = [s for s, r in zip(p.shape, p.reduced, strict=True) if not r]
    return int(np.prod(kept)) if kept else p.shape[0]


def unstaged_inputs(p: Plan, n_in: int) -> tuple[int, ...]:
    """Inputs no Numba stage reads (only ufunc steps do): Numba's dispatcher never checks their
    dtype, so the drivers must (once the stages' sources have recorded their arguments)."""
    staged = {k for st in p.stages if isinstance(st, NumbaStep) for kind, k in st.args if kind == "i"}
    return tuple(k for k in range(n_in) if k not in staged)


__all__ = ["BLOCK", "GENERIC_VERSION", "PARALLEL_MIN", "UFUNC_OPS", "NumbaStep", "Plan", "UfuncStep", "emitter", "numpy_stage",
           "generic", "generic_key", "n_partials", "plan", "plan_stages", "stride_defs", "unstaged_inputs"]
