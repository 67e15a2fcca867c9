"""Klaw's index of asset snapshots, kept in the DuckLake catalog database beside DuckLake's tables.

DuckLake records *that* a snapshot changed a table, as text in ``ducklake_snapshot_changes``;
asking it for one asset's history means scanning every change ever made. The index answers the
questions Klaw asks every day (an asset's snapshots, its latest one, every asset with its latest
snapshot) from two small tables with keys that fit them, so their cost stays the same after a
year of commits:

``klaw_asset_snapshot``
    one row per snapshot of an asset: who committed it, its row count and schema;
    keyed by ``(asset_key, snapshot_id)``.
``klaw_asset``
    one row per asset: its spelling, latest snapshot and number of snapshots.
``klaw_lake_index``
    one row: ``indexed_through``, the snapshot id up to which every DuckLake snapshot is indexed.

Everything goes through the store's own DuckDB instance, where the catalog database is attached
(a second SQLite library in one process would break SQLite's file locks). Reads are passed to
the database natively (``sqlite_query`` / ``postgres_query``), so keyed lookups use its indexes,
which DuckDB's scan of an attached table does not; writes are DuckDB statements on the attached
tables, one transaction each. A commit lands in DuckLake first and is indexed right after (one
DuckDB transaction may write to one attached database only); a process that dies in between
leaves a snapshot above ``indexed_through``, which the next commit or read of any process
indexes (:meth:`LakeIndex.pending`). Indexing a snapshot twice is harmless.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from klaw.storage.location import literal

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Entry:
    """One snapshot of one asset, as the index holds it."""

    snapshot: int
    key: str  # as spelt by the commit
    committed_at: float
    rows: int
    schema: dict[str, str]
    run_id: str | None = None
    stage: str | None = None
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class Listed:
    """One asset with its latest snapshot, as the index holds it."""

    latest: Entry
    snapshots: int


@dataclass(frozen=True, slots=True)
class Pending:
    """A DuckLake snapshot above the index's mark: what it changed, and who made it."""

    snapshot: int
    committed_at: float
    changes: str
    extra_info: str | None
    indexed: bool = False


