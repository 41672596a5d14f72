"""MathStore: named arrays with metadata in SQLite or PostgreSQL, and cached read-only queries.

Why the database decides, not SQL parsing: which tables a statement reads is
asked of the database itself (SQLite's authorizer, PostgreSQL's EXPLAIN), and
every table a cached query reads gets triggers that bump a per-table version
in ``_noodle_table_versions`` on each INSERT/UPDATE/DELETE (and TRUNCATE),
whoever writes: this store, another store, another process or raw SQL. A
cached result records the versions it was read at (in the same transaction as
its rows) and is served only while they still hold, with or without Redis.
SQLite checks them on every hit (a local read: no grace, 0 stale results after
a commit). PostgreSQL learns them from notifications its triggers send at
commit, with at most ``max_staleness`` seconds (default 0.05) between a commit
in another process and the last hit that can miss it, because a round trip per
hit would cost more than the query it saves; ``max_staleness=0`` makes every
PostgreSQL hit check the database (0 stale, one round trip). A store always
sees its own writes at once. See :mod:`noodle.store._sqlite` and
:mod:`noodle.store._postgres`.

Cache keys hold the database's identity (SQLite: the file's real path and a
random id stored in the database; PostgreSQL: that id, database, server,
schema and search_path), so stores on different databases sharing one Redis
never serve each other's rows.

``query()`` is read-only in the database itself (SQLite: ``query_only`` and an
authorizer that denies writes; PostgreSQL: a READ ONLY transaction, one
statement per call, rolled back). Arrays are stored in the cache's safe
encoding (dtype/shape header + raw bytes), never pickled. Placeholders follow
the backend: ``?`` for SQLite, ``%s`` for PostgreSQL.
"""

from __future__ import annotations

import json
import math
import operator
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import xxhash

from noodle.cache import CacheManager, codec
from noodle.config import get_settings
from noodle.errors import CacheEncodingError, ConfigError, ObjectNotFoundError, StoreError
from noodle.store._postgres import PostgresTracker
from noodle.store._sqlite import SQLiteTracker

_DEFAULT: Any = object()
_NAME = r'"?([A-Za-z_][A-Za-z0-9_$]*(?:\."?[A-Za-z_][A-Za-z0-9_$]*"?)?)"?'
_READ_RE = re.compile(r"\b(?:FROM|JOIN)\s+" + _NAME, re.IGNORECASE)
_WRITE_RE = re.compile(
    r"\b(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|REPLACE\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM|"
    r"TRUNCATE(?:\s+TABLE)?|DROP\s+TABLE(?:\s+IF\s+EXISTS)?|ALTER\s+TABLE|"
    r"CREATE\s+(?:TEMP\w*\s+)?TABLE(?:\s+IF\s+NOT\s+EXISTS)?)\s+" + _NAME,
    re.IGNORECASE,
)
_STRATEGIES = ("lru_dist", "lru", "none")
_KEYABLE = (str, int, float, bytes, bool, type(None))


def tables_read(sql: str) -> set[str]:
    """Lower-case table names after FROM and JOIN, by a regex: a hint for humans only.

    The cache does not use it (it misses ``main.t``, comma joins, views and
    quoting); the database itself reports what a query reads.
    """
    return {m.group(1).lower().replace('"', "") for m in _READ_RE.finditer(sql)}


def tables_written(sql: str) -> set[str]:
    """Lower-case table names a statement writes, by a regex: a hint only (writes bump versions by trigger)."""
    return {m.group(1).lower().replace('"', "") for m in _WRITE_RE.finditer(sql)}


@dataclass
class MathObject:
    """One stored object: its name, array and metadata."""

    name: str
    array: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    updated: float = 0.0


