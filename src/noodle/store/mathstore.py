"""MathStore: named arrays with metadata in SQLite or PostgreSQL, and queries cached by table.

Why tag queries by table: a cached ``SELECT`` is only wrong once a table it
read has changed, so each cached result carries a tag per table it reads
(parsed from FROM/JOIN, or given as ``tables=``) and every write invalidates
the tags of the tables it wrote, *after* its transaction commits, never
before: invalidating first would let a concurrent reader re-cache the old rows
between the invalidation and the commit. A per-table generation number closes
the remaining window in-process: a result whose tables saw a committed write
between its read and its cache set is dropped again right after the set.

Arrays are stored in the cache's safe encoding (dtype/shape header + raw
bytes), never pickled. Placeholders follow the backend: ``?`` for SQLite,
``%s`` for PostgreSQL.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from noodle.cache import CacheManager, codec
from noodle.config import get_settings
from noodle.errors import CacheEncodingError, ObjectNotFoundError, StoreError

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
_ALL = "store:all"
_KEYABLE = (str, int, float, bytes, bool, type(None))


def tables_read(sql: str) -> set[str]:
    """Lower-case table names after FROM and JOIN (subqueries and CTE names included; harmless)."""
    return {m.group(1).lower().replace('"', "") for m in _READ_RE.finditer(sql)}


def tables_written(sql: str) -> set[str]:
    """Lower-case table names a statement writes (INSERT/UPDATE/DELETE/REPLACE/TRUNCATE/DDL)."""
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

    Example::

        store = MathStore("sqlite:///objects.db")
        store.put("w", np.ones((2, 2)), {"unit": "m"})
        rows = store.query("SELECT name FROM noodle_objects")
    """

    def __init__(self, url: str | None = None, table: str = "noodle_objects",
                 redis_url: str | None = _DEFAULT, namespace: str = "store",
                 cache_entries: int = 4096, ttl: float = 0) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", table):
            raise StoreError(f"table name {table!r} is not a plain SQL identifier (letters, digits, _).")
        self.table = table
        self._lock = threading.RLock()
        self._generations: dict[str, int] = {}
        self.url, self.backend = self._connect(url)
        settings = get_settings()
        if redis_url is _DEFAULT:
            redis_url = settings.redis_url if settings.distributed_cache else None
        self.local_cache = CacheManager(policy="lru", max_entries=cache_entries, ttl=ttl, redis_url=None,
                                        namespace=namespace + "-local", snapshot=False)
        self.dist_cache = (CacheManager(policy="lru", max_entries=cache_entries, ttl=ttl,
                                        redis_url=redis_url, namespace=namespace, snapshot=False)
                           if redis_url else None)
        self._create()

    # connection -------------------------------------------------------------------
    def _connect(self, url: str | None) -> tuple[str, str]:
        if url is None:
            path = Path(get_settings().cache_dir) / "store.sqlite"
            path.parent.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{path}"
        if url.startswith(("postgresql://", "postgres://")):
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
            return url, "postgresql"
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
        if "://" in path:
            raise StoreError(f"unsupported store URL {url!r}: use a path, sqlite:///path or postgresql://...")
        try:
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL" if path != ":memory:" else "PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {path!r}: {exc}") from None
        self._ph = "?"
        self._db_errors = (sqlite3.Error,)
        return url, "sqlite"

    def _create(self) -> None:
        blob = "BYTEA" if self.backend == "postgresql" else "BLOB"
        real = "DOUBLE PRECISION" if self.backend == "postgresql" else "REAL"
        self._write(
            f"CREATE TABLE IF NOT EXISTS {self.table} (name TEXT PRIMARY KEY, dtype TEXT NOT NULL, "
            f"shape TEXT NOT NULL, data {blob} NOT NULL, metadata TEXT NOT NULL, updated {real} NOT NULL)",
            (), tables=(),
        )

    def _write(self, sql: str, params: Sequence[Any], tables: Iterable[str] | None = None) -> int:
        """Run one write in a transaction; invalidate the cached reads of its tables after commit."""
        touched = set(tables) if tables is not None else tables_written(sql)
        with self._lock:
            try:
                if self.backend == "sqlite":
                    self._conn.execute("BEGIN IMMEDIATE")
                    try:
                        cur = self._conn.execute(sql, tuple(params))
                        count = cur.rowcount
                        self._conn.execute("COMMIT")
                    except BaseException:
                        self._conn.execute("ROLLBACK")
                        raise
                else:
                    with self._conn.transaction():
                        cur = self._conn.execute(sql, tuple(params))
                        count = cur.rowcount
            except self._db_errors as exc:
                raise StoreError(f"write failed ({self.backend}): {exc}; nothing was changed.") from None
            for t in touched:  # bump generations after commit, before telling caches
                self._generations[t] = self._generations.get(t, 0) + 1
            if tables is None and not touched:
                self._generations[_ALL] = self._generations.get(_ALL, 0) + 1
        self._invalidate(touched if (touched or tables is not None) else None)
        return count

    def _invalidate(self, tables: set[str] | None) -> None:
        tags = [f"table:{t}" for t in tables] if tables is not None else [_ALL]
        for cache in (self.local_cache, self.dist_cache):
            if cache is not None:
                for tag in tags:
                    cache.invalidate(tag=tag)

    # objects ------------------------------------------------------------------------
    def put(self, name: str, array: Any, metadata: dict[str, Any] | None = None) -> None:
        """Store ``array`` (any array-like; object dtypes refused) and JSON-able ``metadata`` under ``name``."""
        if not isinstance(name, str) or not name:
            raise StoreError(f"object names are non-empty strings, got {name!r}.")
        arr = np.asarray(array)
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
            (name, arr.dtype.str, json.dumps(list(arr.shape)), data, meta, time.time()), tables=[self.table],
        )

    def get(self, name: str) -> MathObject:
        """The object stored under ``name``; raises ObjectNotFoundError if there is none."""
        rows = self._read(f"SELECT data, metadata, updated FROM {self.table} WHERE name = {self._ph}", (name,))
        if not rows:
            raise ObjectNotFoundError(f"no object named {name!r} in table {self.table} of {self.url}.")
        data, meta, updated = rows[0]
        try:
            arr = codec.decode(bytes(data))
        except codec.DecodeError as exc:
            raise StoreError(f"object {name!r} is corrupt in the database ({exc}).") from None
        return MathObject(name, arr, json.loads(meta), float(updated))

    def list(self) -> list[str]:
        """Names of every stored object, sorted."""
        return [r[0] for r in self._read(f"SELECT name FROM {self.table} ORDER BY name", ())]

    def delete(self, name: str) -> bool:
        """Remove ``name``; True if it existed."""
        return self._write(f"DELETE FROM {self.table} WHERE name = {self._ph}", (name,),
                           tables=[self.table]) > 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a write statement in its own transaction; returns the row count.

        Cached queries reading the tables it writes are invalidated after the
        commit (every cached query if the tables cannot be told from the SQL).
        """
        return self._write(sql, params)

    # queries --------------------------------------------------------------------------
    def _read(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
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
        """Rows of a read-only ``sql``, served from the cache when the tables it reads are unchanged.

        ``cache_strategy``: 'lru_dist' (local LRU, then Redis when configured),
        'lru' (local only) or 'none'. ``tables`` adds table names to the ones
        parsed from FROM/JOIN.
        """
        if cache_strategy not in _STRATEGIES:
            raise StoreError(f"cache_strategy must be one of {', '.join(_STRATEGIES)}, got {cache_strategy!r}.")
        head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        if head not in ("SELECT", "WITH", "VALUES"):
            raise StoreError("query() runs read-only statements (SELECT/WITH/VALUES); use execute() to write.")
        if cache_strategy == "none":
            return self._read(sql, params)
        read = sorted(tables_read(sql) | {t.lower() for t in (tables or ())})
        cache = self.dist_cache if (cache_strategy == "lru_dist" and self.dist_cache is not None) \
            else self.local_cache
        if not all(type(p) in _KEYABLE for p in params):
            return self._read(sql, params)  # parameters we cannot key exactly: no caching
        key = "q:" + xxhash.xxh3_128_hexdigest(f"{sql}\x00{tuple(params)!r}".encode())
        rows = cache.get(key)
        if rows is not None:
            return list(rows) if type(rows) is tuple else [tuple(r) for r in rows]
        with self._lock:
            before = self._generations_of(read)
            rows = self._read(sql, params)
        tags = [f"table:{t}" for t in read] + [_ALL]
        try:
            cache.set(key, tuple(rows), ttl=ttl, tags=tags)
        except CacheEncodingError:
            if cache is not self.local_cache:
                cache = self.local_cache
                cache.set(key, rows, ttl=ttl, tags=tags)
        # A write that committed after our read may have invalidated its tags before our set
        # landed; its generation bump (made before that invalidation) shows here, so drop the
        # stale rows we just cached. (Reads and writes share self._lock, so no write commits
        # *during* the read: the window is between the read and the set.)
        if self._generations_of(read) != before:
            cache.delete(key)
        return list(rows)

    def _generations_of(self, tables: list[str]) -> list[int]:
        gens = self._generations
        return [gens.get(t, 0) for t in tables] + [gens.get(_ALL, 0)]

    def close(self) -> None:
        """Close the database connection and the caches."""
        with self._lock:
            try:
                self._conn.close()
            except Exception:
                pass
        self.local_cache.close()
        if self.dist_cache is not None:
            self.dist_cache.close()

    def __enter__(self) -> MathStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["MathObject", "MathStore", "tables_read", "tables_written"]