class LakeIndex:
    """The snapshot index of one DuckLake catalog, attached as ``meta`` to the DuckDB instance
    that ``cursor`` opens cursors of; ``schema`` is the database schema with DuckLake's tables
    (``main`` in SQLite). Thread-safe: one statement at a time."""

    def __init__(
        self,
        cursor: Callable[[], duckdb.DuckDBPyConnection],
        meta: str,
        *,
        postgres: bool,
        schema: str = "main",
    ) -> None:
        self._cursor = cursor
        self._meta = meta
        self._schema = schema
        self._postgres = postgres
        self._native = "postgres_query" if postgres else "sqlite_query"
        self._greatest = "greatest" if postgres else "max"
        self._prefix = f"{_quote(schema)}." if postgres else ""
        self._lock = threading.Lock()
        self._create()

    # -- reading ------------------------------------------------------------------------------

    def through(self) -> int:
        """The snapshot id every DuckLake snapshot up to which is indexed (-1: none yet)."""
        row = self._one(f"SELECT indexed_through FROM {self._t('klaw_lake_index')} WHERE id = 1")
        return -1 if row is None else int(row[0])

    def behind(self) -> bool:
        """Whether DuckLake has a snapshot the index has not seen: one keyed lookup."""
        row = self._one(
            f"SELECT max(snapshot_id) FROM {self._t('ducklake_snapshot')}"
            f" WHERE snapshot_id > (SELECT indexed_through FROM {self._t('klaw_lake_index')}"
            " WHERE id = 1)"
        )
        return row is not None and row[0] is not None

    def pending(self) -> list[Pending]:
        """DuckLake's snapshots above the mark, oldest first (a range of its primary key), each
        saying whether it is indexed already (by another process, a moment ago)."""
        e = self._t("klaw_asset_snapshot")
        rows = self._all(
            "SELECT s.snapshot_id, CAST(s.snapshot_time AS VARCHAR), c.changes_made,"
            f" c.commit_extra_info, EXISTS (SELECT 1 FROM {e} AS e"
            " WHERE e.snapshot_id = s.snapshot_id)"
            f" FROM {self._t('ducklake_snapshot')} AS s"
            f" LEFT JOIN {self._t('ducklake_snapshot_changes')} AS c"
            " ON c.snapshot_id = s.snapshot_id WHERE s.snapshot_id >"
            f" (SELECT indexed_through FROM {self._t('klaw_lake_index')} WHERE id = 1)"
            " ORDER BY s.snapshot_id"
        )
        return [
            Pending(int(s), _epoch(at), str(ch or ""), extra, _true(done))
            for s, at, ch, extra, done in rows
        ]

    def landed(self, after: int, extra_info: str) -> int | None:
        """The snapshot above ``after`` whose extra info is ``extra_info``, if there is one."""
        row = self._one(
            f"SELECT max(snapshot_id) FROM {self._t('ducklake_snapshot_changes')}"
            f" WHERE snapshot_id > {int(after)} AND commit_extra_info = {_literal(extra_info)}"
        )
        return None if row is None or row[0] is None else int(row[0])

    def latest(self, key: str) -> Listed | None:
        e = self._t("klaw_asset_snapshot")
        row = self._one(
            f"SELECT {_ENTRY}, {self._count('e')} FROM {e} AS e"
            f" WHERE e.asset_key = {_literal(key.lower())} ORDER BY e.snapshot_id DESC LIMIT 1"
        )
        return None if row is None else Listed(_entry(row[:-1]), int(row[-1]))

    def latest_of(self, keys: Sequence[str]) -> dict[str, Listed]:
        """:meth:`latest` of several assets in one query, by lower-cased key (an asset the
        index does not have is left out)."""
        wanted = sorted({k.lower() for k in keys})
        if not wanted:
            return {}
        e = self._t("klaw_asset_snapshot")
        rows = self._all(
            f"SELECT {_ENTRY}, {self._count('e')} FROM {e} AS e"
            f" WHERE e.asset_key IN ({', '.join(_literal(k) for k in wanted)})"
            f" AND e.snapshot_id = (SELECT max(m.snapshot_id) FROM {e} AS m"
            " WHERE m.asset_key = e.asset_key)"
        )
        listed = [Listed(_entry(row[:-1]), int(row[-1])) for row in rows]
        return {x.latest.key.lower(): x for x in listed}

    def entry(self, key: str, snapshot: int) -> Entry | None:
        row = self._one(
            f"SELECT {_ENTRY} FROM {self._t('klaw_asset_snapshot')} AS e"
            f" WHERE e.asset_key = {_literal(key.lower())} AND e.snapshot_id = {int(snapshot)}"
        )
        return None if row is None else _entry(row)

    def history(self, key: str, limit: int | None = None) -> list[Entry]:
        """The asset's snapshots, oldest first; the newest ``limit`` of them when given."""
        sql = (
            f"SELECT {_ENTRY} FROM {self._t('klaw_asset_snapshot')} AS e"
            f" WHERE e.asset_key = {_literal(key.lower())} ORDER BY e.snapshot_id DESC"
        )
        if limit is not None:
            sql += f" LIMIT {max(0, int(limit))}"
        return [_entry(row) for row in reversed(self._all(sql))]

    def assets(self) -> list[Listed]:
        """Every asset with its latest snapshot: two keyed lookups per asset."""
        e = self._t("klaw_asset_snapshot")
        rows = self._all(
            f"SELECT {_ENTRY}, {self._count('e')} FROM {self._t('klaw_asset')} AS a"
            f" JOIN {e} AS e ON e.asset_key = a.asset_key AND e.snapshot_id ="
            f" (SELECT max(m.snapshot_id) FROM {e} AS m WHERE m.asset_key = a.asset_key)"
            " ORDER BY a.asset_name"
        )
        return [Listed(_entry(row[:-1]), int(row[-1])) for row in rows]

    def names(self) -> list[str]:
        return [str(r[0]) for r in self._all(f"SELECT asset_name FROM {self._t('klaw_asset')}")]

    def table_names(self, table_ids: Sequence[int]) -> dict[int, str]:
        """The names of DuckLake tables in schema ``main``, by table id (for foreign commits)."""
        if not table_ids:
            return {}
        rows = self._all(
            f"SELECT DISTINCT t.table_id, t.table_name FROM {self._t('ducklake_table')} AS t"
            f" JOIN {self._t('ducklake_schema')} AS s ON s.schema_id = t.schema_id"
            " WHERE s.schema_name = 'main'"
            f" AND t.table_id IN ({', '.join(str(int(i)) for i in table_ids)})"
        )
        return {int(tid): str(name) for tid, name in rows}

    def older_than(self, cutoff: float) -> list[int]:
        """DuckLake's snapshots made before ``cutoff`` (epoch seconds), except the newest."""
        snapshots = self._t("ducklake_snapshot")
        rows = self._all(
            f"SELECT snapshot_id, CAST(snapshot_time AS VARCHAR) FROM {snapshots}"
            f" WHERE snapshot_id < (SELECT max(snapshot_id) FROM {snapshots})"
        )
        return sorted(int(snap) for snap, at in rows if _epoch(at) < cutoff)

    def snapshot_ids(self) -> set[int]:
        """Every snapshot DuckLake still has (after expiry, fewer than were made)."""
        rows = self._all(f"SELECT snapshot_id FROM {self._t('ducklake_snapshot')}")
        return {int(r[0]) for r in rows}

    # -- writing ------------------------------------------------------------------------------

    def record(
        self, entries: Sequence[Entry], *, through: int, dropped: Sequence[str] = ()
    ) -> None:
        """Index ``entries`` (one indexed already is left as it is), forget the assets
        ``dropped`` outside Klaw, and move the mark up to ``through``: one transaction. Each
        entry is numbered one past the asset's highest number so far (its snapshot count)."""
        e, a = self._t("klaw_asset_snapshot"), self._t("klaw_asset")
        with self._writing() as run:
            for name in sorted({x.key.lower(): x.key for x in entries}.items()):
                run(
                    f"INSERT INTO {a} (asset_key, asset_name) SELECT {_literal(name[0])},"
                    f" {_literal(name[1])} WHERE true ON CONFLICT (asset_key) DO NOTHING"
                )
            for x in entries:
                values = ", ".join(
                    [
                        str(int(x.snapshot)),
                        _literal(x.key.lower()),
                        _literal(x.key),
                        repr(float(x.committed_at)),
                        _nullable(x.run_id),
                        _nullable(x.stage),
                        "NULL" if x.attempt is None else str(int(x.attempt)),
                        str(int(x.rows)),
                        _literal(json.dumps(x.schema, separators=(",", ":"))),
                    ]
                )
                run(
                    f"INSERT INTO {e} (snapshot_id, asset_key, asset_name, committed_at, run_id,"
                    " stage, attempt, row_count, arrow_schema, ordinal)"
                    f" SELECT {values}, coalesce((SELECT max(o.ordinal) FROM {e} AS o"
                    f" WHERE o.asset_key = {_literal(x.key.lower())}), 0) + 1"
                    " WHERE true ON CONFLICT (asset_key, snapshot_id) DO NOTHING"
                )
            for key in dropped:
                run(f"DELETE FROM {a} WHERE asset_key = {_literal(key.lower())}")
            run(
                f"UPDATE {self._t('klaw_lake_index')} SET indexed_through ="
                f" {self._greatest}(indexed_through, {int(through)}) WHERE id = 1"
            )

    def forget(self, snapshots: Sequence[int]) -> int:
        """Drop the rows of ``snapshots`` (about to be expired), except each asset's latest one
        (its current contents, still readable), and renumber. Returns how many rows went."""
        if not snapshots:
            return 0
        e = self._t("klaw_asset_snapshot")
        doomed = (
            f"FROM {e} WHERE snapshot_id IN ({', '.join(str(int(x)) for x in snapshots)})"
            f" AND snapshot_id < (SELECT max(m.snapshot_id) FROM {e} AS m"
            f" WHERE m.asset_key = {e}.asset_key)"
        )
        row = self._one(f"SELECT count(*) {doomed}")
        gone = 0 if row is None else int(row[0])
        if gone:
            with self._writing() as run:
                run(f"DELETE {doomed}")
                run(
                    f"UPDATE {e} SET ordinal = r.n FROM (SELECT asset_key AS k,"
                    " snapshot_id AS s, row_number() OVER (PARTITION BY asset_key"
                    f" ORDER BY snapshot_id) AS n FROM {e}) AS r"
                    f" WHERE r.k = {e}.asset_key AND r.s = {e}.snapshot_id"
                )
        return gone

    # -- details ------------------------------------------------------------------------------

    def _count(self, alias: str) -> str:
        """The number of snapshots of the asset of row ``alias``: its highest ordinal."""
        return (
            f"(SELECT max(c.ordinal) FROM {self._t('klaw_asset_snapshot')} AS c"
            f" WHERE c.asset_key = {alias}.asset_key)"
        )

    def _create(self) -> None:
        # SQLite: DuckDB statements on the attached database; Postgres: its own DDL, natively.
        q = self._t if self._postgres else self._w
        e, a, mark = (q(t) for t in ("klaw_asset_snapshot", "klaw_asset", "klaw_lake_index"))
        statements = [
            f"CREATE TABLE IF NOT EXISTS {e} (snapshot_id BIGINT NOT NULL,"
            " asset_key VARCHAR NOT NULL, asset_name VARCHAR NOT NULL,"
            " committed_at DOUBLE PRECISION NOT NULL, run_id VARCHAR, stage VARCHAR,"
            " attempt INTEGER, row_count BIGINT NOT NULL, arrow_schema VARCHAR NOT NULL,"
            " ordinal BIGINT NOT NULL, PRIMARY KEY (asset_key, snapshot_id))",
            f"CREATE INDEX IF NOT EXISTS klaw_asset_snapshot_ordinal ON {e} (asset_key, ordinal)",
            f"CREATE INDEX IF NOT EXISTS klaw_asset_snapshot_id ON {e} (snapshot_id)",
            f"CREATE TABLE IF NOT EXISTS {a} (asset_key VARCHAR PRIMARY KEY,"
            " asset_name VARCHAR NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {mark} (id INTEGER PRIMARY KEY,"
            " indexed_through BIGINT NOT NULL, version INTEGER NOT NULL)",
        ]
        cur = self._cursor()
        try:
            for statement in statements:
                if self._postgres:
                    cur.execute(
                        f"CALL postgres_execute({literal(self._meta)}, {literal(statement)})"
                    )
                else:
                    cur.execute(statement)
        finally:
            cur.close()
        mark = self._t("klaw_lake_index")
        with self._writing() as run:
            run(
                f"INSERT INTO {mark} (id, indexed_through, version)"
                f" SELECT 1, -1, {SCHEMA_VERSION} WHERE true ON CONFLICT (id) DO NOTHING"
            )

    def _t(self, table: str) -> str:
        """A table as the catalog database itself names it (in a native query)."""
        return f"{self._prefix}{table}"

    def _w(self, table: str) -> str:
        """A table as DuckDB names it in the attached catalog database."""
        return f"{_quote(self._meta)}.{_quote(self._schema)}.{table}"

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Callable[[str], None]]:
        """Statements passed to the catalog database natively, in one transaction (DuckDB
        runs them in its transaction on the attached database)."""

        def run(sql: str) -> None:
            # literals, not parameters: DuckDB's parameter binding tries `import pandas` each
            # time where it is not installed (0.1 ms apiece, ~10 statements a commit)
            meta = literal(self._meta)
            if self._postgres:
                cur.execute(f"CALL postgres_execute({meta}, {literal(sql)})")
            else:  # sqlite_query runs a statement only if it returns rows
                cur.execute(f"SELECT * FROM sqlite_query({meta}, {literal(sql + ' RETURNING 1')})")

        with self._lock:
            cur = self._cursor()
            try:
                cur.execute("BEGIN TRANSACTION")
                yield run
                cur.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    cur.execute("ROLLBACK")
                raise
            finally:
                cur.close()

    def _all(self, sql: str) -> list[tuple[Any, ...]]:
        with self._lock:
            cur = self._cursor()
            try:
                query = f"SELECT * FROM {self._native}({literal(self._meta)}, {literal(sql)})"
                return cur.execute(query).fetchall()
            finally:
                cur.close()

    def _one(self, sql: str) -> tuple[Any, ...] | None:
        rows = self._all(sql)
        return rows[0] if rows else None


