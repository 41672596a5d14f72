"""Profile a function with noodle's sampling profiler: flame graph, speedscope file, memory trace.

    python examples/monitor_profile.py --out out/profile
    # open out/profile.html, or load out/profile.speedscope.json at https://www.speedscope.app

The same happens for a whole script with ``noodle run --profile script.py``.
"""

from __future__ import annotations

import argparse

import numpy as np

import noodle as nd


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def numeric(steps: int) -> float:
    x = np.random.default_rng(0).standard_normal((256, 256))
    for _ in range(steps):
        x = nd.tanh(nd.matmul(x, x) * 0.01)
    return float(nd.sum(x))


@nd.profile(memory=True)
def workload(steps: int) -> float:
    return fib(25) + numeric(steps)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="noodle-profiles/example", help="path prefix of the output files")
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args()
    with nd.profile(output=args.out) as prof:  # context-manager form
        workload(args.steps)
    print(f"{prof.session.sample_count} samples over {prof.session.duration:.2f} s")
    for name, self_s, total_s in prof.session.top_functions(5):
        print(f"  {self_s * 1e3:8.1f} ms self {total_s * 1e3:8.1f} ms total  {name}")
    mem = workload.session.memory  # decorator form keeps its last session
    print(f"peak traced memory in workload(): {mem['peak_bytes'] / 1e6:.1f} MB")
    print("files:", prof.paths)


if __name__ == "__main__":
    main()
