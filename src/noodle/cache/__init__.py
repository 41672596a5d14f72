"""noodle.cache: a local cache tier with LRU/LFU/TTL/adaptive policies, a Redis tier and memoization.

Example::

    import noodle as nd
    cache = nd.cache.CacheManager(policy="adaptive", max_entries=10_000, redis_url=None)
    cache.set("k", 1)
    cache.get("k")

    @nd.cache.memoize(ttl=60)
    def slow(x): ...

Nothing here unpickles: shared tiers and snapshots use :mod:`noodle.cache.codec`.
"""

from noodle.cache.codec import decode, encode
from noodle.cache.manager import CacheManager
from noodle.cache.memoize import content_key, default_cache, memoize
from noodle.cache.policies import AdaptivePolicy, LFUPolicy, LRUPolicy, TTLPolicy, make_policy
from noodle.cache.stats import publish

__all__ = [
    "AdaptivePolicy", "CacheManager", "LFUPolicy", "LRUPolicy", "TTLPolicy", "content_key", "decode",
    "default_cache", "encode", "make_policy", "memoize", "publish",
]
