"""Map a ``@noodle.jit`` function over data on Dask workers: the program travels as NBC bytes.

Run: python examples/dist_programs.py

Each worker decodes the bytes with ``noodle.nbc.loads`` (which validates every
field; nothing is unpickled), runs them on its own Executor, compiles once, and
finds kernels other workers built in the kernel cache (NOODLE_CACHE_DIR).
"""

from __future__ import annotations

import numpy as np

import noodle as nd
from noodle.dist import Processor


@nd.jit
def scaled_distance(x, y, scale):
    return nd.sqrt((x - y) * (x - y)) * scale


def main() -> None:
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal(1000), rng.standard_normal(1000), np.full(1000, 0.5)) for _ in range(64)]
    with Processor(n_workers=2, port=0) as proc:
        results = proc.map(scaled_distance, batches, chunk_size=8)     # same as proc.map_program(...)
        expected = [np.abs(x - y) * s for x, y, s in batches]
        print("all close:", all(np.allclose(r, e) for r, e in zip(results, expected, strict=True)))
        nbc = scaled_distance.bytecode(*batches[0])                   # or send the bytes yourself
        print(f"program: {len(nbc)} NBC bytes, hash {nd.nbc.program_hash(nbc)[:12]}")
        for worker, stats in proc.program_stats().items():
            runs = sum(p["calls"] for p in stats["programs"].values())
            print(f"  {worker}: {runs} runs, kernels {stats['kernel_builds']}")


if __name__ == "__main__":
    main()
