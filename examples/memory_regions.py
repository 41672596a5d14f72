"""Region-based memory: arrays and math objects that die together, allocated together.

Run: python examples/memory_regions.py

1. A loop of steps, each in a region: eager outputs land in warm chunks, cyclic objects die at the
   exit without the garbage collector, and what is kept leaves with ``alloc.export``.
2. The store loads an array straight into region memory (``store.get(name, allocator=alloc)``).
3. An escape: a region array kept past its region stays valid and is reported (``strict=True`` raises).
4. ``Processor.map(..., region=True)``: every task on the Dask workers runs in its own region, so a
   worker's memory returns to its baseline between chunks.
"""

from __future__ import annotations

import tempfile
import warnings

import numpy as np

import noodle as nd
from noodle.dist import Processor
from noodle.errors import RegionEscapeError
from noodle.memory import RegionAllocator, RegionEscapeWarning, current_region, default_manager
from noodle.store import MathStore

KEPT: list[np.ndarray] = []


class Node:
    """A math object: data plus links to other objects (here, a cycle of two)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.peer: Node | None = None


def one_step(alloc: RegionAllocator, x: np.ndarray, step: int) -> np.ndarray:
    a = alloc.create(Node(alloc.zeros(x.size)))                 # registered: its cycle dies at the exit
    b = alloc.create(Node(nd.add(x, float(step))))              # eager outputs >= 1 MiB land in the region
    a.peer, b.peer = b, a
    y = nd.multiply(b.data, 2.0)
    assert alloc.owns(y)
    return alloc.export(y[:5])                                  # a heap copy that outlives the region


def steps(x: np.ndarray) -> list[np.ndarray]:
    kept = []
    for step in range(4):
        # (objects held by local variables of the function running the with block would be left
        # alone at this exit and looked at again at the next one: one_step's locals are gone here)
        with nd.region("step") as alloc:
            kept.append(one_step(alloc, x, step))
        print(f"step {step}: {alloc.stats()['objects_cleared']} objects cleared, "
              f"{alloc.stats()['chunks_reused']} chunk(s) served warm")
    print("warm bytes kept for the next 'step' region:", default_manager().stats()["scopes"]["step"]["retained_bytes"])
    return kept


def load_into_region(folder: str) -> None:
    with MathStore(f"sqlite:///{folder}/objects.db", redis_url=None) as store:
        store.put("weights", np.random.default_rng(0).standard_normal((512, 512)))
        with nd.region("load") as alloc:
            w = store.get("weights", allocator=alloc).array     # one copy, into region memory
            print("store.get into the region:", alloc.owns(w), f"{float(nd.sum(w)):.3f}")


def escape() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RegionEscapeWarning)
        try:
            with nd.region("escape", strict=True) as alloc:
                KEPT.append(alloc.full(1 << 20, 3.0))           # a global holds it past the region
        except RegionEscapeError as exc:
            print("strict region:", str(exc).split(";")[0])
    print("the escaped array is still valid:", float(KEPT[0][0]))
    KEPT.clear()                                                # its chunk goes back to the scope


def task(i: int) -> np.ndarray:
    """One map item on a worker: cyclic objects around 8 MB arrays, a 1 MB array as the result."""
    alloc = current_region()                                    # the task's region with region=True
    x = alloc.full(1 << 20, float(i)) if alloc is not None else np.full(1 << 20, float(i))
    a, b = Node(x), Node(nd.add(x, 1.0))
    a.peer, b.peer = b, a
    if alloc is not None:
        alloc.create(a)
        alloc.create(b)
    return nd.multiply(b.data[: 1 << 17], 2.0)                  # copied out of the region for you


def main() -> None:
    kept = steps(np.random.default_rng(1).random(1 << 20))
    print("kept after the regions:", [float(k[0]) for k in kept])
    with tempfile.TemporaryDirectory() as folder:
        load_into_region(folder)
    escape()
    with Processor(n_workers=2, threads_per_worker=1) as proc:
        out = proc.map(task, range(20), chunk_size=2, region=True)
    print("dist map in per-task regions:", len(out), "results, first", float(out[0][0]), "last", float(out[-1][0]))
    from noodle import metrics

    print("tasks that ran in a region:", metrics.registry.get("noodle_dist_region_tasks_total").value())


if __name__ == "__main__":
    main()