class MathStore:
    """Arrays with metadata in a database; ``query`` results go through a CacheManager.

    ``url``: ``None`` (an SQLite file in ``NOODLE_CACHE_DIR``), a path, ``sqlite:///path``,
    ``sqlite:///:memory:`` or ``postgresql://...``. ``redis_url`` enables the
    shared tier of ``cache_strategy='lru_dist'`` (default: the settings').
    ``max_staleness`` (PostgreSQL only; seconds): how long after another
    process's commit a cached result it replaced may still be served (0: never,
    at one round trip per hit). SQLite hits are always exact.

    Example::

        store = MathStore("sqlite:///objects.db")
        store.put("w", np.ones((2, 2)), {"unit": "m"})
        rows = store.query("SELECT name FROM noodle_objects")
    """

    def __init__(self, url: str | None = None, table: str = "noodle_objects",
                 redis_url: str | None = _DEFAULT, namespace: str = "store",
                 cache_entries: int = 4096, ttl: float = 0, max_staleness: float = 0.05) -> None:
        if not isinstance(table, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", table):
            raise StoreError(f"table name {table!r} is not a plain SQL identifier (letters, digits, _).")
        _check_ttl(ttl, "MathStore(ttl=...)", allow_none=False)
        if isinstance(max_staleness, bool) or not isinstance(max_staleness, (int, float)) \
                or not 0 <= max_staleness <= 60:
            raise StoreError(f"MathStore(max_staleness=...) must be seconds between 0 and 60 (0: check the "
                             f"database on every cached hit), got {max_staleness!r}.")
        self.max_staleness = float(max_staleness)
        self.table = table
        self._lock = threading.RLock()
        self.url, self.backend = self._connect(url)
        self.served_from_cache = 0  # query() calls answered from a cache entry whose versions still held
        self._key_prefix = "q:" + xxhash.xxh3_128_hexdigest(self._tracker.identity.encode()) + ":"
        settings = get_settings()
        if redis_url is _DEFAULT:
            redis_url = settings.redis_url if settings.distributed_cache else None
        # One manager: 'lru' uses its local tier alone, 'lru_dist' its local tier and then Redis.
        self.cache = CacheManager(policy="lru", max_entries=cache_entries, ttl=ttl, redis_url=redis_url,
                                  namespace=namespace, snapshot=False)
        self._create()

    # connection -------------------------------------------------------------------
    def _connect(self, url: str | None) -> tuple[str, str]:
        if url is None:
            url = f"sqlite:///{_default_path()}"
        if not isinstance(url, str) or not url.strip():
            raise StoreError(f"MathStore needs a database: got {url!r}. Pass a path, sqlite:///path, "
                             "sqlite:///:memory: or postgresql://..., or None for the default file in "
                             "NOODLE_CACHE_DIR.")
        if url.startswith(("postgresql://", "postgres://")):
            return self._connect_pg(url), "postgresql"
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
        if "://" in path:
            raise StoreError(f"unsupported store URL {url!r}: use a path, sqlite:///path or postgresql://...")
        if not path.strip():
            raise StoreError(f"store URL {url!r} names no SQLite file: use sqlite:///path or sqlite:///:memory:.")
        self._connect_sqlite(path)
        return url, "sqlite"

    def _connect_pg(self, url: str) -> str:
        try:
            import psycopg
        except ImportError:
            raise StoreError("PostgreSQL needs psycopg 3: pip install 'noodle[store]'.") from None
        try:
            self._conn: Any = psycopg.connect(url, autocommit=False)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {url}: {exc}") from None
        self._ph = "%s"
        self._db_errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        self._tracker: Any = PostgresTracker(url, self._conn, self.max_staleness)
        return url

    def _connect_sqlite(self, path: str) -> None:
        memory = path == ":memory:"
        # Two connections (writes; read-only queries) must see one database, so memory is shared by URI.
        target = f"file:noodle-{uuid.uuid4().hex}?mode=memory&cache=shared" if memory else path
        try:
            self._conn = sqlite3.connect(target, uri=memory, check_same_thread=False, isolation_level=None,
                                         timeout=_SQLITE_BUSY_SECONDS)
            _retry_busy(lambda: self._conn.execute("PRAGMA foreign_keys=ON" if memory else "PRAGMA journal_mode=WAL"))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {path!r}: {exc}") from None
        self._ph = "?"
        self._db_errors = (sqlite3.Error,)
        self._tracker = SQLiteTracker(target, memory, self._conn, memory)

    def _create(self) -> None:
        blob = "BYTEA" if self.backend == "postgresql" else "BLOB"
        real = "DOUBLE PRECISION" if self.backend == "postgresql" else "REAL"
        sql = (f"CREATE TABLE IF NOT EXISTS {self.table} (name TEXT PRIMARY KEY, dtype TEXT NOT NULL, "
               f"shape TEXT NOT NULL, data {blob} NOT NULL, metadata TEXT NOT NULL, updated {real} NOT NULL)")
        if self.backend != "postgresql":
            self._write(sql, ())
            return
        # PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against a second process doing the same
        # at the same moment (a unique violation in pg_type): serialize it, as the version setup is
        with self._lock:
            try:
                with self._conn.transaction():
                    self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("noodle_create:" + self.table,))
                    self._conn.execute(sql)
            except self._db_errors as exc:
                raise StoreError(f"cannot create table {self.table!r} (postgresql): {exc}") from None

    def _write(self, sql: str, params: Sequence[Any]) -> int:
        """Run one write in its own transaction; the tables' triggers bump their versions in it."""
        args = _check_params(params)
        with self._lock:
            try:
                if self.backend == "sqlite":
                    count = self._write_sqlite(sql, args)
                else:
                    with self._conn.transaction():
                        count = self._conn.execute(sql, args).rowcount
            except self._db_errors as exc:
                raise StoreError(f"write failed ({self.backend}): {exc}; nothing was changed.") from None
            finally:
                self._tracker.wrote()
        return count

    def _write_sqlite(self, sql: str, args: tuple[Any, ...]) -> int:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            count = self._conn.execute(sql, args).rowcount
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return count

    # objects ------------------------------------------------------------------------
    def put(self, name: str, array: Any, metadata: dict[str, Any] | None = None) -> None:
        """Store ``array`` (any array-like; object dtypes refused) and JSON-able ``metadata`` under ``name``."""
        if not isinstance(name, str) or not name:
            raise StoreError(f"object names are non-empty strings, got {name!r}.")
        arr = _as_array(name, array)
        try:
            data = codec.encode(arr)
        except CacheEncodingError as exc:
            raise StoreError(f"cannot store {name!r}: {exc}") from None
        try:
            meta = json.dumps(metadata or {}, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"metadata of {name!r} must be JSON-serializable: {exc}") from None
        p = self._ph
        self._write(
            f"INSERT INTO {self.table} (name, dtype, shape, data, metadata, updated) VALUES ({p},{p},{p},{p},{p},{p}) "
            f"ON CONFLICT (name) DO UPDATE SET dtype=excluded.dtype, shape=excluded.shape, data=excluded.data, "
            f"metadata=excluded.metadata, updated=excluded.updated",
            (name, arr.dtype.str, json.dumps(list(arr.shape)), data, meta, time.time()),
        )

    def get(self, name: str, *, allocator: Any = None) -> MathObject:
        """The object stored under ``name``; raises ObjectNotFoundError if there is none.

        ``allocator``: a region (``with noodle.region() as alloc``) to load the
        array into: the stored bytes are copied once, straight into region
        memory (a plain ``get`` copies them twice, on the heap), and the
        memory goes back to the region's scope when it ends. The array follows
        the region's rules: keep it past the region as a local of the block or
        with ``alloc.export(obj.array)`` (anything else is reported as an
        escape, and stays valid). Arrays below the region's ``small_bytes``
        and of non-numeric dtypes (strings, datetimes) stay on the heap.

        Example::

            with noodle.region() as alloc:
                w = store.get("weights", allocator=alloc).array   # in region memory
        """
        if allocator is not None and not callable(getattr(allocator, "asarray", None)):
            raise StoreError(f"get({name!r}, allocator=...): expected a region from noodle.region() (or anything "
                             f"with an asarray(array) method), got {type(allocator).__name__}; pass allocator=None "
                             f"to load onto the heap.")
        rows = self._read(f"SELECT data, metadata, updated FROM {self.table} WHERE name = {self._ph}", (name,))
        if not rows:
            raise ObjectNotFoundError(f"no object named {name!r} in table {self.table} of {self.url}.")
        data, meta, updated = rows[0]
        data = bytes(data)
        view = _array_view(data) if allocator is not None else None
        if view is not None:
            arr = allocator.asarray(view)
        else:
            try:
                arr = codec.decode(data)
            except codec.DecodeError as exc:
                raise StoreError(f"object {name!r} is corrupt in the database ({exc}).") from None
        return MathObject(name, arr, json.loads(meta), float(updated))

    def list(self) -> list[str]:
        """Names of every stored object, sorted."""
        return [r[0] for r in self._read(f"SELECT name FROM {self.table} ORDER BY name", ())]

    def delete(self, name: str) -> bool:
        """Remove ``name``; True if it existed."""
        return self._write(f"DELETE FROM {self.table} WHERE name = {self._ph}", (name,)) > 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a write statement in its own transaction; returns the row count.

        Cached queries need no telling: the triggers on the tables it writes bump
        their versions in the same transaction, so cached results that read them
        stop being served the moment it commits.
        """
        return self._write(sql, params)

    # queries --------------------------------------------------------------------------
    def _read(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """An uncached read of our own table on the write connection (get, list)."""
        with self._lock:
            try:
                if self.backend == "sqlite":
                    return [tuple(r) for r in self._conn.execute(sql, tuple(params)).fetchall()]
                with self._conn.transaction():
                    return [tuple(r) for r in self._conn.execute(sql, tuple(params)).fetchall()]
            except self._db_errors as exc:
                raise StoreError(f"query failed ({self.backend}): {exc}") from None

    def query(self, sql: str, params: Sequence[Any] = (), cache_strategy: str = "lru_dist",
              tables: Iterable[str] | None = None, ttl: float | None = None) -> list[tuple[Any, ...]]:
        """Rows of one read-only ``sql``, served from the cache while the tables it reads are unchanged.

        Read-only is enforced by the database (writes, stacked statements and
        data-modifying CTEs raise StoreError with nothing written).
        ``cache_strategy``: 'lru_dist' (local LRU, then Redis when configured),
        'lru' (local only) or 'none'. ``tables`` names tables the database
        cannot see the query read (e.g. inside a PostgreSQL function) so their
        writes invalidate it too. ``ttl`` (seconds, 0 = none) only bounds memory
        use: correctness never depends on it.
        """
        if cache_strategy not in _STRATEGIES:
            raise StoreError(f"cache_strategy must be one of {', '.join(_STRATEGIES)}, got {cache_strategy!r}.")
        if not isinstance(sql, str) or not sql.strip():
            raise StoreError(f"query() needs one SQL statement as a non-empty string, got {sql!r}.")
        args = _check_params(params)
        _check_ttl(ttl, "query(ttl=...)", allow_none=True)
        extra = _check_tables(tables)
        if cache_strategy == "none" or not all(type(p) in _KEYABLE for p in args):
            return self._run_query(sql, args, extra)[0]  # 'none', or parameters we cannot key exactly
        shared = cache_strategy == "lru_dist" and self.cache.distributed
        key = self._key_prefix + xxhash.xxh3_128_hexdigest(f"{sql}\x00{args!r}\x00{extra!r}".encode())
        rows = self._cached(key, shared)
        if rows is not None:
            return rows
        rows, versions = self._run_query(sql, args, extra)
        if versions is not None:
            self._remember(key, (versions, tuple(rows)), ttl, shared)
        return rows

    def _cached(self, key: str, shared: bool) -> list[tuple[Any, ...]] | None:
        """The cached rows under ``key`` if the versions they were read at still hold, else None."""
        cache = self.cache
        entry = cache.get(key) if shared else cache.get_local(key)
        if type(entry) is not tuple or len(entry) != 2:
            return None
        versions, rows = entry
        with self._lock:
            current = self._tracker.current(versions)
        if not current:
            if shared:
                cache.delete(key)
            else:
                cache.delete_local(key)
            return None
        self.served_from_cache += 1
        return list(rows) if type(rows) is tuple else [tuple(r) for r in rows]

    def _run_query(self, sql: str, args: tuple[Any, ...], extra: tuple[str, ...]) \
            -> tuple[list[tuple[Any, ...]], Any]:
        with self._lock:
            return self._tracker.read(sql, args, extra)

    def _remember(self, key: str, entry: tuple[Any, Any], ttl: float | None, shared: bool) -> None:
        if shared:
            try:
                self.cache.set(key, entry, ttl=ttl)
                return
            except CacheEncodingError:  # values Redis cannot carry safely (Decimal, dates...): local only
                pass
        self.cache.set_local(key, entry, ttl=ttl)

    def close(self) -> None:
        """Close the database connections and the cache."""
        with self._lock:
            self._tracker.close()
            try:
                self._conn.close()
            except Exception:
                pass
        self.cache.close()

    def __enter__(self) -> MathStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SQLITE_BUSY_SECONDS = 30.0   # how long to wait for another connection's lock before failing


def _retry_busy(action: Callable[[], Any], seconds: float = _SQLITE_BUSY_SECONDS) -> Any:
    """Run ``action``, retrying while SQLite says the database is locked or busy. Why: switching
    to WAL needs a moment with no other writer, and SQLite may answer BUSY at once instead of
    waiting (its busy handler is not used for every lock), e.g. when a second process opens the
    store while the first creates its tables."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _default_path() -> Path:
    """The default SQLite file in NOODLE_CACHE_DIR, with a ConfigError naming the variable if unusable."""
    settings = get_settings()
    raw = settings.cache_dir
    source = settings.sources.get("cache_dir", "default")
    if not str(raw).strip():
        raise ConfigError("NOODLE_CACHE_DIR", raw, "a directory path (the default store lives there)", source)
    path = Path(raw).expanduser() / "store.sqlite"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(path.parent, os.W_OK):
            raise PermissionError(f"{path.parent} is not writable")
    except OSError as exc:
        raise ConfigError("NOODLE_CACHE_DIR", raw, f"a directory noodle can create and write ({exc})",
                          source) from None
    return path


