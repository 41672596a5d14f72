"""Fixtures for the device tests: switch settings for one test and restore them after."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from noodle import config
from noodle.devices import refresh


@pytest.fixture
def settings_env() -> Iterator[Callable[..., None]]:
    """``settings_env(NOODLE_DISABLE_GPU="true")`` reloads settings with those variables added."""

    def apply(**env: str) -> None:
        config.reload({**os.environ, **env})
        refresh()

    yield apply
    config.reload()
    refresh()
