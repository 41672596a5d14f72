"""Entries of the local tier and the shared form of keys.

Why apart: the manager's hot path reads two fields of an entry (``expires``
and ``limits``), so entries are small slotted objects and the rare usage
limits live in a separate object; keys shared through Redis need one string
form that cannot collide across types (``1`` vs ``"1"``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import msgpack
import numpy as np

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
    """The string form of a key for shared tiers: str keys as they are, others typed and prefixed.

    The rule is Python's dict equality, in every tier: keys that compare equal (``1``, ``1.0``,
    ``True``, ``np.int64(1)``) share one form, keys that differ (``1`` and ``"1"``) never do. NaN
    is refused: it equals nothing, not even itself, so no process could look it up again.
    """
    if type(key) is str:
        return key
    if key is None:
        return "\x00c:None"
    if isinstance(key, (bool, np.bool_)):
        return f"\x00i:{int(key)}"
    if isinstance(key, (int, np.integer)):
        return f"\x00i:{int(key)}"
    if isinstance(key, (float, np.floating)):
        key = float(key)
        if key != key:
            raise CacheError("NaN cannot be a cache key: it is not equal to itself, so it could never "
                             "be found again. Use another key.")
        if key.is_integer():
            return f"\x00i:{int(key)}"  # 1.0 == 1: one key, as in a dict
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


def check_seconds(name: str, value: Any, allow_none: bool = True) -> float | None:
    """``value`` as a float number of seconds, or a CacheError naming ``name``.

    Why so strict: a string (``ttl='60'``) or a bool is a caller's mistake, and NaN or infinity
    never compare as expired, so each would silently mean "keep forever".
    """
    if value is None and allow_none:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
            or not math.isfinite(value) or value < 0):
        raise CacheError(f"{name} must be a finite number of seconds >= 0"
                         f"{' (or None)' if allow_none else ''}; got {value!r}.")
    return float(value)


# invalidation: pure decisions, the Redis I/O lives in redis_tier ------------------------------

class Invalidation:
    """What one event asks a node to drop: some keys, every key with some tags, or everything."""

    __slots__ = ("keys", "tags", "clear")

    def __init__(self, keys: tuple[str, ...] = (), tags: tuple[str, ...] = (), clear: bool = False) -> None:
        self.keys = keys
        self.tags = tags
        self.clear = clear

    def __repr__(self) -> str:
        return f"Invalidation(keys={self.keys!r}, tags={self.tags!r}, clear={self.clear})"


CLEAR_ALL = Invalidation(clear=True)  # a lost or restored subscription, or a peer's clear()


def parse_invalidation(data: Any, node_id: str, outages: int) -> Invalidation | None:
    """The invalidation a pub/sub payload asks for, or None (not ours, or our own current write).

    Our own messages are skipped only when sent since the last outage (``outages``, the sender's
    count, is in the message): one sent before may have landed late, after we re-read the old value.
    """
    try:
        msg = msgpack.unpackb(data, raw=False) if isinstance(data, bytes) else None
    except Exception:
        return None
    if not isinstance(msg, dict):
        return None
    if msg.get("o") == node_id and msg.get("e") == outages:
        return None
    keys = tuple(k for k in msg.get("k") or () if isinstance(k, str))
    tags = tuple(t for t in msg.get("t") or () if isinstance(t, str))
    return Invalidation(keys, tags, bool(msg.get("c")))


def keys_to_drop(inval: Invalidation, tag_index: Mapping[str, Iterable[Hashable]]) -> list[Hashable] | None:
    """The local keys ``inval`` removes given the local tag index; None means every key."""
    if inval.clear:
        return None
    keys: list[Hashable] = list(inval.keys)
    for tag in inval.tags:
        keys.extend(tag_index.get(tag, ()))
    return keys
