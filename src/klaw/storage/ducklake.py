"""The DuckLake asset store: every asset is a DuckLake table, every commit one snapshot.

Data lives as Parquet files under ``data_path``; the catalog (tables, snapshots, which files
make up which version) lives in SQLite by default, or in Postgres
(``catalog="postgresql://klaw@db:5432/klaw"``; see ``klaw.storage.location``). DuckDB
extensions are loaded from the ``duckdb-extension-*`` Python packages and never downloaded.

A commit is one catalog transaction: its Parquet files are written first, and only the
transaction's commit makes them a snapshot. A process that dies in between leaves files no
snapshot references (orphans), which readers never see and ``delete_orphaned_files`` removes.

Asset keys are SQL identifiers and, as in SQL, case-insensitive: ``Orders`` and ``orders`` are
the same asset, so committing one while the other exists is refused.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from klaw.errors import AssetNotFoundError, StorageError
from klaw.failpoints import failpoint
from klaw.storage.location import (
    catalog_target,
    data_location,
    extension_file,
    is_postgres,
    literal,
    package,
    redact,
)
from klaw.storage.objects import ObjectStore, on_object_store
from klaw.storage.store import AssetInfo, SnapshotInfo

_LAKE = "klaw_lake"  # the DuckLake catalog's name inside the store's own DuckDB instance
_META = "klaw_lake_meta"  # the metadata database (DuckLake's spec tables) it is attached as
_SOURCE = "__klaw_commit_source"  # the name the table being committed is registered under
_AUTHOR = "klaw"
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_KEY_LENGTH = 63
_LISTED_SNAPSHOTS = 20  # how many snapshot ids an error message lists
_ORPHAN_AGE = dt.timedelta(days=1)
# The catalog database's words for "another writer got there first", in an untyped error:
# SQLite's lock, or Postgres's own catalog meeting a concurrent CREATE TABLE of the same name.
_CONTENDED = re.compile(
    r"database is locked|conflict|duplicate key value violates unique constraint", re.IGNORECASE
)
_POSTGRES_FAILURE = re.compile(r'Unable to connect to Postgres at "[^"]*":\s*(.*)', re.DOTALL)

# Every snapshot where a table of the given name was created, or its rows or columns changed.
# Read from DuckLake's own spec tables, which the SQLite and Postgres catalogs share; {meta} is
# the catalog database's schema that holds them. Those tables may already show a snapshot that
# another process committed after this transaction's DuckLake snapshot was taken; only what
# this transaction can read at is listed.
_HISTORY_SQL = """
WITH tables AS (
    SELECT t.table_id, lower(t.table_name) AS key, t.begin_snapshot
    FROM {meta}.ducklake_table AS t
    JOIN {meta}.ducklake_schema AS s ON s.schema_id = t.schema_id
    WHERE s.schema_name = 'main' AND ($key IS NULL OR lower(t.table_name) = lower($key))
), changed AS (
    SELECT snapshot_id, TRY_CAST(split_part(change, ':', 2) AS BIGINT) AS table_id
    FROM (
        SELECT snapshot_id, unnest(string_split(changes_made, ',')) AS change
        FROM {meta}.ducklake_snapshot_changes
    )
    WHERE split_part(change, ':', 1)
        IN ('inserted_into_table', 'deleted_from_table', 'altered_table')
    UNION
    SELECT begin_snapshot, table_id FROM tables
)
SELECT DISTINCT tables.key, s.snapshot_id, epoch(s.snapshot_time::TIMESTAMPTZ),
    c.commit_extra_info
FROM changed
JOIN tables USING (table_id)
JOIN {meta}.ducklake_snapshot AS s ON s.snapshot_id = changed.snapshot_id
LEFT JOIN {meta}.ducklake_snapshot_changes AS c ON c.snapshot_id = changed.snapshot_id
WHERE s.snapshot_id <= (SELECT id FROM ducklake_current_snapshot({lake}))
ORDER BY 1, 2
"""


@dataclass(frozen=True, slots=True)
class _Commit:
    """One entry of an asset's history, as the catalog records it."""

    snapshot: int
    committed_at: float
    run_id: str | None
    stage: str | None
    attempt: int | None


