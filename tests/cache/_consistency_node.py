"""One process of the consistency tests: a writer or a reader, recording every operation with its wall time.

Run as ``python _consistency_node.py ROLE URL NAMESPACE KEYS OUT``: prints "ready" once its manager
is up, reads "WRITE_UNTIL STOP_AT" (Unix seconds) from stdin, then writes (writer, until
WRITE_UNTIL) and reads until STOP_AT, and
dumps JSON to OUT: reads as [t, key, value] and the writer's sets as [t_start, t_end, key, version, ok].
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    role, url, namespace, nkeys, out = sys.argv[1:6]
    os.environ["NOODLE_SYNTAX_FIXER_CACHE_WARMING"] = "false"
    from noodle.cache import CacheManager

    cache = CacheManager(policy="lru", max_entries=100, ttl=60, redis_url=url, namespace=namespace,
                         snapshot=False)
    keys = [f"k{i}" for i in range(int(nkeys))]
    print("ready", flush=True)
    reads: list[list] = []
    sets: list[list] = []
    version = 0
    write_until_t, stop_at_t = (float(x) for x in sys.stdin.readline().split())
    while (now := time.time()) < stop_at_t:
        if role == "writer" and now < write_until_t:
            version += 1
            for key in keys:
                t0 = time.time()
                ok = cache.set(key, version)
                sets.append([t0, time.time(), key, version, ok])
            time.sleep(0.01)
            continue
        for key in keys:
            reads.append([time.time(), key, cache.get(key)])
        time.sleep(0.002)
    cache.close()
    with open(out, "w") as f:
        json.dump({"reads": reads, "sets": sets}, f)


if __name__ == "__main__":
    main()
