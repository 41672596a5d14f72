"""SQLite side of MathStore's query cache: the database says what a query reads and what changed.

Why not parse SQL: ``main.t``, comma joins, views, ``[t]`` and `` `t` `` quoting
all escape a regex, and writes by another connection or process are invisible
to in-process bookkeeping. So:

- a query runs on its own connection with ``PRAGMA query_only=ON`` and an
  authorizer that allows only reads (SELECT, column reads, functions, recursive
  CTEs) and records every table SQLite reports reading (views report their base
  tables too); anything else is denied by SQLite before it runs;
- each table a cached query reads gets AFTER INSERT/UPDATE/DELETE triggers that
  bump its row in ``_noodle_table_versions``, in the writer's own transaction,
  whoever the writer is (this store, another store, another process, raw SQL);
- a cached result carries the versions it was read with (read in the same
  transaction as its rows, plus ``PRAGMA schema_version`` for DDL) and is served
  only while they still hold. ``PRAGMA data_version`` (changes only when another
  connection commits) plus a flag for this store's own writes gate the re-read
  of the version table, so a hit usually costs one PRAGMA.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Sequence
from typing import Any

import xxhash

from noodle.errors import StoreError

VERSIONS = "_noodle_table_versions"
IDENTITY = "_noodle_identity"
_SCHEMA = ""  # the pseudo-table whose version is PRAGMA schema_version
_OPS = ("INSERT", "UPDATE", "DELETE")
_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
_ACTION_NAMES = {v: k[len("SQLITE_"):] for k, v in vars(sqlite3).items()
                 if k.startswith("SQLITE_") and isinstance(v, int) and k not in ("SQLITE_OK", "SQLITE_DENY",
                                                                                     "SQLITE_IGNORE")}
Versions = tuple[tuple[str, int], ...]


def quote(name: str) -> str:
    """``name`` as an SQL identifier (double quotes, embedded quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def trigger_name(op: str, table: str) -> str:
    """Our trigger's name for ``op`` on ``table`` (a hash: any table name gives a plain identifier)."""
    return f"_noodle_v_{op.lower()}_{xxhash.xxh3_64_hexdigest(table.lower().encode())}"


class SQLiteTracker:
    """Read-only query execution and per-table versions for one SQLite database.

    All methods run under the owning MathStore's lock (the connections are shared).
    """

    def __init__(self, target: str, uri: bool, write_conn: sqlite3.Connection, memory: bool) -> None:
        self._w = write_conn
        self._capture: dict[str, str] | None = None
        self._denied: list[str] = []
        try:
            self._r = sqlite3.connect(target, uri=uri, check_same_thread=False, isolation_level=None,
                                      cached_statements=0)  # every execute re-prepares: the authorizer always runs
            self._r.execute("PRAGMA query_only=ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open a read connection to SQLite database {target!r}: {exc}") from None
        self._r.set_authorizer(self._authorize)
        db_id = self._setup()
        where = f"memory:{uuid.uuid4().hex}" if memory else os.path.realpath(target)
        self.identity = f"sqlite:{where}:{db_id}"
        self._data_version = -1
        self._own_write = True  # forces the first refresh
        self._snapshot: dict[str, int] = {}
        self._schema_seen = -1
        self._kinds: dict[str, str] = {}  # lower-case name -> 'table' / 'view' (from sqlite_master)
        self._tracked: set[str] = set()  # tables carrying all three of our triggers
        self._untrackable: set[str] = set()  # tables SQLite refused triggers on (virtual tables...)

    # setup ----------------------------------------------------------------------------
    def _setup(self) -> str:
        """Create the version and identity tables (once per database); return the database's id."""
        w = self._w
        try:
            w.execute("BEGIN IMMEDIATE")
            try:
                w.execute(f"CREATE TABLE IF NOT EXISTS {VERSIONS} (name TEXT PRIMARY KEY, version INTEGER NOT NULL)")
                w.execute(f"CREATE TABLE IF NOT EXISTS {IDENTITY} (id TEXT NOT NULL)")
                w.execute(f"INSERT INTO {IDENTITY} (id) SELECT ? WHERE NOT EXISTS (SELECT 1 FROM {IDENTITY})",
                          (uuid.uuid4().hex,))
                db_id = w.execute(f"SELECT id FROM {IDENTITY} LIMIT 1").fetchone()[0]
                w.execute("COMMIT")
            except BaseException:
                w.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot create noodle's version tables in the SQLite database: {exc}. "
                             "The store needs write access to its database file.") from None
        return str(db_id)

    def wrote(self) -> None:
        """This store's own connection committed a write: re-read versions before the next hit."""
        self._own_write = True

    # the authorizer -------------------------------------------------------------------
    def _authorize(self, action: int, arg1: str | None, arg2: str | None, db: str | None,
                   source: str | None) -> int:
        """While a user query is being prepared: allow reads only, and record the tables read."""
        capture = self._capture
        if capture is None:
            return sqlite3.SQLITE_OK  # our own statements on the read connection
        if action not in _ALLOWED:
            self._denied.append(f"{_ACTION_NAMES.get(action, action)} {arg1 or ''}".strip())
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_READ and arg1:
            capture[arg1.lower()] = db or "main"
        return sqlite3.SQLITE_OK

    # reads ----------------------------------------------------------------------------
    def read(self, sql: str, params: Sequence[Any], extra: Sequence[str]) -> tuple[list[tuple[Any, ...]],
                                                                                 Versions | None]:
        """Rows of ``sql`` (read-only, one statement) and the versions they were read at (None: uncacheable)."""
        for _ in range(3):
            rows, reads, versions = self._read_once(sql, params, extra)
            if versions is not None or not reads:
                return rows, versions
            self._install(sorted(reads))  # tables without triggers yet: add them, then read again
        return rows, None

    def _read_once(self, sql: str, params: Sequence[Any], extra: Sequence[str]) \
            -> tuple[list[tuple[Any, ...]], set[str], Versions | None]:
        """One read transaction: the rows, the tables still needing triggers, and the versions."""
        r = self._r
        r.execute("BEGIN")
        try:
            rows, capture = self._run(sql, params)
            for name in extra:
                capture.setdefault(name.lower(), "main")
            self._load_schema()
            need, cacheable = self._classify(capture)
            versions = self._versions(capture) if cacheable and not need else None
        finally:
            r.execute("COMMIT")
        return rows, need if cacheable else set(), versions

    def _run(self, sql: str, params: Sequence[Any]) -> tuple[list[tuple[Any, ...]], dict[str, str]]:
        capture: dict[str, str] = {}
        self._capture, self._denied = capture, []
        try:
            cur = self._r.execute(sql, tuple(params))
        except sqlite3.ProgrammingError as exc:
            if "one statement" in str(exc):
                raise StoreError("query() runs exactly one read-only statement; "
                                 f"{sql[:80]!r} holds several. Nothing was run.") from None
            raise StoreError(f"query failed (sqlite): {exc}") from None
        except sqlite3.DatabaseError as exc:
            if self._denied:
                raise StoreError(
                    f"query() is read-only: SQLite refused {', '.join(self._denied)} in {sql[:80]!r}. "
                    "Nothing was written; use execute() for writes.") from None
            raise StoreError(f"query failed (sqlite): {exc}") from None
        finally:
            self._capture = None
        try:
            rows = [tuple(row) for row in cur.fetchall()]
        except sqlite3.Error as exc:
            raise StoreError(f"query failed (sqlite): {exc}") from None
        return rows, capture

    def _load_schema(self) -> None:
        """Refresh what sqlite_master says (kinds, our triggers) when the schema changed."""
        r = self._r
        schema = r.execute("PRAGMA schema_version").fetchone()[0]
        if schema == self._schema_seen:
            return
        kinds: dict[str, str] = {}
        triggers: dict[str, set[str]] = {}
        for kind, name, table in r.execute("SELECT type, name, tbl_name FROM sqlite_master "
                                           "WHERE type IN ('table', 'view', 'trigger')"):
            if kind == "trigger":
                triggers.setdefault(table.lower(), set()).add(name)
            else:
                kinds[name.lower()] = kind
        self._kinds = kinds
        self._tracked = {t for t, names in triggers.items()
                         if all(trigger_name(op, t) in names for op in _OPS)}
        self._schema_seen = schema

    def _classify(self, reads: dict[str, str]) -> tuple[set[str], bool]:
        """Tables still needing triggers, and whether the result can be cached at all.

        Views add nothing (SQLite reports their base tables, and redefining one
        changes the schema version); sqlite_master is covered by the schema
        version; temp or attached tables, our own tables, other internal tables
        and tables that refused triggers make the result uncacheable.
        """
        need: set[str] = set()
        for name, db in reads.items():
            kind = self._kinds.get(name)
            if name in ("sqlite_master", "sqlite_schema") or kind == "view":
                continue
            if db != "main" or kind != "table" or name.startswith(("sqlite_", "_noodle_")) \
                    or name in self._untrackable:
                return set(), False
            if name not in self._tracked:
                need.add(name)
        return need, True

    def _versions(self, reads: dict[str, str]) -> Versions:
        names = sorted(n for n in reads if n in self._tracked)
        found: dict[str, int] = {}
        if names:
            marks = ",".join("?" * len(names))
            found = dict(self._r.execute(f"SELECT name, version FROM {VERSIONS} WHERE name IN ({marks})", names))
        return tuple((n, int(found.get(n, -1))) for n in names) + ((_SCHEMA, self._schema_seen),)

    # triggers ---------------------------------------------------------------------------
    def _install(self, tables: list[str]) -> None:
        """Give each table its version row and triggers (idempotent; safe across processes)."""
        for table in tables:
            w = self._w
            try:
                w.execute("BEGIN IMMEDIATE")
                try:
                    real = w.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND lower(name) = ?",
                                     (table,)).fetchone()
                    if real is not None:
                        self._install_one(real[0], table)
                    w.execute("COMMIT")
                except BaseException:
                    w.execute("ROLLBACK")
                    raise
            except sqlite3.Error:
                self._untrackable.add(table)  # e.g. a virtual table: its results are never cached
        self._own_write = True

    def _install_one(self, real: str, table: str) -> None:
        w = self._w
        w.execute(f"INSERT OR IGNORE INTO {VERSIONS} (name, version) VALUES (?, 0)", (table,))
        literal = "'" + table.replace("'", "''") + "'"
        for op in _OPS:
            w.execute(f"CREATE TRIGGER IF NOT EXISTS {trigger_name(op, table)} AFTER {op} ON {quote(real)} "
                      f"BEGIN UPDATE {VERSIONS} SET version = version + 1 WHERE name = {literal}; END")

    # hits -------------------------------------------------------------------------------
    def current(self, versions: Versions) -> bool:
        """True while every (table, version) a cached result saw still holds."""
        w = self._w
        data_version = w.execute("PRAGMA data_version").fetchone()[0]
        if data_version != self._data_version or self._own_write:
            self._own_write = False
            self._data_version = data_version
            self._refresh()
        snapshot = self._snapshot
        for name, version in versions:
            if snapshot.get(name) != version:
                return False
        return True

    def _refresh(self) -> None:
        w = self._w
        w.execute("BEGIN")
        try:
            snapshot = dict(w.execute(f"SELECT name, version FROM {VERSIONS}"))
            snapshot[_SCHEMA] = w.execute("PRAGMA schema_version").fetchone()[0]
        finally:
            w.execute("COMMIT")
        self._snapshot = snapshot

    def close(self) -> None:
        try:
            self._r.close()
        except sqlite3.Error:
            pass