class DuckLakeAssetStore:
    """Assets as DuckLake tables: one snapshot per commit, time travel by snapshot id.

    ``catalog`` is a SQLite file (``.klaw/lake.sqlite``; ``sqlite:`` prefix optional) or a
    Postgres database (``postgresql://...`` or ``postgres:dbname=...``); ``data_path`` is the
    folder (or, with the matching extension package installed, the object-store URL) the
    Parquet files go under. Nothing is opened until first use. Commits are serialised by one
    lock; reads run concurrently on their own cursors. Another process may commit to the same
    catalog at the same time: a commit that meets a locked catalog or a conflicting transaction
    is retried for ``retry_timeout`` seconds.
    """

    def __init__(
        self,
        catalog: str | Path,
        data_path: str | Path,
        *,
        retry_timeout: float = 60.0,
        object_store: ObjectStore | None = None,
    ) -> None:
        self.catalog = catalog
        self.data_path = data_path
        self.object_store = object_store  # how to reach an s3:// data path (default: AWS chain)
        self.retry_timeout = retry_timeout
        self.location = redact(str(catalog))  # the catalog as messages show it: no password
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._meta = f"{_META}.main"  # where DuckLake's own tables are; set when opened
        self._closed = False
        # Snapshots never change, so what was learnt about one is kept.
        self._members: set[tuple[str, int]] = set()
        self._stats: dict[tuple[str, int], tuple[int, dict[str, str]]] = {}

    def __repr__(self) -> str:
        return f"DuckLakeAssetStore(catalog={self.location!r}, data_path={str(self.data_path)!r})"

    def __enter__(self) -> DuckLakeAssetStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the AssetStore protocol ---------------------------------------------------------------

    def commit(self, key: str, table: pa.Table, *, run_id: str, stage: str, attempt: int) -> int:
        _check_key(key)
        if not isinstance(table, pa.Table):
            raise StorageError(
                f"asset {key!r}: expected a pyarrow.Table to commit, got {type(table).__name__}",
                hint="convert the stage's output to Arrow first (Polars: df.to_arrow())",
            )
        if table.num_columns == 0:
            raise StorageError(
                f"asset {key!r}: a table with no columns cannot be stored",
                hint="return a table with at least one column",
            )
        tags = {"key": key, "run_id": run_id, "stage": stage, "attempt": attempt}
        extra = json.dumps({**tags, "commit": uuid.uuid4().hex}, separators=(",", ":"))
        message = f"{key} from stage {stage}, attempt {attempt} of run {run_id}"
        deadline = time.monotonic() + self.retry_timeout
        delay = 0.01
        with self._lock:
            con = self._connection_locked()
            while True:
                try:
                    snapshot = self._commit_once(con, key, table, message, extra)
                    break
                except duckdb.Error as exc:
                    landed = None
                    with contextlib.suppress(duckdb.Error):
                        landed = _landed_snapshot(con, self._meta, extra)
                    if landed is not None:  # the commit failed after it was durable
                        snapshot = landed
                        break
                    if not _is_retryable(exc) or time.monotonic() + delay > deadline:
                        raise _storage_error(exc, f"could not commit asset {key!r}") from None
                    time.sleep(delay * random.uniform(0.5, 1.5))
                    delay = min(delay * 2, 0.5)
        self._members.add((key.lower(), snapshot))
        return snapshot

    def read(self, key: str, snapshot: int | None = None, limit: int | None = None) -> pa.Table:
        _check_key(key)
        head = "" if limit is None else f" LIMIT {int(limit)}"
        if snapshot is None:
            cur = self._cursor()
            try:
                return cur.execute(f"SELECT * FROM {_table(key)}{head}").to_arrow_table()
            except duckdb.CatalogException:
                raise self._not_found(key) from None
            except duckdb.Error as exc:
                raise _storage_error(exc, f"could not read asset {key!r}") from None
            finally:
                cur.close()
        if isinstance(snapshot, bool) or not isinstance(snapshot, int):
            raise StorageError(
                f"asset {key!r}: snapshot must be an integer id, got {snapshot!r}",
                hint="pass a snapshot id from the asset's snapshot list",
            )
        with self._reading(key) as cur:
            if (key.lower(), snapshot) not in self._members:
                self._check_snapshot(cur, key, snapshot)
            return cur.execute(f"SELECT * FROM {_table(key, snapshot)}{head}").to_arrow_table()

    def stream(
        self, key: str, snapshot: int | None = None, *, batch_rows: int = 131_072
    ) -> pa.RecordBatchReader:
        """Like :meth:`read`, as record batches of up to ``batch_rows`` rows that DuckDB reads as
        they are consumed: memory stays at a few batches however large the snapshot. Errors
        (unknown asset or snapshot) are raised here, before the first batch. The reader keeps a
        cursor of its own until it is exhausted or dropped."""
        _check_key(key)
        if snapshot is not None and (isinstance(snapshot, bool) or not isinstance(snapshot, int)):
            raise StorageError(
                f"asset {key!r}: snapshot must be an integer id, got {snapshot!r}",
                hint="pass a snapshot id from the asset's snapshot list",
            )
        cur = self._cursor()
        try:
            if snapshot is not None and (key.lower(), snapshot) not in self._members:
                self._check_snapshot(cur, key, snapshot)
            query = cur.execute(f"SELECT * FROM {_table(key, snapshot)}")
            source = query.to_arrow_reader(max(1, int(batch_rows)))
        except duckdb.CatalogException:
            cur.close()
            raise self._not_found(key) from None
        except duckdb.Error as exc:
            cur.close()
            raise _storage_error(exc, f"could not read asset {key!r}") from None
        except BaseException:
            cur.close()
            raise

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                yield from source
            finally:
                cur.close()

        return pa.RecordBatchReader.from_batches(source.schema, batches())

    def snapshots(self, key: str) -> list[SnapshotInfo]:
        _check_key(key)
        with self._reading(key) as cur:
            history = _history(cur, self._meta, key).get(key.lower())
            if not history:
                raise self._not_found(key)
            infos = []
            for commit in history:
                rows, schema = self._snapshot_stats(cur, key, commit.snapshot)
                infos.append(SnapshotInfo(key=key, rows=rows, schema=schema, **asdict(commit)))
            return infos

    def assets(self) -> list[AssetInfo]:
        with self._reading(None) as cur:
            names = _table_names(cur)
            histories = _history(cur, self._meta, None)
            infos = []
            for name in sorted(names):
                history = histories.get(name.lower())
                if not history:  # created outside Klaw in a way the catalog does not record
                    continue
                latest = history[-1]
                rows, schema = self._snapshot_stats(cur, name, latest.snapshot)
                infos.append(
                    AssetInfo(
                        key=name,
                        latest_snapshot=latest.snapshot,
                        snapshots=len(history),
                        rows=rows,
                        updated_at=latest.committed_at,
                        schema=schema,
                    )
                )
            return infos

    # -- maintenance --------------------------------------------------------------------------

    def delete_orphaned_files(self, *, older_than: dt.timedelta = _ORPHAN_AGE) -> list[str]:
        """Delete the Parquet files under the data path that no snapshot refers to and that
        were last written more than ``older_than`` ago; return their paths, sorted.

        Such files are left by a commit whose process died after writing its Parquet files
        and before the catalog transaction committed; readers never see them. The age keeps
        the files of a commit another process is making right now: never pass less than the
        longest a commit can take while other processes may be writing to this lake. Any other
        Parquet file kept under the data path counts as orphaned too (other files are left).
        """
        cutoff = (dt.datetime.now(dt.UTC) - older_than).timestamp()
        with self._lock:  # no commit of this store is between writing files and committing
            con = self._connection_locked()
            try:
                rows = con.execute(
                    "CALL ducklake_delete_orphaned_files(?, older_than => to_timestamp(?))",
                    [_LAKE, cutoff],
                ).fetchall()
            except duckdb.Error as exc:
                raise _storage_error(exc, "could not delete the lake's orphaned files") from None
        return sorted(str(row[0]) for row in rows)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            con, self._con = self._con, None
        if con is not None:
            con.close()

    # -- opening ------------------------------------------------------------------------------

    def _connection(self) -> duckdb.DuckDBPyConnection:
        con = self._con
        if con is not None:
            return con
        with self._lock:
            return self._connection_locked()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own for one reader; DuckDB runs them side by side."""
        try:
            return self._connection().cursor()
        except duckdb.Error:  # closed by another thread between the two calls
            raise self._closed_error() from None

    def _closed_error(self) -> StorageError:
        return StorageError(
            f"the asset store on {self.location!r} is closed",
            hint="open a new DuckLakeAssetStore",
        )

    def _connection_locked(self) -> duckdb.DuckDBPyConnection:
        if self._closed:
            raise self._closed_error()
        if self._con is None:
            self._con = self._open()
        return self._con

    def _open(self) -> duckdb.DuckDBPyConnection:
        target = catalog_target(self.catalog)
        data_path, data_extension = data_location(self.data_path)
        remote = (self.object_store or ObjectStore()) if on_object_store(data_path) else None
        first = remote.extensions if remote else (data_extension,)
        names = [n for n in (*first, target.extension, "ducklake") if n is not None]
        files = [extension_file(name) for name in names]  # before anything is opened
        options = [f"DATA_PATH {literal(data_path)}", "DATA_INLINING_ROW_LIMIT 0"]
        options += [*target.options, f"METADATA_CATALOG {literal(_META)}"]
        con = duckdb.connect(
            config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        )
        deadline = time.monotonic() + self.retry_timeout
        try:
            for file in files:
                con.execute(f"LOAD {literal(str(file))}")
            if remote is not None:
                remote.authorize(con)  # the credentials, as a secret of this connection only
            con.execute("SET GLOBAL TimeZone = 'UTC'")  # timestamps come back in UTC everywhere
            con.execute("SET enable_progress_bar = false")  # a slow query prints nothing
            while True:  # a new catalog may be being created by another process right now
                try:
                    con.execute(
                        f"ATTACH {literal(target.attach)} AS {_LAKE} ({', '.join(options)})"
                    )
                    break
                except duckdb.Error as exc:
                    if not _is_retryable(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(random.uniform(0.01, 0.1))
        except duckdb.Error as exc:
            con.close()
            raise self._open_error(exc) from None
        except BaseException:
            con.close()
            raise
        self._meta = f"{_META}.{_quote(target.schema)}"
        return con

    def _open_error(self, exc: duckdb.Error) -> StorageError:
        what = f"could not open the DuckLake catalog {self.location!r}"
        # ATTACH raises these as a bare duckdb.Error: only the message tells them apart
        if "does not match existing data path" in str(exc):
            return StorageError(
                f"{what}: {redact(str(exc).splitlines()[0])}",
                hint="a catalog keeps the data path it was created with: set KLAW_LAKE_DATA"
                " (or lake_data in klaw.toml) to that path in every process using the lake",
            )
        failure = _POSTGRES_FAILURE.search(str(exc)) if is_postgres(self.catalog) else None
        if failure is None:
            return _storage_error(exc, what)
        reason = " ".join(redact(failure.group(1)).split())
        return StorageError(
            f"{what}: cannot connect to Postgres: {reason}",
            hint=(
                "check that Postgres runs at that address and that the database exists (create"
                " it with CREATE DATABASE) and lets this user connect, then fix KLAW_LAKE_CATALOG"
                " (or lake_catalog in klaw.toml)"
            ),
        )

    # -- committing ---------------------------------------------------------------------------

    def _commit_once(
        self, con: duckdb.DuckDBPyConnection, key: str, table: pa.Table, message: str, extra: str
    ) -> int:
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(
                "CALL ducklake_set_commit_message(?, ?, ?, extra_info => ?)",
                [_LAKE, _AUTHOR, message, extra],
            )
            con.register(_SOURCE, table)
            clash = [n for n in _table_names(con) if n.lower() == key.lower() and n != key]
            if clash:
                raise StorageError(
                    f"asset {key!r} clashes with the existing asset {clash[0]!r}:"
                    " asset keys are case-insensitive",
                    hint=f"rename the asset, or spell it {clash[0]!r} as before",
                )
            # A replacement, not DELETE + INSERT: a DELETE scans the old version (0.2 s per
            # million rows) where a drop only ends its files, which time travel keeps reading;
            # and it is always one snapshot, where an empty DELETE + INSERT would make none.
            con.execute(f"CREATE OR REPLACE TABLE {_table(key)} AS SELECT * FROM {_SOURCE}")
            # The Parquet files are written now; until COMMIT no snapshot refers to them.
            failpoint("before_lake_commit")
            con.execute("COMMIT")
        except BaseException:
            _rollback(con)
            raise
        finally:
            con.unregister(_SOURCE)
        snapshot = _landed_snapshot(
            con, self._meta, extra
        )  # the catalog, not the session, says which
        if snapshot is None:
            raise StorageError(
                f"asset {key!r}: DuckLake committed, but recorded no snapshot for the commit",
                hint="check the asset's snapshots and report this as a bug in Klaw",
            )
        return snapshot

    # -- reading ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self, key: str | None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor inside one read transaction, so several queries see one catalog version."""
        cur = self._cursor()
        try:
            cur.execute("BEGIN TRANSACTION")
            yield cur
        except duckdb.Error as exc:
            what = "the asset store" if key is None else f"asset {key!r}"
            raise _storage_error(exc, f"could not read {what}") from None
        finally:
            _rollback(cur)
            cur.close()

    def _check_snapshot(self, cur: duckdb.DuckDBPyConnection, key: str, snapshot: int) -> None:
        history = _history(cur, self._meta, key).get(key.lower())
        if not history:
            raise self._not_found(key)
        ids = [commit.snapshot for commit in history]
        for known in ids:
            self._members.add((key.lower(), known))
        if snapshot not in ids:
            shown = ", ".join(str(i) for i in ids[-_LISTED_SNAPSHOTS:])
            many = len(ids) > _LISTED_SNAPSHOTS
            listed = f"the last {_LISTED_SNAPSHOTS} of {len(ids)} are" if many else "it has"
            raise AssetNotFoundError(
                f"asset {key!r} has no snapshot {snapshot}; {listed} {shown}",
                hint="read the latest snapshot, or one of the ids listed",
            )

    def _snapshot_stats(
        self, cur: duckdb.DuckDBPyConnection, key: str, snapshot: int
    ) -> tuple[int, dict[str, str]]:
        cached = self._stats.get((key.lower(), snapshot))
        if cached is None:
            at = _table(key, snapshot)
            row = cur.execute(f"SELECT count(*) FROM {at}").fetchone()
            schema = cur.execute(f"SELECT * FROM {at} LIMIT 0").to_arrow_table().schema
            cached = (int(row[0]) if row else 0, {f.name: str(f.type) for f in schema})
            self._stats[(key.lower(), snapshot)] = cached
        return cached

    def _not_found(self, key: str) -> AssetNotFoundError:
        cur = self._cursor()
        try:
            names = _table_names(cur)
        except duckdb.Error:
            names = []
        finally:
            cur.close()
        close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
        close += [n for n in names if n.lower() == key.lower() and n not in close]
        suggestion = f"; did you mean {', '.join(repr(n) for n in close)}?" if close else ""
        return AssetNotFoundError(
            f"asset {key!r} does not exist in the lake at {self.location!r}{suggestion}",
            hint="run `klaw assets list` to see every asset",
        )