def _check_params(params: Any) -> tuple[Any, ...]:
    if isinstance(params, (str, bytes)) or not isinstance(params, (list, tuple)):
        raise StoreError(f"params must be a list or tuple of values for the placeholders, got {params!r} "
                         f"({type(params).__name__}); e.g. params=(5,).")
    return tuple(params)


def _check_ttl(ttl: Any, where: str, allow_none: bool) -> None:
    if ttl is None and allow_none:
        return
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl >= 0:
        raise StoreError(f"{where}: ttl must be a number of seconds >= 0 (0 = no expiry)"
                         f"{' or None (the default)' if allow_none else ''}, got {ttl!r}. Nothing was run.")


def _check_tables(tables: Any) -> tuple[str, ...]:
    if tables is None:
        return ()
    if isinstance(tables, str):
        tables = (tables,)
    names = tuple(tables)
    if not all(isinstance(t, str) and t for t in names):
        raise StoreError(f"tables must be an iterable of table names (strings), got {tables!r}.")
    return tuple(sorted(set(names)))


_EXT_HEADERS = {0xd4: (1, 5), 0xd5: (2, 5), 0xd6: (4, 5), 0xd7: (8, 5), 0xd8: (16, 5)}   # msgpack fixext


def _array_view(data: bytes) -> np.ndarray | None:
    """A read-only view of the numeric array a stored blob holds, without copying it; None when the blob
    is anything else (a non-numeric dtype, not noodle's array framing, damaged), which ``codec.decode``
    then decodes or refuses with its own checks.

    Why not ``codec.decode``: it copies the body twice (msgpack's extension payload, then the array), and
    ``get(allocator=)`` exists to land the data in region memory with one copy. The framing is the
    codec's: ``ND\\x01``, one msgpack extension of type 1 = 4-byte little-endian header length, msgpack
    ``[dtype, shape]``, the C-order bytes.
    """
    if len(data) < 9 or data[:3] != codec.MAGIC:
        return None
    fmt = data[3]
    if fmt in _EXT_HEADERS:
        size, start = _EXT_HEADERS[fmt]
        code = data[4]
    elif fmt == 0xc7:
        size, code, start = data[4], data[5], 6
    elif fmt == 0xc8:
        size, code, start = int.from_bytes(data[4:6], "big"), data[6], 7
    elif fmt == 0xc9:
        size, code, start = int.from_bytes(data[4:8], "big"), data[8], 9
    else:
        return None
    if code != 1 or start + size != len(data) or size < 4:
        return None
    hlen = int.from_bytes(data[start:start + 4], "little")
    body = start + 4 + hlen
    if body > len(data):
        return None
    try:
        header = msgpack.unpackb(data[start + 4:body], raw=False)
        dtype = np.dtype(header[0])
        shape = tuple(operator.index(n) for n in header[1])
    except Exception:   # anything malformed: codec.decode gives the verdict
        return None
    if dtype.kind not in "biufc" or dtype.hasobject or dtype.fields is not None or any(n < 0 for n in shape):
        return None
    count = math.prod(shape)
    if count * dtype.itemsize != len(data) - body:
        return None
    return np.frombuffer(data, dtype=dtype, count=count, offset=body).reshape(shape)


def _as_array(name: str, array: Any) -> np.ndarray:
    try:
        return np.asarray(array)
    except (ValueError, TypeError) as exc:
        raise StoreError(f"cannot store {name!r}: it is not a regular array ({exc}). Ragged nested lists "
                         "have no shape: pad them, or store each piece under its own name.") from None


__all__ = ["MathObject", "MathStore", "tables_read", "tables_written"]
