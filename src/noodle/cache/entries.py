"""Entries of the local tier and the shared form of keys.

Why apart: the manager's hot path reads two fields of an entry (``expires``
and ``limits``), so entries are small slotted objects and the rare usage
limits live in a separate object; keys shared through Redis need one string
form that cannot collide across types (``1`` vs ``"1"``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from typing import Any

from noodle.cache.policies import MISSING
from noodle.errors import CacheError

_DEP = "\x00dep:"


class _Limits:
    """Usage limits of one entry (rare, so they live apart from the hot fields)."""

    __slots__ = ("max_idle", "last", "max_hits", "hits")

    def __init__(self, max_idle: float, max_hits: int) -> None:
        self.max_idle = max_idle
        self.last = time.monotonic()
        self.max_hits = max_hits
        self.hits = 0


class _Entry:
    __slots__ = ("value", "expires", "size", "tags", "limits")

    def __init__(self, value: Any, expires: float, size: int, tags: tuple[str, ...],
                 limits: _Limits | None) -> None:
        self.value = value
        self.expires = expires
        self.size = size
        self.tags = tags
        self.limits = limits


class _Flight:
    __slots__ = ("event", "value", "error")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.value: Any = MISSING
        self.error: BaseException | None = None


def _canonical(key: Hashable) -> str:
    """The string form of a key for shared tiers: str keys as they are, others typed and prefixed."""
    if type(key) is str:
        return key
    if isinstance(key, bool) or key is None:
        return f"\x00c:{key!r}"
    if isinstance(key, int):
        return f"\x00i:{key}"
    if isinstance(key, float):
        return f"\x00f:{key!r}"
    if isinstance(key, bytes):
        return "\x00b:" + key.hex()
    if isinstance(key, tuple):
        return "\x00t:(" + ",".join(_canonical(k) for k in key) + ")"
    raise CacheError(
        f"a cache key shared through Redis must be a str, bytes, int, float, bool, None or a tuple of "
        f"those; got {type(key).__name__}. Turn it into a string first."
    )


def _dep_tag(key: Hashable) -> str:
    """The tag carried by entries that depend on ``key`` ('' if the key has no shared form)."""
    try:
        return _DEP + _canonical(key)
    except CacheError:
        return ""
