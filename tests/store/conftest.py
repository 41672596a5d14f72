"""Store tests: a fresh table per test (unique name) in SQLite or the real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture(autouse=True)
def _settings(isolated_settings):
    """Every test here gets its own cache folder (``isolated_settings`` in tests/conftest.py)."""


@pytest.fixture
def table():
    """A unique table name; dropped from PostgreSQL afterwards so re-runs leave nothing behind."""
    import os

    name = "objs_" + uuid.uuid4().hex[:12]
    yield name
    url = os.environ.get("NOODLE_TEST_PG_URL")
    if url:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")
