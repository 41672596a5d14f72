"""Fixtures for the backend tests: one Numba backend with a private kernel cache per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the shared hand-built specs (backend_specs.py)


@pytest.fixture(scope="session")
def kernel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("noodle-kernels")


@pytest.fixture(scope="session")
def numba_backend(kernel_cache: Path):
    from noodle.backends.numba_cpu import NumbaBackend
    from noodle.memory.pool import BufferPool

    return NumbaBackend(pool=BufferPool(max_bytes=1 << 30), cache_dir=kernel_cache)
