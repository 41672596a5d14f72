"""One real local cluster of worker processes for the dist tests (starting one costs about a second)."""

from __future__ import annotations

import cloudpickle
import dist_workfns
import pytest

from noodle.dist import Processor

# the workers get these functions by value, whatever their sys.path
cloudpickle.register_pickle_by_value(dist_workfns)


@pytest.fixture(scope="session")
def proc():
    """Two worker processes with one thread each, scheduler on a free loopback port."""
    with Processor(n_workers=2, threads_per_worker=1, port=0) as p:
        yield p
