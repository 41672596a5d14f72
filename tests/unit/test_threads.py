"""20 threads doing mixed ops on shared and private matrices: no race, no wrong result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

import noodle as nd
from noodle.array import numba_kernels


def test_twenty_threads_mixed_ops() -> None:
    numba_kernels.warm(("add", "multiply"), ("float64",))   # exercise the parallel-kernel guard too
    rng = np.random.default_rng(7)
    shared_a = rng.standard_normal((64, 64))
    shared_b = rng.standard_normal((64, 64))
    shared_big = rng.standard_normal(200_000)
    ma, mb = nd.Matrix(shared_a), nd.Matrix(shared_b)
    expect_mm = shared_a @ shared_b
    expect_big = shared_big + shared_big
    errors: list[str] = []
    counts = [0] * 20
    stop = time.monotonic() + 3.0

    def worker(i: int) -> None:
        local = np.random.default_rng(i).standard_normal((32, 32))
        mine = nd.Matrix(local)
        try:
            while time.monotonic() < stop:
                r1 = (ma @ mb).numpy()
                if not np.allclose(r1, expect_mm, rtol=1e-12, atol=1e-12):
                    errors.append(f"thread {i}: shared matmul wrong")
                r2 = (mine.add(mine).multiply(mine)).numpy()
                if not np.array_equal(r2, (local + local) * local):
                    errors.append(f"thread {i}: private elementwise wrong")
                r3 = nd.add(shared_big, shared_big)
                if not np.array_equal(r3, expect_big):
                    errors.append(f"thread {i}: large add wrong")
                s = nd.sum(nd.exp(local), axis=0)
                if not np.array_equal(s, np.sum(np.exp(local), axis=0)):
                    errors.append(f"thread {i}: reduction wrong")
                counts[i] += 1
        except Exception as exc:  # any exception is a failure of thread safety
            errors.append(f"thread {i}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert all(c > 0 for c in counts), counts
    # Shared inputs were never written.
    np.testing.assert_array_equal(ma.numpy(), shared_a)


def _env_after_import(env: dict[str, str]) -> dict[str, str | None]:
    names = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
    base = {k: v for k, v in os.environ.items() if k not in names}
    code = f"import json, os, noodle; print(json.dumps({{k: os.environ.get(k) for k in {names!r}}}))"
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout)


def test_openmp_workers_spin_briefly_unless_the_user_chose() -> None:
    """``import noodle`` bounds OpenMP's spinning (GOMP_SPINCOUNT=10000, KMP_BLOCKTIME=1) unless the
    user chose a wait policy: a value of theirs is never replaced."""
    assert _env_after_import({}) == {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "10000", "KMP_BLOCKTIME": "1"}
    assert _env_after_import({"OMP_WAIT_POLICY": "PASSIVE"}) == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None,
                                                                  "KMP_BLOCKTIME": None}
    assert _env_after_import({"GOMP_SPINCOUNT": "7"}) == {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "7",
                                                           "KMP_BLOCKTIME": "1"}