_ENTRY = (
    "e.snapshot_id, e.asset_name, e.committed_at, e.row_count, e.arrow_schema,"
    " e.run_id, e.stage, e.attempt"
)


def _entry(row: Sequence[Any]) -> Entry:
    snapshot, name, at, rows, schema, run_id, stage, attempt = row
    return Entry(
        snapshot=int(snapshot),
        key=str(name),
        committed_at=float(at),
        rows=int(rows),
        schema=json.loads(schema),
        run_id=None if run_id is None else str(run_id),
        stage=None if stage is None else str(stage),
        attempt=None if attempt is None else int(attempt),
    )


def _epoch(at: object) -> float:
    """A DuckLake snapshot time (text in SQLite, ``timestamptz`` in Postgres) in epoch seconds."""
    if isinstance(at, dt.datetime):
        stamp = at
    else:
        text = str(at)
        if len(text) >= 3 and text[-3] in "+-" and text[-2:].isdigit():
            text += ":00"  # '+00' -> '+00:00'
        stamp = dt.datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _true(value: object) -> bool:
    """A boolean as a native query returns it (SQLite: the text '0' or '1')."""
    return value not in (None, False, 0, "0", "false", "f")


def _nullable(text: str | None) -> str:
    return "NULL" if text is None else _literal(text)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
