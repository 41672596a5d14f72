"""CacheManager, invalidation and @memoize in one screen (local tier only; add redis_url=... to share).

Run: python examples/cache_quickstart.py
"""

import numpy as np

import noodle as nd


def main() -> None:
    cache = nd.cache.CacheManager(policy="adaptive", max_entries=1000, max_bytes=50_000_000, ttl=60,
                                  redis_url=None, snapshot=False)
    cache.set("weights", np.ones((100, 100)), tags=("model",))
    cache.set("bias", np.zeros(100), tags=("model",))
    cache.set("summary", {"layers": 2}, depends_on=["weights"])
    print("weights cached:", cache.get("weights").shape)
    cache.invalidate(key="weights")  # cascades to 'summary'
    print("after invalidating weights:", cache.get("weights"), cache.get("summary"), cache.get("bias").shape)
    cache.invalidate(tag="model")
    print("value or loader:", cache.get_or_load("answer", lambda: 42))

    @nd.cache.memoize(cache=cache, ttl=600)
    def spectrum(x: np.ndarray) -> np.ndarray:
        return np.abs(np.fft.rfft(x))

    x = np.random.default_rng(0).random(4096)
    first = spectrum(x)
    second = spectrum(x.copy())  # same content: served from the cache (read-only)
    print("memoized equal:", np.array_equal(first, second), "read-only:", not second.flags.writeable)
    print(cache.stats())


if __name__ == "__main__":
    main()
