"""PostgreSQL side of MathStore's query cache: the database says what a query reads and what changed.

- A query runs in a ``READ ONLY`` ``REPEATABLE READ`` transaction that is
  always rolled back, on its own connection, sent with the extended protocol
  (one statement per call: ``SELECT 1; DROP TABLE t`` is a syntax error).
  Before it runs, ``EXPLAIN (VERBOSE, FORMAT JSON)`` of the same statement
  names the relations it reads (views are already expanded to their base
  tables by the rewriter) and any ModifyTable node (a data-modifying CTE)
  refuses it. Partitions and inheritance children add their ancestors, since a
  write through a parent fires only the parent's statement triggers.
- Each relation a cached query reads gets one statement-level trigger (AFTER
  INSERT OR UPDATE OR DELETE OR TRUNCATE) that bumps its row in
  ``<schema>._noodle_table_versions`` in the writer's own transaction, whoever
  the writer is. The trigger function is SECURITY DEFINER, so roles that may
  write the table but not the version table still can.
- A cached result carries the versions read in the same snapshot as its rows.
  The bump also sends ``pg_notify`` (delivered when the writer commits) to a
  listening connection of every store on the schema, which keeps the versions
  it has heard of. A hit is checked against those without a round trip, so a
  repeated query stays far faster than the database (a bare round trip here
  costs ~90 us, more than the 20x budget of a point query allows).

Why a bound and not a round trip per hit: a notification reaches a listener a
little after the commit (typically well under a millisecond, the listening
backend is signalled at commit), so a hit may precede it. ``max_staleness``
bounds that window: when the listener has not confirmed it is caught up within
that many seconds, the hit first makes one round trip on it, after which every
notification committed before it has arrived. So no cached result is served
more than ``max_staleness`` seconds after a write that replaced it committed,
in any process. ``max_staleness=0`` checks the versions in the database on
every hit instead (one round trip, 0 stale). The round trip also fingerprints
the set of our triggers, so a dropped or re-created table (which fires no
trigger) forgets what was heard of it. This store's own writes are seen at
once. If the listener is lost, hits go back to a round trip each until it is
reconnected (at most once a second).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Sequence
from typing import Any

import xxhash

from noodle.errors import StoreError

Versions = tuple[tuple[int, int], ...]
_SYSTEM = ("pg_catalog", "information_schema", "pg_toast")


def quote(name: str) -> str:
    """``name`` as an SQL identifier (double quotes, embedded quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def plan_relations(plan: Any) -> tuple[set[tuple[str, str]], bool]:
    """(schema, relation) pairs an EXPLAIN JSON plan scans, and whether any node modifies data."""
    found: set[tuple[str, str]] = set()
    modifies = False
    stack = [plan]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if node.get("Node Type") == "ModifyTable":
                modifies = True
            if "Relation Name" in node:
                found.add((str(node.get("Schema", "")), str(node["Relation Name"])))
            stack.extend(v for v in node.values() if isinstance(v, (list, dict)))
    return found, modifies


class PostgresTracker:
    """Read-only query execution and per-relation versions for one PostgreSQL database and schema."""

    def __init__(self, url: str, write_conn: Any, max_staleness: float = 0.05) -> None:
        import psycopg

        self._psycopg = psycopg
        self._url = url
        self._w = write_conn
        self._max_staleness = float(max_staleness)
        try:
            self._r = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot open a read connection to PostgreSQL at {url}: {exc}") from None
        try:
            self.identity, self._vs = self._setup()
        except psycopg.Error as exc:
            self._r.close()
            raise StoreError(f"cannot create noodle's version tables in PostgreSQL: {exc}. The store "
                             "needs CREATE on the first schema of its search_path.") from None
        self._table = f"{quote(self._vs)}._noodle_table_versions"
        self._untrackable: set[int] = set()
        self._check_sql = (f"SELECT v.relid::bigint, v.version FROM {self._table} v JOIN pg_catalog.pg_trigger t "
                           f"ON t.tgrelid = v.relid AND t.tgname = %s WHERE v.relid = ANY(%s::oid[])")
        # What the listener has heard: relation oid -> newest committed version.
        self._known: dict[int, int] = {}
        self._listener: Any = None
        self._caught_up = -math.inf      # monotonic time a catch-up round trip was sent
        self._fingerprint: tuple[int, int] | None = None
        self._next_listen = 0.0
        if self._max_staleness > 0:
            self._listen()

    # setup ------------------------------------------------------------------------------
    def _setup(self) -> tuple[str, str]:
        """Version table, identity and trigger function in the store's schema; (identity, schema)."""
        w = self._w
        with w.transaction():
            vs = w.execute("SELECT current_schema()").fetchone()[0]
            if vs is None:
                raise StoreError("PostgreSQL has no schema on this connection's search_path to hold noodle's "
                                 "version table: set search_path (e.g. ?options=-csearch_path%3Dpublic).")
            w.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("noodle_versions:" + vs,))
            q = quote(vs)
            self._trigger = channel = "_noodle_v_" + xxhash.xxh3_64_hexdigest(vs.encode())
            w.execute(f"CREATE TABLE IF NOT EXISTS {q}._noodle_table_versions "
                      "(relid oid PRIMARY KEY, name text NOT NULL, version bigint NOT NULL)")
            w.execute(f"CREATE TABLE IF NOT EXISTS {q}._noodle_identity (id text NOT NULL)")
            w.execute(f"INSERT INTO {q}._noodle_identity (id) SELECT %s "
                      f"WHERE NOT EXISTS (SELECT 1 FROM {q}._noodle_identity)", (uuid.uuid4().hex,))
            db_id = w.execute(f"SELECT id FROM {q}._noodle_identity LIMIT 1").fetchone()[0]
            source = w.execute("SELECT p.prosrc FROM pg_catalog.pg_proc p WHERE p.oid = to_regprocedure(%s)",
                               (f"{q}._noodle_bump()",)).fetchone()
            if source is None or "pg_notify" not in source[0]:  # none yet, or one from before notifications
                w.execute(
                    f"CREATE OR REPLACE FUNCTION {q}._noodle_bump() RETURNS trigger LANGUAGE plpgsql "
                    f"SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$ DECLARE v bigint; BEGIN "
                    f"UPDATE {q}._noodle_table_versions SET version = version + 1 WHERE relid = TG_RELID "
                    f"RETURNING version INTO v; "
                    f"IF v IS NOT NULL THEN PERFORM pg_notify('{channel}', TG_RELID::text || ':' || v::text); "
                    f"END IF; RETURN NULL; END $f$")
        where = self._r.execute("SELECT current_database(), coalesce(host(inet_server_addr()), 'local'), "
                                "inet_server_port(), current_schemas(true)::text").fetchone()
        return f"pg:{db_id}:{where[0]}@{where[1]}:{where[2]}:{vs}:{where[3]}", vs

    # reads ------------------------------------------------------------------------------
    def read(self, sql: str, params: Sequence[Any], extra: Sequence[str]) -> tuple[list[tuple[Any, ...]],
                                                                                 Versions | None]:
        """Rows of ``sql`` (read-only, one statement) and the versions they were read at (None: uncacheable)."""
        psycopg = self._psycopg
        for _ in range(3):
            try:
                rows, need, versions = self._read_once(sql, params, extra)
            except psycopg.Error as exc:
                raise StoreError(self._explain_error(sql, exc)) from None
            if not need:
                return rows, versions
            self._install(need)
        return rows, None

    @staticmethod
    def _explain_error(sql: str, exc: Exception) -> str:
        text = str(exc).strip()
        if "multiple commands" in text:
            return (f"query() runs exactly one read-only statement; {sql[:80]!r} holds several. "
                    "Nothing was run.")
        if "read-only transaction" in text:
            return f"query() is read-only: PostgreSQL refused {sql[:80]!r} ({text}). Nothing was written."
        return f"query failed (postgresql): {text}"

    def _read_once(self, sql: str, params: Sequence[Any], extra: Sequence[str]) \
            -> tuple[list[tuple[Any, ...]], list[tuple[int, str]], Versions | None]:
        r = self._r
        args = tuple(params) if params else None
        r.execute("BEGIN TRANSACTION READ ONLY ISOLATION LEVEL REPEATABLE READ")
        try:
            plan = r.execute("EXPLAIN (VERBOSE, FORMAT JSON) " + sql, args, binary=True).fetchone()[0]
            if isinstance(plan, str):
                plan = json.loads(plan)
            relations, modifies = plan_relations(plan)
            if modifies:
                raise StoreError(f"query() is read-only: {sql[:80]!r} modifies data (a data-modifying "
                                 "statement or CTE). Nothing was run; use execute() for writes.")
            rels, cacheable = self._resolve(relations, extra)
            rows = [tuple(row) for row in r.execute(sql, args, prepare=True).fetchall()]
            need = [(oid, name) for oid, name, has in rels if not has]
            versions = self._versions([oid for oid, _, _ in rels]) if cacheable and not need else None
        finally:
            r.execute("ROLLBACK")  # also undoes any session setting a function changed
        return rows, (need if cacheable else []), versions

    def _resolve(self, relations: set[tuple[str, str]], extra: Sequence[str]) \
            -> tuple[list[tuple[int, str, bool]], bool]:
        """(oid, name, has our trigger) for each relation and its ancestors, and whether all are trackable."""
        schemas = [s for s, _ in relations]
        names = [n for _, n in relations]
        rows = self._r.execute(
            "WITH RECURSIVE rel(oid) AS ("
            " SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
            " UNION SELECT to_regclass(x)::oid FROM unnest(%s::text[]) x WHERE to_regclass(x) IS NOT NULL"
            " UNION SELECT i.inhparent FROM pg_catalog.pg_inherits i JOIN rel ON i.inhrelid = rel.oid)"
            " SELECT rel.oid::bigint, n.nspname, c.relname, c.relkind,"
            " EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = rel.oid AND t.tgname = %s)"
            " FROM rel JOIN pg_catalog.pg_class c ON c.oid = rel.oid"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
            (schemas, names, list(extra), self._trigger)).fetchall()
        missing = len({(s, n) for _, s, n, _, _ in rows} & relations) < len(relations)
        cacheable = not missing and all(
            kind in ("r", "p") and schema not in _SYSTEM and oid not in self._untrackable
            and not name.startswith("_noodle_") for oid, schema, name, kind, _ in rows)
        return [(oid, f"{quote(schema)}.{quote(name)}", has) for oid, schema, name, _, has in rows], cacheable

    def _versions(self, oids: list[int]) -> Versions:
        found = dict(self._r.execute(f"SELECT relid::bigint, version FROM {self._table} "
                                     "WHERE relid = ANY(%s::oid[])", (oids,)).fetchall())
        return tuple((oid, int(found.get(oid, -1))) for oid in sorted(oids))

    # triggers ---------------------------------------------------------------------------
    def _install(self, relations: list[tuple[int, str]]) -> None:
        """Give each relation its version row and trigger (idempotent; serialized across processes)."""
        psycopg = self._psycopg
        w = self._w
        with w.transaction():
            w.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("noodle_versions:" + self._vs,))
            for oid, name in relations:
                try:
                    with w.transaction():  # a savepoint: one refusal does not undo the others
                        self._install_one(oid, name)
                except psycopg.Error:
                    self._untrackable.add(oid)  # not ours to trigger: its results are never cached

    def _install_one(self, oid: int, name: str) -> None:
        w = self._w
        exists = w.execute("SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = %s::oid AND tgname = %s",
                           (oid, self._trigger)).fetchone()
        if exists is None:
            w.execute(f"CREATE TRIGGER {quote(self._trigger)} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                      f"ON {name} FOR EACH STATEMENT EXECUTE FUNCTION {quote(self._vs)}._noodle_bump()")
        version = w.execute(f"INSERT INTO {self._table} AS v (relid, name, version) VALUES (%s::oid, %s, 0) "
                            "ON CONFLICT (relid) DO UPDATE SET name = EXCLUDED.name, version = v.version + 1 "
                            "RETURNING version", (oid, name)).fetchone()[0]
        w.execute("SELECT pg_notify(%s, %s)", (self._trigger, f"{oid}:{version}"))

    # hits -------------------------------------------------------------------------------
    def current(self, versions: Versions) -> bool:
        """True while every (relation, version) a cached result saw still holds, to within max_staleness.

        With a listener: the notifications heard so far decide, after a catch-up
        round trip if the last one is older than max_staleness; a relation not
        heard of yet is checked in the database. Without one: one round trip.
        """
        if not versions:
            return True
        if self._listener is None:
            if self._max_staleness > 0 and time.monotonic() >= self._next_listen:
                self._listen()
            if self._listener is None:
                return self._check(versions)
        try:
            self._drain()
            if time.monotonic() - self._caught_up > self._max_staleness:
                self._catch_up()
        except self._psycopg.Error:
            self._lose_listener()
            return self._check(versions)
        known = self._known
        unheard = False
        for oid, version in versions:
            heard = known.get(oid)
            if heard is None:
                unheard = True
            elif version < heard:
                return False
            elif version > heard:  # read after a commit whose notification is still on its way
                known[oid] = version
        return self._check(versions) if unheard else True

    def _check(self, versions: Versions) -> bool:
        """The versions in the database itself (one round trip); also teaches the listener's table."""
        try:
            rows = self._r.execute(self._check_sql, (self._trigger, [oid for oid, _ in versions]),
                                   prepare=True).fetchall()
        except self._psycopg.Error:
            return False  # cannot check: serve from the database instead
        now = tuple(sorted((int(oid), int(v)) for oid, v in rows))
        if self._listener is not None:
            for oid, v in now:
                self._learn(oid, v)
        return now == versions

    # the listener -----------------------------------------------------------------------
    def _listen(self) -> None:
        """Open the listening connection; what was heard before is forgotten (it may have missed some)."""
        psycopg = self._psycopg
        self._known.clear()
        self._caught_up = -math.inf
        self._fingerprint = None
        try:
            listener = psycopg.connect(self._url, autocommit=True)
        except psycopg.Error:
            self._next_listen = time.monotonic() + 1.0
            return
        try:
            listener.add_notify_handler(self._heard)
            listener.execute(f"LISTEN {quote(self._trigger)}")
        except psycopg.Error:
            listener.close()
            self._next_listen = time.monotonic() + 1.0
            return
        self._listener = listener

    def _lose_listener(self) -> None:
        listener, self._listener = self._listener, None
        self._known.clear()
        self._next_listen = time.monotonic() + 1.0
        try:
            listener.close()
        except Exception:
            pass

    def _heard(self, notify: Any) -> None:
        oid, _, version = notify.payload.partition(":")
        if oid.isdigit() and version.isdigit():
            self._learn(int(oid), int(version))

    def _learn(self, oid: int, version: int) -> None:
        if version > self._known.get(oid, -1):
            self._known[oid] = version

    def _drain(self) -> None:
        """Take the notifications already on the socket (no round trip)."""
        pgconn = self._listener.pgconn
        pgconn.consume_input()
        while (notify := pgconn.notifies()) is not None:
            oid, _, version = notify.extra.partition(b":")
            if oid.isdigit() and version.isdigit():
                self._learn(int(oid), int(version))

    def _catch_up(self) -> None:
        """One round trip on the listener: every notification committed before it has then arrived.

        It also fingerprints our triggers: a table dropped or re-created fires no
        trigger, so when the set changes what was heard is forgotten.
        """
        sent = time.monotonic()
        row = self._listener.execute("SELECT count(*), coalesce(sum(oid::bigint), 0) FROM pg_catalog.pg_trigger "
                                     "WHERE tgname = %s", (self._trigger,), prepare=True).fetchone()
        self._drain()
        fingerprint = (int(row[0]), int(row[1]))
        if fingerprint != self._fingerprint:
            if self._fingerprint is not None:
                self._known.clear()
            self._fingerprint = fingerprint
        self._caught_up = sent

    def wrote(self) -> None:
        """This store committed a write: the next hit catches up first, so it is seen at once."""
        self._caught_up = -math.inf

    def close(self) -> None:
        for conn in (self._r, self._listener):
            try:
                if conn is not None:
                    conn.close()
            except Exception:
                pass