# -- SQL and catalog details --------------------------------------------------------------------


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not _KEY.fullmatch(key) or len(key) > _MAX_KEY_LENGTH:
        raise StorageError(
            f"{key!r} is not a valid asset key",
            hint=(
                "asset keys are SQL identifiers: a letter or '_' then letters, digits or '_',"
                f" at most {_MAX_KEY_LENGTH} characters"
            ),
        )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table(key: str, snapshot: int | None = None) -> str:
    name = f"{_LAKE}.main.{_quote(key)}"
    return name if snapshot is None else f"{name} AT (VERSION => {int(snapshot)})"


def _table_names(cur: duckdb.DuckDBPyConnection) -> list[str]:
    rows = cur.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main'",
        [_LAKE],
    ).fetchall()
    return [str(row[0]) for row in rows]


def _history(
    cur: duckdb.DuckDBPyConnection, meta: str, key: str | None
) -> dict[str, list[_Commit]]:
    """Snapshots per lower-cased key, oldest first (every key when ``key`` is None)."""
    histories: dict[str, list[_Commit]] = {}
    sql = _HISTORY_SQL.format(meta=meta, lake=literal(_LAKE))
    for name, snapshot, at, extra in cur.execute(sql, {"key": key}).fetchall():
        commit = _Commit(int(snapshot), float(at), *_tags(extra))
        histories.setdefault(name, []).append(commit)
    return histories


