"""The shared Redis tier: safe payloads, TTLs in Redis, tag sets, locks and pub/sub invalidation.

Why a separate object: everything that can fail because a server is away lives
here, behind one rule: a Redis error never escapes to the caller. It marks the
tier *down* (one log warning and ``noodle_cache_redis_down_total`` per outage),
the manager carries on local-only, and the tier tries again by itself (the
subscriber thread reconnects every ``retry_interval`` seconds; commands retry
once the interval has passed).

Why every call is bounded (``NOODLE_CACHE_REDIS_TIMEOUT``, default 0.5 s, no
retries): a *hung* server (stopped, partitioned) accepts bytes and never
answers, so without a bound a write blocks for minutes and a subscription looks
healthy while it hears nothing. The subscriber PINGs its connection and counts
a PING unanswered within the timeout as a lost subscription, exactly like a
dropped one.

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
from redis.backoff import NoBackoff
from redis.retry import Retry

from noodle.cache import codec
from noodle.cache.entries import Invalidation, parse_invalidation
from noodle.cache.policies import MISSING
from noodle.errors import CacheError

log = logging.getLogger("noodle.cache")

# Errors that mean "the server is away or not answering": degrade, warn once, retry later.
_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)
# Errors that mean "this is not a usable Redis" (wrong protocol, refused SELECT, bad password).
_MISCONFIGURED = (redis.ResponseError, redis.exceptions.InvalidResponse, redis.AuthenticationError)

# Delete a lock only if we still hold it (a holder past its timeout must not free someone else's lock).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""


class RedisTier:
    """One namespace's view of a Redis server; every method degrades to 'nothing there' when it is down."""

    def __init__(self, url: str, namespace: str, on_down: Callable[[], None],
                 on_up: Callable[[], None] | None = None, retry_interval: float = 0.25,
                 timeout: float = 0.5) -> None:
        self.url = url
        self.prefix = f"noodle:{namespace}:"
        self.channel = f"noodle:{namespace}:__inval__"
        self.node_id = uuid.uuid4().hex
        self.timeout = timeout
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry_on_timeout=False, retry=Retry(NoBackoff(), 0),  # one bounded try: we degrade instead
        )
        self._on_down = on_down
        self._on_up = on_up
        self.retry_interval = retry_interval
        self.up = True
        self._retry_at = 0.0
        self.down_count = 0
        self._state_lock = threading.Lock()
        self._release = self.client.register_script(_RELEASE)

    def check(self) -> None:
        """PING once at start: a server that answers but is not a usable Redis is a CacheError.

        Why at start: a wrong port (an HTTP server), a db index the server refuses or a bad password
        never heal by retrying, so they are reported once, naming the URL, instead of degrading
        into a warning per reconnect. An unreachable server only marks the tier down.
        """
        try:
            self.client.ping()
        except _ERRORS as exc:
            if isinstance(exc, redis.AuthenticationError):
                raise self._misconfigured(exc) from None
            self.mark_down(exc)
        except (*_MISCONFIGURED, redis.RedisError) as exc:
            raise self._misconfigured(exc) from None

    def _misconfigured(self, exc: BaseException) -> CacheError:
        self.close()
        return CacheError(
            f"the cache's Redis URL {self.url} does not lead to a usable Redis server "
            f"({type(exc).__name__}: {exc}). Check the host, port, database index and password, "
            f"or pass redis_url=None for a local-only cache."
        )

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
        log.warning("noodle cache: Redis at %s is unreachable (%s: %s); serving from the local tier only "
                    "until it is back.", self.url, type(exc).__name__, exc)
        self._on_down()

    def mark_up(self) -> None:
        with self._state_lock:
            was_down = not self.up
            self.up = True
        if was_down:
            log.warning("noodle cache: Redis at %s is reachable again.", self.url)
            if self._on_up is not None:
                self._on_up()

    def _call(self, fn: Callable[[], Any], fallback: Any) -> Any:
        if not self.up and time.monotonic() < self._retry_at:
            return fallback
        try:
            result = fn()
        except _ERRORS as exc:
            self.mark_down(exc)
            return fallback
        except redis.RedisError as exc:  # e.g. WRONGTYPE on a key someone else planted: a miss
            log.debug("noodle cache: Redis refused a command (%s); treated as a miss.", exc)
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

    def set(self, key: str, payload: bytes, ttl: float, tags: tuple[str, ...],
            dep_tag: str = "") -> tuple[bool, list[str]]:
        """Store, tell other nodes to drop their copy of ``key``, and list the keys that depend on it.

        Returns ``(stored, dependents)``; ``stored`` is False when the write did not complete within
        the timeout (Redis down or hung: the write may be lost, or land late). The dependents come
        from the same round trip, so overwriting a key with no dependents costs nothing extra.
        """
        def run() -> tuple[bool, list[str]]:
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
            if dep_tag:
                pipe.smembers(self.prefix + "__tag__:" + dep_tag)
            pipe.publish(self.channel, self._message(keys=[key]))
            results = pipe.execute()
            members = results[-2] if dep_tag else ()
            return True, [m.decode("utf-8", "replace") if isinstance(m, bytes) else str(m) for m in members]
        return self._call(run, (False, []))

    def _message(self, keys: list[str] = (), tags: list[str] = (), clear: bool = False) -> bytes:  # type: ignore[assignment]
        # "e": outages seen when sent. A message of ours sent before an outage may land after it
        # (buffered by a hung server or a partition): it then tells us too, since our local tier
        # may have re-read the value it replaced.
        return msgpack.packb({"o": self.node_id, "e": self.down_count, "k": list(keys), "t": list(tags),
                              "c": clear})

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

    ``on_message(inval)`` applies a peer's invalidation (an :class:`Invalidation`
    from the pure :func:`parse_invalidation`); ``on_lost()`` runs as soon as the
    subscription breaks *or stalls* (a PING, or the SUBSCRIBE itself, unanswered
    within the tier's timeout) and ``on_restored()`` when it is back, so the
    manager can clear its local tier both times (what it holds may have been
    invalidated while nobody could tell it).
    """

    def __init__(self, tier: RedisTier, on_message: Callable[[Invalidation], None],
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
        self._reported = False  # the current outage was already logged (no flood of errors)

    def run(self) -> None:
        first = True
        while not self.stop_event.is_set():
            try:
                self._listen(first)
            except _ERRORS as exc:
                self._lost(exc, first)
            except Exception as exc:  # a bug, or a server that stopped speaking Redis: never silent, never a flood
                if not self._reported:
                    log.error("noodle cache: subscriber for %s failed (%s: %s); reconnecting every %.2f s",
                              self.tier.url, type(exc).__name__, exc, self.tier.retry_interval)
                self._reported = True
                self._lost(exc, first)
            finally:
                self._close_pubsub()
            first = False
            self.stop_event.wait(self.tier.retry_interval)

    def _lost(self, exc: BaseException, first: bool) -> None:
        if self.subscribed or first:
            self.subscribed = False
            self.on_lost()
        self.tier.mark_down(exc)
        self.ready.set()  # a manager waiting for the first subscribe gives up at once

    def _listen(self, first: bool) -> None:
        """Subscribe, then read messages, PINGing every half timeout; raise when the server goes quiet."""
        timeout = self.tier.timeout
        self._pubsub = self.tier.client.pubsub(ignore_subscribe_messages=False)
        self._pubsub.subscribe(self.tier.channel)
        waiting_since: float | None = time.monotonic()  # an answer we wait for (SUBSCRIBE, then PINGs)
        next_ping = 0.0
        while not self.stop_event.is_set():
            msg = self._pubsub.get_message(timeout=min(0.1, timeout / 2))
            now = time.monotonic()
            kind = msg.get("type") if msg is not None else None
            if kind == "subscribe":
                if not first:
                    self.on_restored()  # clear first: 'subscribed' must never be seen before that
                self.subscribed = True
                self._reported = False
                self.tier.mark_up()
                self.ready.set()
                waiting_since, next_ping = None, now + timeout / 2
            elif kind == "pong":
                waiting_since, next_ping = None, now + timeout / 2
            elif kind == "message":
                self._handle(msg.get("data"))  # type: ignore[union-attr]
            if waiting_since is not None and now - waiting_since > timeout:
                raise redis.TimeoutError(f"no answer from Redis within {timeout} s (hung or partitioned)")
            if waiting_since is None and now >= next_ping:
                self._pubsub.ping()
                waiting_since = now

    def _handle(self, data: Any) -> None:
        inval = parse_invalidation(data, self.tier.node_id, self.tier.down_count)
        if inval is not None:
            self.on_message(inval)

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
