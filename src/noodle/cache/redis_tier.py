"""The shared Redis tier: safe payloads, TTLs in Redis, tag sets, locks and pub/sub invalidation.

Why a separate object: everything that can fail because a server is away lives
here, behind one rule: a Redis error never escapes to the caller. It marks the
tier *down* (one log warning and ``noodle_cache_redis_down_total`` per outage),
the manager carries on local-only, and the tier tries again by itself (the
subscriber thread reconnects every ``retry_interval`` seconds; commands retry
once the interval has passed).

Payload in Redis: the safe codec (no pickle) of ``[expires_unix_ms, tags, value]``
so one GET brings the value, its remaining lifetime and its tags.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgpack
import redis

from noodle.cache import codec
from noodle.cache.policies import MISSING

log = logging.getLogger("noodle.cache")

_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)

# Delete a lock only if we still hold it (a holder past its timeout must not free someone else's lock).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""


class RedisTier:
    """One namespace's view of a Redis server; every method degrades to 'nothing there' when it is down."""

    def __init__(self, url: str, namespace: str, on_down: Callable[[], None],
                 retry_interval: float = 0.5, socket_timeout: float = 1.0) -> None:
        self.url = url
        self.prefix = f"noodle:{namespace}:"
        self.channel = f"noodle:{namespace}:__inval__"
        self.node_id = uuid.uuid4().hex
        self.client = redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
            retry_on_timeout=False,
        )
        self._on_down = on_down
        self.retry_interval = retry_interval
        self.up = True
        self._retry_at = 0.0
        self.down_count = 0
        self._state_lock = threading.Lock()
        self._release = self.client.register_script(_RELEASE)

    # health ------------------------------------------------------------------
    def usable(self) -> bool:
        """True if commands should be tried now (up, or down but due for a retry)."""
        return self.up or time.monotonic() >= self._retry_at

    def mark_down(self, exc: BaseException) -> None:
        with self._state_lock:
            self._retry_at = time.monotonic() + self.retry_interval
            if not self.up:
                return
            self.up = False
            self.down_count += 1
        log.warning("noodle cache: Redis at %s is unreachable (%s); serving from the local tier only "
                    "until it is back.", self.url, exc)
        self._on_down()

    def mark_up(self) -> None:
        with self._state_lock:
            was_down = not self.up
            self.up = True
        if was_down:
            log.warning("noodle cache: Redis at %s is reachable again.", self.url)

    def _call(self, fn: Callable[[], Any], fallback: Any) -> Any:
        if not self.up and time.monotonic() < self._retry_at:
            return fallback
        try:
            result = fn()
        except _ERRORS as exc:
            self.mark_down(exc)
            return fallback
        if not self.up:
            self.mark_up()
        return result

    # data ----------------------------------------------------------------------
    def rkey(self, key: str) -> str:
        return self.prefix + key

    def get_raw(self, key: str) -> bytes | None:
        return self._call(lambda: self.client.get(self.prefix + key), None)

    def mget_raw(self, keys: list[str]) -> list[bytes | None]:
        if not keys:
            return []
        return self._call(lambda: self.client.mget([self.prefix + k for k in keys]), [None] * len(keys))

    @staticmethod
    def pack(value: Any, expires_unix: float, tags: tuple[str, ...]) -> bytes:
        """Raises CacheEncodingError for values that cannot be encoded safely."""
        return codec.encode_entry(int(expires_unix * 1000) if expires_unix else 0, list(tags), value)

    @staticmethod
    def unpack(data: bytes) -> tuple[Any, float, tuple[str, ...]]:
        """(value, expires_unix, tags); raises codec.DecodeError for anything not ours."""
        obj = codec.decode_entry(data)
        if (not isinstance(obj, list) or len(obj) != 3 or not isinstance(obj[0], int)
                or not isinstance(obj[1], list) or not all(isinstance(t, str) for t in obj[1])):
            raise codec.DecodeError("not a noodle cache entry")
        return obj[2], obj[0] / 1000.0, tuple(obj[1])

    def set(self, key: str, payload: bytes, ttl: float, tags: tuple[str, ...]) -> bool:
        """Store and tell other nodes to drop their local copy of ``key``; False if Redis is down."""
        def run() -> bool:
            pipe = self.client.pipeline(transaction=False)
            rkey = self.prefix + key
            if ttl:
                pipe.set(rkey, payload, px=max(1, int(ttl * 1000)))
            else:
                pipe.set(rkey, payload)
            for tag in tags:
                tkey = self.prefix + "__tag__:" + tag
                pipe.sadd(tkey, key)
                if ttl:  # tag sets must not outlive every member forever
                    pipe.pexpire(tkey, max(1, int(ttl * 1000)), gt=True)
                    pipe.pexpire(tkey, max(1, int(ttl * 1000)), nx=True)
                else:
                    pipe.persist(tkey)
            pipe.publish(self.channel, self._message(keys=[key]))
            pipe.execute()
            return True
        return self._call(run, False)

    def _message(self, keys: list[str] = (), tags: list[str] = (), clear: bool = False) -> bytes:  # type: ignore[assignment]
        return msgpack.packb({"o": self.node_id, "k": list(keys), "t": list(tags), "c": clear})

    def tag_members(self, tags: list[str]) -> list[str] | None:
        def run() -> list[str]:
            pipe = self.client.pipeline(transaction=False)
            for tag in tags:
                pipe.smembers(self.prefix + "__tag__:" + tag)
            out: list[str] = []
            for members in pipe.execute():
                out.extend(m.decode("utf-8", "replace") if isinstance(m, bytes) else str(m) for m in members)
            return out
        return self._call(run, None)

    def delete(self, keys: list[str], tags: list[str]) -> bool:
        """Delete keys and tag sets, then publish the invalidation (after the delete: never before)."""
        def run() -> bool:
            names = [self.prefix + k for k in keys] + [self.prefix + "__tag__:" + t for t in tags]
            if names:
                self.client.delete(*names)
            self.client.publish(self.channel, self._message(keys=keys, tags=tags))
            return True
        return self._call(run, False)

    def clear(self) -> bool:
        def run() -> bool:
            batch: list[bytes] = []
            for name in self.client.scan_iter(match=self.prefix + "*", count=1000):
                batch.append(name)
                if len(batch) >= 1000:
                    self.client.delete(*batch)
                    batch.clear()
            if batch:
                self.client.delete(*batch)
            self.client.publish(self.channel, self._message(clear=True))
            return True
        return self._call(run, False)

    # locks -----------------------------------------------------------------------
    def try_lock(self, key: str, timeout: float) -> str | None:
        """A token if we now hold the loader lock of ``key`` (it expires by itself after ``timeout``)."""
        token = uuid.uuid4().hex
        ok = self._call(lambda: self.client.set(self.prefix + "__lock__:" + key, token, nx=True,
                                                px=max(1, int(timeout * 1000))), None)
        return token if ok else None

    def lock_held(self, key: str) -> bool:
        return bool(self._call(lambda: self.client.exists(self.prefix + "__lock__:" + key), 0))

    def unlock(self, key: str, token: str) -> None:
        self._call(lambda: self._release(keys=[self.prefix + "__lock__:" + key], args=[token]), None)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass


