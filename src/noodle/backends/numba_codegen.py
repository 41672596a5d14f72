"""Python/Numba source generation for one :class:`KernelSpec`: the module around the loop shapes.

Why generate source text (instead of composing closures): the text is the
on-disk cache entry (``<cache_dir>/kernels/<key>.py``) that Numba's own
``cache=True`` keys its compiled machine code on, so a second process imports
it and skips compilation; and a human can read exactly what runs.

The jobs are split: :mod:`~noodle.backends.numba_emit` (the op table and the
emitter), :mod:`~noodle.backends.numba_plan` (loop shape and typed stages),
:mod:`~noodle.backends.numba_loops` (the one-function shapes),
:mod:`~noodle.backends.numba_stages` (the staged shape) and
:mod:`~noodle.backends.numba_cache` (the kernel cache); this module writes the
header and the size checks and picks the shape. Imports point one way: emit <-
plan <- loops/stages <- codegen.

The source is generic over lengths (see :mod:`~noodle.backends.numba_plan`): it is the
same text for every shape of one layout class, and the file is named by
:func:`~noodle.backends.numba_plan.generic_key`. Sizes come from the arrays (rank 1) or
from a ``dims`` array of the collapsed extents (``DIMS = True``), and each
function checks every operand's length against them before touching memory.

Each one-function shape is emitted twice, ``k_ser`` (range, compiled now, with an
explicit signature) and ``k_par`` (prange, compiled on its first use: only a
call of at least :func:`noodle.backends.numba_threads.parallel_min` elements
takes it, after the inputs were checked).

Example::

    >>> from noodle.backends.spec import Instr, KernelSpec
    >>> spec = KernelSpec((("float64", (8,)),), (), (Instr("negative", (0,), "float64"),), (1,), (8,))
    >>> "def k_ser(i0, o0):" in generate(spec, plan(spec))
    True
"""

from __future__ import annotations

from noodle.backends.cache_dir import backends_digest
from noodle.backends.numba_emit import Emitter, indent, nb_type, np_ctor, sig_array
from noodle.backends.numba_loops import LOOP_SHAPES
from noodle.backends.numba_plan import (
    BLOCK,
    PARALLEL_MIN,
    Plan,
    emitter,
    generic,
    generic_key,
    n_partials,
    plan,
    stride_defs,
)
from noodle.backends.numba_stages import gen_stages
from noodle.backends.spec import KernelSpec
from noodle.errors import CompileError
from noodle.ir.reduction import CHUNK


def needs_dims(spec: KernelSpec, g: Plan, e: Emitter) -> bool:
    """True when the kernel takes the collapsed extents as a ``dims`` array: N-d layouts, and
    1-D ones with no output. The length comes from what the driver allocates for *this* spec
    (its outputs, or ``dims``), never from the inputs: the module is shared by every length of
    its class, and inputs of another length must be refused, not reduced."""
    return len(g.shape) != 1 or not spec.outputs


def size_lines(spec: KernelSpec, g: Plan, e: Emitter, dims: bool) -> list[str]:
    """Lines defining ``d0``..., ``n`` (and ``nrows``, ``nch``, the strides) at run time."""
    rank = len(g.shape)
    lines = [f"d{d} = dims[{d}]" for d in range(rank)] if dims else ["d0 = o0.shape[0]"]
    lines.append(f"n = {' * '.join(f'd{d}' for d in range(rank))}")
    if rank > 1:
        lines.append(f"nrows = {' * '.join(f'd{d}' for d in range(rank - 1))}")
    if spec.reduce is not None:
        lines.append(f"nch = max(1, (n + {CHUNK - 1}) // {CHUNK})")
    return lines + stride_defs(g)


def size_check(spec: KernelSpec, g: Plan, e: Emitter, dims: bool) -> str:
    """The condition under which the operands do not fit the run-time sizes (the kernel then
    returns False without touching memory; the caller reports why)."""
    rank = len(g.shape)
    conds = [f"dims.shape[0] != {rank}"] if dims else []
    conds += [f"d{d} < 0" for d in range(rank)] if dims else []
    for k, strides in enumerate(g.in_strides):
        varying = [f"d{d}" for d, st in enumerate(strides) if st != 0]
        conds.append(f"i{k}.shape[0] != {' * '.join(varying) if varying and not e.uni[k] else 1}")
    conds += [f"o{j}.shape[0] != n" for j in range(len(spec.outputs))]
    if spec.reduce is not None:
        conds.append("part.shape[0] < nch")
    return " or ".join(conds) or "False"


