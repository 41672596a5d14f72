"""A second node for the two-process tests: a CacheManager driven over a pipe (run with spawn)."""

from __future__ import annotations


def serve(conn, url: str, namespace: str) -> None:
    import os

    os.environ["NOODLE_SYNTAX_FIXER_CACHE_WARMING"] = "false"
    from noodle.cache import CacheManager

    cache = CacheManager(policy="lru", max_entries=100, ttl=60, redis_url=url, namespace=namespace,
                         snapshot=False)
    conn.send("ready")
    while True:
        cmd, *args = conn.recv()
        if cmd == "stop":
            cache.close()
            conn.send("bye")
            return
        if cmd == "get":
            conn.send(cache.get(args[0]))
        elif cmd == "local":
            with cache._lock:
                entry = cache._policy.peek(args[0])
            conn.send(None if entry is None or entry is _missing() else entry.value)
        elif cmd == "set":
            cache.set(args[0], args[1], tags=tuple(args[2]) if len(args) > 2 else ())
            conn.send("ok")
        elif cmd == "load":
            key, counter_key = args

            def loader(counter_key=counter_key):
                import time

                import redis

                redis.Redis.from_url(url).incr(counter_key)
                time.sleep(0.5)
                return "loaded"

            conn.send(cache.get_or_load(key, loader))


def _missing():
    from noodle.cache.policies import MISSING

    return MISSING


def wait_for(cond, timeout: float = 5.0) -> bool:
    """Poll ``cond`` every 20 ms until it holds or ``timeout`` seconds pass; its last value."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()
