"""Pure NIR -> NIR passes and the standard pipeline.

Example::

    >>> import numpy as np
    >>> from noodle.trace import trace
    >>> prog = optimize(trace(lambda a: (a * 1.0 + a * 1.0).sum(), (np.ones(4),)))
    >>> [n.op for n in prog.nodes]
    ['input', 'add', 'sum']
"""

from __future__ import annotations

from collections.abc import Callable

from noodle.ir.graph import Program
from noodle.ir.verify import verify
from noodle.passes.fuse import fuse
from noodle.passes.memplan import plan_memory
from noodle.passes.schedule import Unit, units
from noodle.passes.simplify import algebraic, cse, dce, fold_constants
from noodle.passes.strength import strength_reduce

PIPELINE: tuple[tuple[str, Callable[[Program], Program]], ...] = (
    ("fold", fold_constants),
    ("algebraic", algebraic),
    ("strength", strength_reduce),
    ("cse", cse),
    ("fold2", fold_constants),
    ("dce", dce),
    ("fuse", fuse),
)


def optimize(program: Program, verify_each: bool = False) -> Program:
    """Run the standard pipeline (``verify_each``: run the verifier after every pass, as tests do)."""
    if verify_each:
        verify(program)
    for _name, run in PIPELINE:
        program = run(program)
        if verify_each:
            verify(program)
    program.meta["optimized"] = True
    return program


__all__ = ["PIPELINE", "Unit", "algebraic", "cse", "dce", "fold_constants", "fuse", "optimize",
           "plan_memory", "strength_reduce", "units"]