class Subscriber(threading.Thread):
    """Listens for invalidations on the namespace's channel and reconnects after every drop.

    ``on_message(keys, tags, clear)`` applies a peer's invalidation;
    ``on_lost()`` runs as soon as the subscription breaks and ``on_restored()``
    when it is back, so the manager can clear its local tier both times (what it
    holds may have been invalidated while nobody could tell it).
    """

    def __init__(self, tier: RedisTier, on_message: Callable[[list[str], list[str], bool], None],
                 on_lost: Callable[[], None], on_restored: Callable[[], None]) -> None:
        super().__init__(name=f"noodle-cache-sub-{tier.prefix}", daemon=True)
        self.tier = tier
        self.on_message = on_message
        self.on_lost = on_lost
        self.on_restored = on_restored
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self.subscribed = False
        self._pubsub: Any = None

    def run(self) -> None:
        first = True
        while not self.stop_event.is_set():
            try:
                self._pubsub = self.tier.client.pubsub(ignore_subscribe_messages=False)
                self._pubsub.subscribe(self.tier.channel)
                while not self.stop_event.is_set():
                    msg = self._pubsub.get_message(timeout=0.2)
                    if msg is None:
                        continue
                    if msg.get("type") == "subscribe":
                        if not first:
                            self.on_restored()  # clear first: 'subscribed' must never be seen before that
                        self.subscribed = True
                        first = False
                        self.tier.mark_up()
                        self.ready.set()
                    elif msg.get("type") == "message":
                        self._handle(msg.get("data"))
            except _ERRORS as exc:
                if self.subscribed or first:
                    self.subscribed = False
                    self.on_lost()
                    self.tier.mark_down(exc)
                first = False
                self.ready.set()  # a manager waiting for the first subscribe gives up at once
            except Exception as exc:  # a bug here must not kill invalidation silently
                log.error("noodle cache: subscriber error %r; reconnecting", exc)
                if self.subscribed:
                    self.subscribed = False
                    self.on_lost()
            finally:
                self._close_pubsub()
            self.stop_event.wait(self.tier.retry_interval)

    def _handle(self, data: Any) -> None:
        try:
            msg = msgpack.unpackb(data, raw=False) if isinstance(data, bytes) else None
        except Exception:
            msg = None
        if not isinstance(msg, dict):
            return
        if msg.get("o") == self.tier.node_id:
            return
        keys = [k for k in msg.get("k") or () if isinstance(k, str)]
        tags = [t for t in msg.get("t") or () if isinstance(t, str)]
        self.on_message(keys, tags, bool(msg.get("c")))

    def _close_pubsub(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:
                pass
            self._pubsub = None

    def stop(self) -> None:
        self.stop_event.set()


__all__ = ["MISSING", "RedisTier", "Subscriber"]
