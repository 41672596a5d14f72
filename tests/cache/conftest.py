"""Cache tests: snapshots go to a temporary NOODLE_CACHE_DIR, never the user's home."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture(autouse=True)
def _cache_dir(isolated_settings):
    """Every test here gets its own cache folder (``isolated_settings`` in tests/conftest.py)."""


@pytest.fixture
def namespace() -> str:
    """A namespace unique to this test, so runs sharing one Redis never collide."""
    return "t" + uuid.uuid4().hex[:12]
