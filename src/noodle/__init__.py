"""noodle: a Python acceleration runtime that decides what runs where, and shows why.

The public API is small and NumPy-like::

    import noodle as nd
    c = nd.add(a, b)                 # placed on CPU or GPU by a cost model
    nd.explain("matmul", a, b)       # ...and why
    m = nd.Matrix(a) @ nd.Matrix(b)  # stays on its device until .numpy()

Heavier parts (the JIT, caching, monitoring, distributed processing) load on
first use so that ``import noodle`` stays cheap.
"""

from __future__ import annotations

import os

# Numba's parallel loops run on OpenMP (GNU libgomp in PyPI's wheels). Its default keeps idle
# workers spinning for milliseconds after each loop (300,000 spins), which on a 2-vCPU machine took
# the core from the NumPy work that followed (up to 1.2x slower in `noodle bench ops`); fully
# passive workers (OMP_WAIT_POLICY=PASSIVE, this package's earlier default) sleep at once, and
# waking them cost 60-90 µs per parallel loop here: more than a 512x1024 layernorm's whole parallel
# run (65-75 µs). 10,000 spins (about 0.5 ms here) keeps back-to-back loops at a 1-2 µs launch and
# frees the core soon after; KMP_BLOCKTIME=1 (ms) is the same bound for LLVM's and Intel's OpenMP.
# A value the user set wins. OpenMP reads these when the library loads: a process that loaded it
# before importing noodle keeps the library's defaults.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    os.environ.setdefault("KMP_BLOCKTIME", "1")

from noodle import _numba_warnings, errors
from noodle._lazy import lazy_attributes

# noodle compiles with Numba on background threads: Numba's compiler must not change the warnings
# state the program's own threads see (see noodle/_numba_warnings.py)
_numba_warnings.install()

__version__ = "0.1.0"

_OPS = ("abs", "add", "astype", "cos", "divide", "exp", "log", "matmul", "max", "maximum", "mean", "min",
        "minimum", "multiply", "power", "reshape", "sin", "sqrt", "subtract", "sum", "tanh", "transpose", "where")

# name -> "module:attribute", imported on first access. Why everything: `import noodle` must stay cheap
# (NumPy alone costs ~140 ms here), so a command such as `noodle fix` starts fast.
_LAZY = {
    **{name: f"noodle.array.ops:{name}" for name in _OPS},
    "Matrix": "noodle.array.matrix:Matrix",
    "get_settings": "noodle.config:get_settings",
    "GPUAccelerator": "noodle.devices:GPUAccelerator",
    "devices": "noodle.devices:",  # a callable module: nd.devices() lists them
    "explain": "noodle.placement:explain",
    "jit": "noodle.jit:",  # a callable module (nd.jit(f) is jit(f)): a name "noodle.jit:jit" would hide the package
    "Executor": "noodle.exec:Executor",
    "nbc": "noodle.nbc:",
    "profile": "noodle.monitor.profiler:profile",
    "cache": "noodle.cache:",
    "store": "noodle.store:",
    "dist": "noodle.dist:",
    "metrics": "noodle.metrics:",
    "monitor": "noodle.monitor:",
    "crypto": "noodle.crypto:",
    "memory": "noodle.memory:",
    "fixer": "noodle.fixer:",
    "region": "noodle.memory.region:region",
    **{name: f"noodle.trace.indexing:{name}" for name in ("concatenate", "stack", "take")},
    **{name: f"noodle.trace.loops:{name}" for name in ("fori_loop", "while_loop")},
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


__all__ = ["errors", *_LAZY]

