"""Placement per fused region: ``nd.jit(backend="auto")`` and ``f.explain(*args)``.

Why: the backend that wins one region loses another (a tiny region is dominated by
the call overhead, an exp-heavy float32 one by how fast ``exp`` is). With
``backend="auto"`` the JIT asks placement for each fused region, from a cost model
calibrated once on this machine (the first use probes each installed backend for
a second or so, then the rates are cached on disk with the rest of the calibration).
Where the estimates of two backends are close, the first compile times them on the
region's shapes and keeps the fastest (``NOODLE_PLACE_MEASURE=0``: the model alone).

Run: python examples/jit_placement.py   (then try: noodle run examples/jit_placement.py)
"""

from __future__ import annotations

import numpy as np

import noodle as nd


@nd.jit(backend="auto")
def two_regions(big, small):
    """Two outputs of different shapes: two fused regions, each placed on its own."""
    return big * 2.0 + nd.exp(-big), (small * 3.0 - 1.0).sum()


def main() -> None:
    big = np.random.default_rng(0).random(2_000_000).astype(np.float32)
    small = np.arange(16.0)

    plan = two_regions.explain(big, small)       # nothing runs: where each region would go, and why
    print(plan)
    for choice in plan.regions:                  # the same as fields
        chosen = next(c for c in choice.candidates if c.backend == choice.backend)
        print(f"region {choice.region.index}: {choice.region.elems} {choice.region.dtype} -> {choice.backend}"
              f" (estimated {chosen.seconds * 1e3:.3f} ms)")

    print("compiled as:", two_regions.compile(big, small),
          getattr(two_regions.state(big, small).runner, "region_backends", "(stayed interpreted)"))
    y, s = two_regions(big, small)
    assert np.allclose(y, big * 2.0 + np.exp(-big), rtol=1e-6) and s == (small * 3.0 - 1.0).sum()


if __name__ == "__main__":
    main()
