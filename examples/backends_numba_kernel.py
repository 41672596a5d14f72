"""Compile a fused region by hand with the Numba backend, and look at what it generated.

The JIT front end (``@noodle.jit``) builds these specs for you; this example
shows the contract underneath: a KernelSpec in, a Kernel out, outputs written
into recycled buffers from the pool.

Run: python examples/backends_numba_kernel.py
"""

from __future__ import annotations

import numpy as np

from noodle.backends import get_backend
from noodle.backends.cuda_codegen import cuda_source
from noodle.backends.spec import Instr, KernelSpec, MatmulSpec, Reduce
from noodle.memory import default_pool

n = 1_000_000
f8 = "float64"
# a*b + c*d - 0.5*exp(-e): values 0..4 are the inputs, 5 the constant, 6.. the body
chain = KernelSpec(
    inputs=tuple((f8, (n,)) for _ in range(5)),
    consts=((f8, 0.5),),
    body=(Instr("multiply", (0, 1), f8), Instr("multiply", (2, 3), f8), Instr("add", (6, 7), f8),
          Instr("negative", (4,), f8), Instr("exp", (9,), f8), Instr("multiply", (5, 10), f8),
          Instr("subtract", (8, 11), f8)),
    outputs=(12,),
    shape=(n,),
    reduce=Reduce("sum", 12, None, False, f8, ()),   # ...and its sum, in the same pass
)

backend = get_backend("numba")
print(backend)
kernel = backend.compile_kernel(chain)
print("mode:", kernel.plan.mode, "| source:", kernel.source_path, "| loaded from disk cache:", kernel.from_cache)

rng = np.random.default_rng(0)
a, b, c, d, e = (rng.random(n) for _ in range(5))
out, total = kernel(a, b, c, d, e)
expect = a * b + c * d - 0.5 * np.exp(-e)
print("max abs error:", float(np.abs(out - expect).max()), "| sum:", float(total), "vs", float(expect.sum()))

del out                      # the next call reuses the dropped output buffer (no page faults)
out2, _ = kernel(a, b, c, d, e)
print("pool:", default_pool().stats())

# relu(x @ w + b): BLAS product, then the epilogue in place on the product's buffer
m = 500
epilogue = KernelSpec(((f8, (m, m)), (f8, (m,))), ((f8, 0.0),),
                      (Instr("add", (0, 1), f8), Instr("maximum", (3, 2), f8)), (4,), (m, m))
mm = backend.compile_matmul(MatmulSpec((f8, (m, m)), (f8, (m, m)), f8, (m, m), epilogue))
x, w, bias = rng.random((m, m)), rng.random((m, m)), rng.random(m)
(y,) = mm(x, w, bias)
print("relu(x@w+b) matches NumPy:", bool(np.allclose(y, np.maximum(x @ w + bias, 0))))

# the same region as CUDA C (compiled by CuPy on a GPU machine; nvcc-checked in the tests)
print("\n".join(cuda_source(epilogue).splitlines()[-8:]))
