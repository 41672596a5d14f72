"""Shared fixtures: the real servers started by ``make test`` (scripts/services.sh)."""

from __future__ import annotations

import os
import sys
import tempfile
import threading

import pytest

# Tests must not read or write the user's calibration and kernel caches (a calibration measured
# while the test suite loads both cores would stick for later real runs), so each test session
# gets its own cache folder unless one is given.
os.environ.setdefault("NOODLE_CACHE_DIR", tempfile.mkdtemp(prefix="noodle-test-cache-"))


def _service(var: str) -> str:
    value = os.environ.get(var)
    if not value:
        pytest.fail(
            f"{var} is not set: this test needs the real server that `make test` starts "
            f"(scripts/services.sh start, then source .noodle-services/env)."
        )
    return value


# background threads that compile or measure, and end on their own
_SHORT_LIVED = ("noodle-compile-", "noodle-numba-warm", "noodle-calibrate")


@pytest.fixture(autouse=True)
def _no_background_compile_outlives_its_test():
    """Wait, after each test, for the compiles it started in the background.

    Why: a compile left running holds the GIL into the next test, whose own background work and
    deadlines it then disturbs (a Numba compile also enters ``warnings.catch_warnings``; see
    noodle/_numba_warnings.py). A test's work ends with the test.
    """
    yield
    manager = sys.modules.get("noodle.jit.manager")
    if manager is not None:
        assert manager.default_manager().wait_idle(300), "a background JIT compile ran over 300 s"
    api = sys.modules.get("noodle.jit.api")
    if api is not None and api._builder is not None:
        api._builder.submit(lambda: None).result(timeout=300)
    for thread in threading.enumerate():
        if thread.name.startswith(_SHORT_LIVED):
            thread.join(timeout=300)


@pytest.fixture
def isolated_settings(tmp_path, monkeypatch):
    """Settings read from a per-test cache folder with cache warming off, restored afterwards.

    Why shared: the cache and store suites both write snapshots under NOODLE_CACHE_DIR and
    must never see each other's (or the user's) files; each makes it autouse in its conftest.
    """
    from noodle import config

    monkeypatch.setenv("NOODLE_CACHE_DIR", str(tmp_path / "noodle-cache"))
    monkeypatch.setenv("NOODLE_SYNTAX_FIXER_CACHE_WARMING", "false")
    config.reload()
    yield
    monkeypatch.undo()
    config.reload()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real Redis server started for this test run."""
    return _service("NOODLE_TEST_REDIS_URL")


@pytest.fixture(scope="session")
def redis_server_binary() -> str:
    """Path of the redis-server binary, for tests that start and kill their own server."""
    return _service("NOODLE_TEST_REDIS_SERVER")


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of the real PostgreSQL database started for this test run."""
    return _service("NOODLE_TEST_PG_URL")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Path of the headless Chromium binary installed by `make test`."""
    return _service("NOODLE_TEST_CHROMIUM")


def _gpu_count() -> int:
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:
        return 0


HAS_GPU = _gpu_count() > 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_GPU:
        return
    skip = pytest.mark.skip(reason="no CUDA GPU on this machine (gpu tests run on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
