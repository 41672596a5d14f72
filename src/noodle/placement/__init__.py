"""The placement engine: for each op under ``device='auto'``, CPU or which GPU, and why.

    >>> import numpy as np, noodle as nd
    >>> print(nd.explain("matmul", np.ones((1000, 1000)), np.ones((1000, 1000))))  # doctest: +SKIP
    matmul -> cpu (numpy): no GPU ... estimated cpu 11.2 ms
"""

from noodle.errors import UnknownOpError
from noodle.placement.decide import Decision, decide, explain

__all__ = ["Decision", "UnknownOpError", "decide", "explain"]
