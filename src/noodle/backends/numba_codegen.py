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

Each one-function shape is emitted twice, ``k_par`` (prange) and ``k_ser``
(range): the runtime never uses threads below ``PARALLEL_MIN`` elements.

Example::

    >>> from noodle.backends.spec import Instr, KernelSpec
    >>> spec = KernelSpec((("float64", (8,)),), (), (Instr("negative", (0,), "float64"),), (1,), (8,))
    >>> "def k_ser(i0, o0):" in generate(spec, plan(spec))
    True
"""

from __future__ import annotations

import numpy as np

from noodle.backends.numba_emit import indent, sig_array
from noodle.backends.numba_loops import LOOP_SHAPES
from noodle.backends.numba_plan import BLOCK, PARALLEL_MIN, Plan, emitter, n_partials, plan
from noodle.backends.numba_stages import gen_stages
from noodle.backends.spec import KernelSpec
from noodle.errors import CompileError


def generate(spec: KernelSpec, p: Plan) -> str:
    """The full module source for ``spec`` under plan ``p``."""
    fm = "True" if spec.fastmath else "False"
    src = [
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
    e = emitter(spec, p)
    in_args = [f"i{k}" for k in range(e.n_in)]
    out_args = [f"o{j}" for j in range(len(spec.outputs))]
    in_sig = [sig_array(d) for d, _ in spec.inputs]
    out_sig = [sig_array(spec.dtype_of(v)) for v in spec.outputs]
    if p.mode == "stages":
        src += gen_stages(spec, p, e, in_args, out_args, in_sig, out_sig)
        return "\n".join(src) + "\n"
    gen = LOOP_SHAPES.get(p.mode)
    if gen is None:
        raise CompileError(f"internal: no generated code for loop shape {p.mode!r}")
    red = spec.reduce
    extra_args, extra_sig = [], []
    if red is not None:
        extra_args, extra_sig = ["part"], [sig_array(p.acc_dtype)]
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
        body = gen(spec, p, e, loop)
        src.append(f"@njit({vsig + ', ' if vsig else ''}parallel={par}, **_OPTS)")
        src.append(f"def {variant}({', '.join(args)}):")
        src += indent([f"if {size_check}:", "    return False"] + body + ["return True"], 1)
        src.append("")
    return "\n".join(src) + "\n"


__all__ = ["BLOCK", "PARALLEL_MIN", "Plan", "generate", "n_partials", "plan"]
