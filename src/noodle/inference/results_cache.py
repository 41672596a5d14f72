"""Serve identical inputs from a :class:`~noodle.cache.CacheManager` instead of running the model again.

Why the key hashes everything it does: a cached answer may be served only
while it is the answer. The key is a BLAKE2b digest of the model's bytes
digest, the variant (an INT8 answer is not an FP32 answer), and every input's
name, dtype, shape and raw bytes, so a changed element, dtype or shape is a
miss. Values are stored as a dict of arrays (the cache's codec moves them to
Redis as header + bytes, never pickle), and every hit is a fresh copy so one
caller writing into its result cannot change another's.

Example::

    from noodle.inference import MLInferenceEngine
    eng = MLInferenceEngine("model.onnx", cache=True)   # or cache=CacheManager(...)
    a = eng.infer(x); b = eng.infer(x)                  # b is served from the cache
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from noodle.errors import InferenceError


class ResultsCache:
    """Content-hash keyed results of one model variant in a CacheManager (``cache=True``: a private LRU one)."""

    def __init__(self, model_data: bytes, variant: str, cache: Any) -> None:
        from noodle.cache import CacheManager  # noqa: PLC0415

        if cache is True:
            cache = CacheManager(policy="lru", namespace="inference", redis_url=None, snapshot=False)
        if not isinstance(cache, CacheManager):
            raise InferenceError(f"cache must be True or a noodle.cache.CacheManager, got {type(cache).__name__}.")
        self.cache = cache
        self._prefix = hashlib.blake2b(model_data, digest_size=16).digest() + variant.encode() + b"\0"

    def key(self, feeds: dict[str, np.ndarray]) -> str:
        """The content key of ``feeds`` for this model and variant."""
        h = hashlib.blake2b(self._prefix, digest_size=20)
        for name in sorted(feeds):
            arr = feeds[name]
            h.update(f"{name}\0{arr.dtype.str}\0{arr.shape}\0".encode())
            h.update(memoryview(np.ascontiguousarray(arr)).cast("B"))
        return "noodle-inference:" + h.hexdigest()

    def get(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """A copy of the cached outputs for ``feeds``, or None on a miss."""
        value = self.cache.get(self.key(feeds))
        if not isinstance(value, dict):
            return None
        return {k: np.array(v, copy=True) for k, v in value.items()}

    def put(self, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
        """Remember ``outputs`` for ``feeds`` (copied, so later writes by the caller do not leak in)."""
        self.cache.set(self.key(feeds), {k: np.array(v, copy=True) for k, v in outputs.items()})
