"""Store tests: a fresh table per test (unique name) in SQLite or the real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from noodle import config


@pytest.fixture(autouse=True)
def _settings(tmp_path, monkeypatch):
    monkeypatch.setenv("NOODLE_CACHE_DIR", str(tmp_path / "noodle-cache"))
    monkeypatch.setenv("NOODLE_SYNTAX_FIXER_CACHE_WARMING", "false")
    config.reload()
    yield
    monkeypatch.undo()
    config.reload()


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
