"""Cache tests: snapshots go to a temporary NOODLE_CACHE_DIR, never the user's home."""

from __future__ import annotations

import uuid

import pytest

from noodle import config


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NOODLE_CACHE_DIR", str(tmp_path / "noodle-cache"))
    monkeypatch.setenv("NOODLE_SYNTAX_FIXER_CACHE_WARMING", "false")
    config.reload()
    yield
    monkeypatch.undo()
    config.reload()


@pytest.fixture
def namespace() -> str:
    """A namespace unique to this test, so runs sharing one Redis never collide."""
    return "t" + uuid.uuid4().hex[:12]
