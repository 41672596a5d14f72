"""``noodle.jit``: the decorator, the background compile manager, lowering to backend kernels.

The package itself is callable and means :func:`jit`: importing the submodule
``noodle.jit`` makes Python set the attribute ``noodle.jit`` to this module,
which would otherwise shadow the lazily exported ``nd.jit`` decorator.

Example::

    >>> import numpy as np, noodle as nd
    >>> f = nd.jit(lambda a: (a * a).sum(), backend="interpret")
    >>> float(f(np.arange(4.0)))
    14.0
"""

import sys
import types
from typing import Any

from noodle.jit.api import JitFunction, jit
from noodle.jit.hotpath import CompiledKernel, JITCompiler, jit_compile_hotpath


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return jit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["CompiledKernel", "JITCompiler", "JitFunction", "jit", "jit_compile_hotpath"]