def _tags(extra: object) -> tuple[str | None, str | None, int | None]:
    """Run id, stage and attempt from a snapshot's extra info; None for what is not there."""
    try:
        tags = json.loads(extra) if isinstance(extra, str) else {}
    except ValueError:
        tags = {}
    got = tags if isinstance(tags, dict) else {}
    run_id, stage, attempt = got.get("run_id"), got.get("stage"), got.get("attempt")
    return (
        run_id if isinstance(run_id, str) else None,
        stage if isinstance(stage, str) else None,
        attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None,
    )


def _landed_snapshot(con: duckdb.DuckDBPyConnection, meta: str, extra: str) -> int | None:
    """The snapshot a commit tagged ``extra`` (which holds a unique id) produced, if it did."""
    row = con.execute(
        f"SELECT max(snapshot_id) FROM {meta}.ducklake_snapshot_changes"
        " WHERE commit_extra_info = ?",
        [extra],
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):  # none open: a failed COMMIT already ended it
        con.execute("ROLLBACK")


def _is_retryable(exc: duckdb.Error) -> bool:
    """Whether another writer caused the failure, so trying again can succeed. DuckLake raises
    a conflicting or blocked commit as ``TransactionException``. Only when DuckDB gives no
    type (a bare ``duckdb.Error``: e.g. "Failed to initialize DuckLake" while another process
    creates the same catalog) is its message read, for the catalog database's own words."""
    if isinstance(exc, duckdb.TransactionException):
        return True
    return type(exc) is duckdb.Error and _CONTENDED.search(str(exc)) is not None


def _storage_error(exc: duckdb.Error, what: str) -> StorageError:
    text = str(exc).strip()
    missing = re.search(r'extension "?(\w+)"? to be loaded|"(\w+)" extension', text)
    if missing:
        name = missing.group(1) or missing.group(2)
        return StorageError(
            f"{what}: DuckDB needs its {name!r} extension, and Klaw never downloads extensions",
            hint=f"install it with `pip install {package(name)}=={duckdb.__version__}`",
        )
    first = redact(text.splitlines()[0]) if text else type(exc).__name__
    return StorageError(f"{what}: {first}", hint="check the catalog and data path, then retry")
