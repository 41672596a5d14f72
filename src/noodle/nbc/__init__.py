"""NBC: noodle bytecode, the portable and hashable form of a NIR program.

Example::

    >>> import numpy as np, noodle as nd
    >>> from noodle.trace import trace
    >>> data = nd.nbc.dumps(trace(lambda a: a + 1.0, (np.ones(2),)))
    >>> nd.nbc.loads(data).outputs
    (2,)
"""

from noodle.nbc.format import MAGIC, VERSION, dumps, loads, program_hash

__all__ = ["MAGIC", "VERSION", "dumps", "loads", "program_hash"]
