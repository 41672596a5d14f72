"""The backends' own cached Numba functions are recompiled when any backend source changes, not
only their own file (:mod:`noodle.backends.numba_stamp`): an intrinsic from another file is
compiled into them, and a stale copy once gave a row max that missed a NaN."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from noodle.backends import numba_reduce
from noodle.backends.cache_dir import backends_digest

_PROBE = """
import json, sys
import numpy as np
if sys.argv[1] != "real":
    import noodle.backends.numba_stamp as s
    s._digest = lambda: sys.argv[1]          # as if another backend file had changed
from noodle.backends import numba_reduce
f = numba_reduce._rsum
assert f(np.arange(16.0), 0, 16) == 120.0
print(json.dumps({"hits": sum(f.stats.cache_hits.values()), "misses": sum(f.stats.cache_misses.values())}))
"""


def _run(digest: str) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-c", _PROBE, digest], capture_output=True, text=True, timeout=300,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_stamp_of_a_backend_function_holds_every_backend_source():
    locator = numba_reduce._rsum._cache._impl.locator
    assert getattr(locator, "noodle_stamped", False), type(locator)
    assert locator.get_source_stamp()[1].startswith(backends_digest() + "-")
    assert numba_reduce._rsum(np.ones(10), 0, 10) == 10.0


def test_a_change_elsewhere_in_the_backends_recompiles_the_cached_function():
    _run("real")
    assert _run("real") == {"hits": 1, "misses": 0}          # cached and reused
    assert _run("another-digest") == {"hits": 0, "misses": 1}  # not reused: compiled afresh
    assert _run("another-digest") == {"hits": 1, "misses": 0}
    assert _run("real")["misses"] == 1                        # and back