def generate(spec: KernelSpec, p: Plan) -> str:
    """The full module source for ``spec``'s layout class under its (concrete) plan ``p``."""
    if p.n == 0:
        raise CompileError("internal: an empty iteration space has no kernel (NumPy defines its result)")
    g = generic(p)
    fm = "True" if spec.fastmath else "False"
    src = [
        f'"""noodle kernel {generic_key(spec, p)} (mode {p.mode}, rank {len(p.shape)}); generated, do not edit."""',
        # the helpers this module calls live in other files: their digest is part of the source,
        # so Numba's cache (keyed by this file) is not reused after one of them changes
        f"# noodle backends {backends_digest()}",
        "import math",
        "import numpy as np",
        "from numba import njit, prange",
        "from noodle.backends.numba_reduce import lane_sums, lane_sums_from",
        "from noodle.backends.numba_expf import expf_numpy",
        "",
        f"_OPTS = dict(cache=True, error_model='numpy', fastmath={fm}, nogil=True)",
        f"MODE = {p.mode!r}",
    ]
    e = emitter(spec, g)
    dims = needs_dims(spec, g, e)
    src += [f"DIMS = {dims}", ""]
    in_args = [f"i{k}" for k in range(e.n_in)]
    out_args = [f"o{j}" for j in range(len(spec.outputs))]
    in_sig = [sig_array(d) for d, _ in spec.inputs]
    out_sig = [sig_array(spec.dtype_of(v)) for v in spec.outputs]
    if p.mode == "stages":
        src += gen_stages(spec, g, e, in_args, out_args, in_sig, out_sig)
        return "\n".join(src) + "\n"
    gen = LOOP_SHAPES.get(p.mode)
    if gen is None:
        raise CompileError(f"internal: no generated code for loop shape {p.mode!r}")
    red = spec.reduce
    extra_args, extra_sig = [], []
    if red is not None:
        extra_args, extra_sig = ["part"], [sig_array(p.acc_dtype)]
    if dims:
        extra_args, extra_sig = [*extra_args, "dims"], [*extra_sig, "int64[::1]"]
    args = in_args + out_args + extra_args
    sig = f'"boolean({", ".join(in_sig + out_sig + extra_sig)})"'
    # the kernel checks its own operand sizes (nanoseconds here, a microsecond in Python) and
    # returns False without touching memory when they do not fit; the caller then reports why
    check = size_check(spec, g, e, dims)
    sizes = size_lines(spec, g, e, dims)
    # the serial variant is compiled now (every call below the parallel threshold runs it, and a
    # call whose thread finds the parallel lock busy); the parallel one on first use
    for variant, loop, par, vsig in (("k_ser", "range", "False", sig), ("k_par", "prange", "True", "")):
        body = gen(spec, g, e, loop)
        src.append(f"@njit({vsig + ', ' if vsig else ''}parallel={par}, **_OPTS)")
        src.append(f"def {variant}({', '.join(args)}):")
        if dims:   # the extents come from ``dims``: check its length before reading it
            src += indent([f"if dims.shape[0] != {len(g.shape)}:", "    return False"], 1)
        src += indent(sizes + [f"if {check}:", "    return False"] + body + ["return True"], 1)
        src.append("")
    src += scalar_entry(spec, args, in_sig, out_sig + extra_sig)
    return "\n".join(src) + "\n"


def scalar_entry(spec: KernelSpec, args: list[str], in_sig: list[str], rest_sig: list[str]) -> list[str]:
    """``k_sc``: ``k_ser`` taking each 0-d input as a scalar (the module has none without 0-d
    inputs).

    Why: a loop body's updates take a 0-d value (CG's ``x + alpha * p``) that the runner holds
    as a NumPy scalar; making it the one-element array ``k_ser`` reads cost 0.6 µs a call (the
    scalar's ``reshape``), more than the dispatch. Numba's dispatcher reads a scalar argument as
    fast as an array; the array is made here, in compiled code, for a few nanoseconds."""
    zero_d = [k for k, (_, shp) in enumerate(spec.inputs) if tuple(shp) == ()]
    # not for float32: Numba reads a float32 argument through a C double, which quiets a
    # signaling NaN (0x7f800001 became 0x7fc00001); the one-element array keeps its bits
    if not zero_d or any(spec.inputs[k][0] == "float32" for k in zero_d):
        return []
    n_in = len(spec.inputs)
    sc_sig = [nb_type(spec.inputs[k][0]) if k in zero_d else in_sig[k] for k in range(n_in)]
    sc_args = [f"s{k}" if k in zero_d else a for k, a in enumerate(args[:n_in])] + args[n_in:]
    call = [f"np.full(1, s{k}, {np_ctor(spec.inputs[k][0])})" if k in zero_d else a
            for k, a in enumerate(args[:n_in])] + args[n_in:]
    return [f'@njit("boolean({", ".join(sc_sig + rest_sig)})", **_OPTS)',
            f"def k_sc({', '.join(sc_args)}):",
            f"    return k_ser({', '.join(call)})", ""]


__all__ = ["BLOCK", "PARALLEL_MIN", "Plan", "generate", "n_partials", "needs_dims", "plan", "size_check",
           "size_lines"]
