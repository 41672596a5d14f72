"""``noodle.jit``: the decorator, the background compile manager, lowering to backend kernels.

Example::

    >>> import numpy as np, noodle as nd
    >>> f = nd.jit(lambda a: (a * a).sum(), backend="interpret")
    >>> float(f(np.arange(4.0)))
    14.0
"""

from noodle.jit.api import JitFunction, jit

__all__ = ["JitFunction", "jit"]
