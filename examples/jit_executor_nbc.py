"""NBC bytecode and the Executor: ship a program as bytes, run it interpreted or compiled.

Run: python examples/jit_executor_nbc.py
"""

from __future__ import annotations

import numpy as np

import noodle as nd
from noodle.trace import trace


def softplus_sum(x, y):
    return nd.log(1.0 + nd.exp(x * y)).sum(axis=1)


def main() -> None:
    x, y = np.random.default_rng(1).random((100, 50)), np.random.default_rng(2).random(50)
    program = trace(softplus_sum, (x, y))          # NIR
    data = nd.nbc.dumps(program)                   # portable, hashable bytes (no pickle)
    print(len(data), "bytes; hash", nd.nbc.program_hash(data))

    ex = nd.Executor(hot_threshold=5)              # compile after 5 interpreted calls
    for _ in range(8):
        out = ex.execute(data, x, y)
    print("matches NumPy:", np.allclose(out, softplus_sum(x, y)))
    for key, st in ex.stats().items():
        print(key, st["status"], st["calls"], "calls,", st["interpreted_calls"], "interpreted")
        for ins in st["instructions"][:3]:
            print("   ", ins["text"], f"{ins['seconds'] * 1e6:.0f} us")

    try:
        nd.nbc.loads(data[:-3])                    # truncated bytes are rejected, never executed
    except nd.errors.NBCFormatError as exc:
        print("NBCFormatError:", exc)


if __name__ == "__main__":
    main()
