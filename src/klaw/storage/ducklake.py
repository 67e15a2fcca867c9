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
import dataclasses
import datetime as dt
import difflib
import json
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from klaw.errors import AssetNotFoundError, StorageError
from klaw.failpoints import failpoint
from klaw.storage.lake_index import Entry, LakeIndex, Listed, Pending
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
from klaw.storage.store import AssetInfo, CompactReport, SnapshotInfo

_T = TypeVar("_T")

_LAKE = "klaw_lake"  # the DuckLake catalog's name inside the store's own DuckDB instance
_META = "klaw_lake_meta"  # the metadata database (DuckLake's spec tables) it is attached as
_SOURCE = "__klaw_commit_source"  # the name the table being committed is registered under
_AUTHOR = "klaw"
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_KEY_LENGTH = 63
_LISTED_SNAPSHOTS = 20  # how many snapshot ids an error message lists
_ORPHAN_AGE = dt.timedelta(days=1)
_CLEANUP_GRACE = dt.timedelta(hours=1)  # how long compaction keeps files nothing uses any more
_IN_PLACE_ROWS = 100_000  # up to this many rows, a commit rewrites the asset's table in place
_STAGED_BYTES = 4 << 20  # from this size a commit's Parquet is written before the commit lock
_GROUP_MAX = 64  # commits made in one catalog transaction at most (a group commit)
_SCHEMAS_KEPT = 1024  # Arrow schemas whose DuckDB form a store remembers
# The change kinds of ``ducklake_snapshot_changes`` that change a table's rows or columns.
_DATA_CHANGES = frozenset({"inserted_into_table", "deleted_from_table", "altered_table"})
_CHANGE = re.compile(r'([a-z_]+):((?:"(?:[^"]|"")*"\.?)+|\d+)')
# The catalog database's words for "another writer got there first", in an untyped error:
# SQLite's lock, or Postgres's own catalog meeting a concurrent CREATE TABLE of the same name.
# Another writer's doing, on the catalog database: SQLite's lock, DuckLake's conflict, and
# Postgres's duplicate key, serialization failure (40001) and deadlock (40P01).
_CONTENDED = re.compile(
    r"database is locked|conflict|duplicate key value violates unique constraint"
    r"|could not serialize access|deadlock detected",
    re.IGNORECASE,
)
_POSTGRES_FAILURE = re.compile(r'Unable to connect to Postgres at "[^"]*":\s*(.*)', re.DOTALL)


@dataclasses.dataclass(eq=False)
class _Commit:
    """One asset commit waiting to be made (alone, or with others in one transaction)."""

    key: str
    table: pa.Table
    message: str
    extra: str  # the commit's own extra info (a commit made alone carries it)
    tags: dict[str, object]  # key, run_id, stage, attempt, rows
    staged: Path | None
    done: bool = False
    snapshot: int | None = None
    error: StorageError | None = None


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
        self._queue_lock = threading.Lock()
        self._queue: list[_Commit] = []  # commits waiting for the lock (made as a group)
        self._con: duckdb.DuckDBPyConnection | None = None
        self._meta = f"{_META}.main"  # where DuckLake's own tables are; set when opened
        self._closed = False
        self._lake_index: LakeIndex | None = None  # Klaw's snapshot index, opened on first use
        self._mark = -1  # a snapshot id every snapshot up to which is indexed
        # Snapshots never change, so what was learnt about one is kept.
        self._members: set[tuple[str, int]] = set()
        self._expired: set[int] = set()  # latest snapshots that compaction expired
        self._schemas: dict[pa.Schema, dict[str, str]] = {}  # see _duckdb_schema

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
        tags: dict[str, object] = {"key": key, "run_id": run_id, "stage": stage, "attempt": attempt}
        extra = json.dumps(
            {**tags, "rows": table.num_rows, "commit": uuid.uuid4().hex}, separators=(",", ":")
        )
        message = f"{key} from stage {stage}, attempt {attempt} of run {run_id}"
        # A large table's Parquet file is written here, before the commit lock: commits of
        # parallel stages wait for each other's catalog transactions only, not their data.
        staged = self._stage(key, table) if table.nbytes >= _STAGED_BYTES else None
        mine = _Commit(key, table, message, extra, {**tags, "rows": table.num_rows}, staged)
        with self._queue_lock:
            self._queue.append(mine)
        # Group commit: whoever holds the lock commits every commit waiting for it in one
        # catalog transaction (a DuckLake transaction costs about as much for ten tables as
        # for one); the others find theirs done when they get the lock.
        with self._lock:
            while not mine.done:
                group = self._take_group()
                if not group:  # taken by a group that ended without it: never spin
                    raise StorageError(f"asset {key!r}: its commit was lost from the queue")
                self._commit_group_locked(group)
        if mine.error is not None:
            if mine.staged is not None:  # refused, or failed without landing: nothing refers
                mine.staged.unlink(missing_ok=True)  # to the file (killed, it is an orphan)
            raise mine.error
        assert mine.snapshot is not None
        self._members.add((key.lower(), mine.snapshot))
        return mine.snapshot

    def _take_group(self) -> list[_Commit]:
        """The waiting commits to make in one transaction: oldest first, one per asset (a
        second commit of an asset waits for the next transaction), at most _GROUP_MAX."""
        with self._queue_lock:
            group: list[_Commit] = []
            keys: set[str] = set()
            rest: list[_Commit] = []
            for c in self._queue:
                if len(group) < _GROUP_MAX and c.key.lower() not in keys:
                    group.append(c)
                    keys.add(c.key.lower())
                else:
                    rest.append(c)
            self._queue = rest
        return group

    def _commit_group_locked(self, group: list[_Commit]) -> None:
        """Make ``group``'s snapshots (under the lock), in one transaction when it can: when
        that is refused, each commit on its own, so that only a bad one fails. Every commit of
        the group is done afterwards, with its snapshot or its error, whatever is raised here
        (the threads waiting for them must not wait for ever)."""
        try:
            self._make_group_locked(group)
        except BaseException as exc:
            for c in group:
                if not c.done:
                    c.error = StorageError(
                        f"could not commit asset {c.key!r}: the commit it was grouped with "
                        f"failed ({type(exc).__name__}: {exc})",
                        hint="retry the stage; see the log of the process for the failure",
                    )
                    c.done = True
            raise

    def _make_group_locked(self, group: list[_Commit]) -> None:
        try:
            con = self._connection_locked()
            index = self._index_locked()
        except StorageError as exc:
            for c in group:
                c.error, c.done = exc, True
            return
        parts = [group] if len(group) > 1 else []
        parts += [[c] for c in group]
        for part in parts:
            if all(c.done for c in part):
                continue
            try:
                snapshot, schemas = self._commit_retrying(con, index, part)
            except StorageError as exc:
                if len(part) > 1:
                    continue  # each of them on its own next
                part[0].error, part[0].done = exc, True
                continue
            own = []
            for c, schema in zip(part, schemas, strict=True):
                c.snapshot, c.done = snapshot, True
                if schema is not None:
                    run_id, stage, attempt = _tags(c.tags)
                    rows = c.table.num_rows
                    own.append(Entry(snapshot, c.key, 0.0, rows, schema, run_id, stage, attempt))
            # The snapshot is durable now; indexing it may fail (then the next commit or read
            # of any process indexes it from DuckLake's own record).
            failpoint("before_lake_index")
            with contextlib.suppress(duckdb.Error):
                self._catch_up_locked(con, index, own)

    def _commit_retrying(
        self, con: duckdb.DuckDBPyConnection, index: LakeIndex, part: list[_Commit]
    ) -> tuple[int, list[dict[str, str] | None]]:
        """One transaction for ``part``, retried while other writers get in the way; the
        snapshot and each commit's schema (None: found landed after a failure)."""
        deadline = time.monotonic() + self.retry_timeout
        delay = 0.01
        if len(part) == 1:
            message, extra = part[0].message, part[0].extra
        else:
            keys = ", ".join(c.key for c in part)
            message = f"{len(part)} assets in one commit: {keys}"
            extra = json.dumps(
                {"commits": [c.tags for c in part], "commit": uuid.uuid4().hex},
                separators=(",", ":"),
            )
        while True:
            mark = self._mark
            try:
                return self._commit_once(con, index, part, message, extra)
            except duckdb.Error as exc:
                landed = None
                with contextlib.suppress(duckdb.Error):
                    landed = index.landed(mark, extra)
                if landed is not None:  # the commit failed after it was durable
                    return landed, [None] * len(part)
                if any(c.staged is not None for c in part) and not _is_retryable(exc):
                    # DuckLake would not register a file (a type it maps otherwise): let
                    # DuckDB write the data instead, inside the transaction.
                    for c in part:
                        if c.staged is not None:
                            c.staged.unlink(missing_ok=True)
                            c.staged = None
                    continue
                if not _is_retryable(exc) or time.monotonic() + delay > deadline:
                    keys = ", ".join(repr(c.key) for c in part)
                    raise _storage_error(exc, f"could not commit asset {keys}") from None
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 0.5)

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
        if (key.lower(), snapshot) not in self._members:
            self._check_snapshot(key, snapshot)
        cur = self._cursor()
        try:
            return cur.execute(f"SELECT * FROM {_table(key, snapshot)}{head}").to_arrow_table()
        except duckdb.Error as exc:
            if self._expired_latest(key, snapshot):  # compacted away, still the current table
                return cur.execute(f"SELECT * FROM {_table(key)}{head}").to_arrow_table()
            raise _storage_error(exc, f"could not read asset {key!r}") from None
        finally:
            cur.close()

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
                self._check_snapshot(key, snapshot)
            if snapshot is not None and self._expired_latest(key, snapshot):
                snapshot = None  # compacted away, and still the current table
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

    def snapshots(self, key: str, limit: int | None = None) -> list[SnapshotInfo]:
        """The asset's snapshots, oldest first (the newest ``limit`` when given): one keyed
        query of the snapshot index, however long the asset's history."""
        _check_key(key)
        history = self._indexed(lambda index: index.history(key, limit))
        if not history and (limit is None or limit > 0 or self.asset(key) is None):
            raise self._not_found(key)
        return [_snapshot_info(key, entry) for entry in history]

    def snapshot(self, key: str, snapshot: int) -> SnapshotInfo:
        """One snapshot of the asset; ``AssetNotFoundError`` lists the ones that exist."""
        _check_key(key)
        self._check_snapshot(key, snapshot)
        entry = self._indexed(lambda index: index.entry(key, snapshot))
        assert entry is not None  # checked just above; snapshots are never re-numbered
        return _snapshot_info(key, entry)

    def asset(self, key: str) -> AssetInfo | None:
        """The asset with its latest snapshot, or None when the lake has no such asset."""
        _check_key(key)
        listed = self._indexed(lambda index: index.latest(key))
        return None if listed is None else _asset_info(listed)

    def assets(self) -> list[AssetInfo]:
        return [_asset_info(listed) for listed in self._indexed(LakeIndex.assets)]

    # -- maintenance --------------------------------------------------------------------------

    def compact(
        self,
        *,
        retain: dt.timedelta | None = None,
        grace: dt.timedelta = _CLEANUP_GRACE,
        orphan_age: dt.timedelta = _ORPHAN_AGE,
    ) -> CompactReport:
        """Keep a lake that has taken many small commits fast to read, and its disk in bounds.

        In order, each step its own transaction (an interrupted compaction loses nothing, and
        running it again finishes it): merge each table's small adjacent files (time travel to
        every snapshot still works); with ``retain``, expire the snapshots older than that,
        keeping every asset's latest one readable; delete the files expired snapshots and
        merges left once they have been unused for ``grace`` (a reader may still be scanning
        them); delete orphaned files older than ``orphan_age`` (see
        :meth:`delete_orphaned_files`)."""
        if retain is not None and retain < dt.timedelta(0):
            raise StorageError(
                f"the retention must not be negative, got {retain}",
                hint="pass how long snapshots are kept, e.g. 30 days",
            )
        started = time.time()  # what the retention counts back from
        with self._lock:
            con = self._connection_locked()
            index = self._index_locked()
            try:
                merged = con.execute(
                    "CALL ducklake_merge_adjacent_files(?)", [_LAKE]
                ).to_arrow_table()
                failpoint("lake_compact_merged")
                expired: list[int] = []
                if retain is not None:
                    # Chosen here, by each snapshot's time: DuckLake's own older_than (1.5.5)
                    # expires every snapshot but the newest whatever the time it is given.
                    expired = index.older_than(started - retain.total_seconds())
                    # Forgotten first: a compaction that dies next leaves snapshots that are
                    # still there but no longer listed, never listed ones that are gone.
                    index.forget(expired)
                    failpoint("lake_compact_forgotten")
                    if expired:
                        con.execute(
                            "CALL ducklake_expire_snapshots(?, versions => ?)", [_LAKE, expired]
                        ).to_arrow_table()
                unused = (dt.datetime.now(dt.UTC) - grace).timestamp()
                deleted = con.execute(
                    "CALL ducklake_cleanup_old_files(?, older_than => to_timestamp(?))",
                    [_LAKE, unused],
                ).to_arrow_table()
                orphans = self._delete_orphans_locked(con, orphan_age)
            except duckdb.Error as exc:
                raise _storage_error(exc, "could not compact the lake") from None
        self._members.clear()
        return CompactReport(
            tables_merged=merged.num_rows,
            files_merged=sum(int(n or 0) for n in merged.column("files_processed").to_pylist()),
            files_written=sum(int(n or 0) for n in merged.column("files_created").to_pylist()),
            snapshots_expired=len(expired),
            files_deleted=deleted.num_rows,
            orphans_deleted=len(orphans),
        )

    def delete_orphaned_files(self, *, older_than: dt.timedelta = _ORPHAN_AGE) -> list[str]:
        """Delete the Parquet files under the data path that no snapshot refers to and that
        were last written more than ``older_than`` ago; return their paths, sorted.

        Such files are left by a commit whose process died after writing its Parquet files
        and before the catalog transaction committed; readers never see them. The age keeps
        the files of a commit another process is making right now: never pass less than the
        longest a commit can take while other processes may be writing to this lake. Any other
        Parquet file kept under the data path counts as orphaned too (other files are left).
        """
        with self._lock:  # no commit of this store is between writing files and committing
            return self._delete_orphans_locked(self._connection_locked(), older_than)

    def _delete_orphans_locked(
        self, con: duckdb.DuckDBPyConnection, older_than: dt.timedelta
    ) -> list[str]:
        cutoff = (dt.datetime.now(dt.UTC) - older_than).timestamp()
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
            self._lake_index = None
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
                hint="a catalog keeps the data path it was created with: set KLAW_LAKE__DATA"
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
                " it with CREATE DATABASE) and lets this user connect, then fix KLAW_LAKE__CATALOG"
                " (or lake_catalog in klaw.toml)"
            ),
        )

    # -- committing ---------------------------------------------------------------------------

    def _stage(self, key: str, table: pa.Table) -> Path | None:
        """Write ``table`` as a Parquet file under the data path, fsynced, for the commit to
        register; None (DuckDB writes it in the transaction) for an object-store data path.
        Until the commit registers it, the file is an orphan, as DuckDB's own would be."""
        data_path, _ = data_location(self.data_path)
        if on_object_store(data_path):
            return None
        folder = Path(data_path) / "main" / key
        path = folder / f"klaw-{uuid.uuid4()}.parquet"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path, compression="snappy")  # pyarrow's row groups: 1 Mi rows
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            path.unlink(missing_ok=True)
            raise StorageError(
                f"could not commit asset {key!r}: writing {path} failed: {exc.strerror or exc}",
                hint=f"free space on (or fix the permissions of) the lake's data path {folder}",
            ) from None
        except (pa.ArrowException, ValueError):
            path.unlink(missing_ok=True)
            return None  # a table Parquet cannot hold as is: DuckDB writes it its own way
        return path

    def _duckdb_schema(
        self, con: duckdb.DuckDBPyConnection, name: str, table: pa.Table
    ) -> dict[str, str]:
        """The columns of ``table`` (registered as ``name``) as DuckDB stores them, in Arrow's
        words: asked of DuckDB once per Arrow schema (stages commit the same shape again)."""
        known = self._schemas.get(table.schema)
        if known is None:
            known = _arrow_schema(con.execute(f"SELECT * FROM {name} LIMIT 0").to_arrow_table())
            if len(self._schemas) >= _SCHEMAS_KEPT:
                self._schemas.clear()
            self._schemas[table.schema] = known
        return dict(known)

    def _commit_once(
        self,
        con: duckdb.DuckDBPyConnection,
        index: LakeIndex,
        part: list[_Commit],
        message: str,
        extra: str,
    ) -> tuple[int, list[dict[str, str] | None]]:
        """One catalog transaction that makes the next snapshot of each asset of ``part``; the
        snapshot's id and each table's schema. A commit's ``staged`` file is registered."""
        if index.behind():  # another process committed: plan from what the lake holds now
            self._catch_up_locked(con, index)
        known = index.latest_of([c.key for c in part])
        plans = []
        for c in part:
            latest = known.get(c.key.lower())
            if latest is not None and latest.latest.key != c.key:
                raise StorageError(
                    f"asset {c.key!r} clashes with the existing asset {latest.latest.key!r}:"
                    " asset keys are case-insensitive",
                    hint=f"rename the asset, or spell it {latest.latest.key!r} as before",
                )
            # Small assets are rewritten in place (DELETE + INSERT into the same DuckLake
            # table), so an asset stays one table however many snapshots it has, when its
            # columns (names, order and types, as the index has the latest snapshot's) stay
            # the same. A large one is replaced (CREATE OR REPLACE): a DELETE scans the old
            # version (0.2 s per million rows) where a drop only ends its files. An empty old
            # version is replaced too: deleting nothing and inserting nothing would make no
            # snapshot.
            same = latest is not None and 0 < latest.latest.rows <= _IN_PLACE_ROWS
            plans.append(latest.latest.schema if same and latest is not None else None)
        sources = [f"{_SOURCE}_{i}" for i in range(len(part))]
        for name, c in zip(sources, part, strict=True):
            con.register(name, c.table)
        try:
            schemas: list[dict[str, str] | None] = [
                self._duckdb_schema(con, name, c.table)
                for name, c in zip(sources, part, strict=True)
            ]
            con.execute("BEGIN TRANSACTION")
            try:
                # literals, not parameters: binding Python parameters costs DuckDB a failed
                # `import pandas` each time where pandas is not installed (0.1 ms apiece)
                con.execute(
                    f"CALL ducklake_set_commit_message({literal(_LAKE)}, {literal(_AUTHOR)}, "
                    f"{literal(message)}, extra_info => {literal(extra)})"
                )
                for name, c, old, new in zip(sources, part, plans, schemas, strict=True):
                    rows = f"SELECT * FROM {name}" + (" LIMIT 0" if c.staged else "")
                    if old is not None and new is not None and _same_columns(old, new):
                        con.execute(f"DELETE FROM {_table(c.key)}")
                        con.execute(f"INSERT INTO {_table(c.key)} {rows}")
                    else:
                        con.execute(f"CREATE OR REPLACE TABLE {_table(c.key)} AS {rows}")
                    if c.staged is not None:
                        con.execute(
                            f"CALL ducklake_add_data_files({literal(_LAKE)}, {literal(c.key)}, "
                            f"{literal(str(c.staged))}, schema => 'main')"
                        )
                # The Parquet files are written now; until COMMIT no snapshot refers to them.
                failpoint("before_lake_commit")
                con.execute("COMMIT")
            except BaseException:
                _rollback(con)
                raise
        finally:
            for name in sources:
                con.unregister(name)
        last = f"SELECT id FROM ducklake_last_committed_snapshot({literal(_LAKE)})"
        row = con.execute(last).fetchone()
        if row is None or row[0] is None:
            keys = ", ".join(repr(c.key) for c in part)
            raise StorageError(
                f"asset {keys}: DuckLake committed, but recorded no snapshot for the commit",
                hint="check the asset's snapshots and report this as a bug in Klaw",
            )
        return int(row[0]), schemas

    # -- reading ------------------------------------------------------------------------------

    def _indexed(self, ask: Callable[[LakeIndex], _T]) -> _T:
        """``ask`` the snapshot index, first indexing any commit it has not seen yet (one
        that another process made a moment ago, or whose process died before indexing it)."""
        try:
            index = self._index()
            if index.behind():
                with self._lock:
                    self._catch_up_locked(self._connection_locked(), index)
            return ask(index)
        except duckdb.Error as exc:
            raise _storage_error(exc, "could not read the asset store") from None

    def _check_snapshot(self, key: str, snapshot: int) -> None:
        if self._indexed(lambda index: index.entry(key, snapshot)) is not None:
            self._members.add((key.lower(), snapshot))
            return
        listed = self.asset(key)
        if listed is None:
            raise self._not_found(key)
        recent = self._indexed(lambda index: index.history(key, _LISTED_SNAPSHOTS))
        shown = ", ".join(str(e.snapshot) for e in recent)
        many = listed.snapshots > len(recent)
        listed_text = f"the last {len(recent)} of {listed.snapshots} are" if many else "it has"
        raise AssetNotFoundError(
            f"asset {key!r} has no snapshot {snapshot}; {listed_text} {shown}",
            hint="read the latest snapshot, or one of the ids listed",
        )

    def _expired_latest(self, key: str, snapshot: int) -> bool:
        """Whether ``snapshot`` is the asset's latest and DuckLake expired it (compaction keeps
        an asset's current contents, and its latest snapshot id in the index, readable)."""
        if snapshot in self._expired:
            return True
        latest = self.asset(key)
        if latest is None or latest.latest_snapshot != snapshot:
            return False
        expired = snapshot not in self._indexed(LakeIndex.snapshot_ids)
        if expired:
            self._expired.add(snapshot)
        return expired

    def _not_found(self, key: str) -> AssetNotFoundError:
        try:
            names = self._index().names()
        except (StorageError, duckdb.Error):
            names = []
        close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
        close += [n for n in names if n.lower() == key.lower() and n not in close]
        suggestion = f"; did you mean {', '.join(repr(n) for n in close)}?" if close else ""
        return AssetNotFoundError(
            f"asset {key!r} does not exist in the lake at {self.location!r}{suggestion}",
            hint="run `klaw assets list` to see every asset",
        )

    # -- the snapshot index -------------------------------------------------------------------

    def _index(self) -> LakeIndex:
        index = self._lake_index
        if index is not None:
            return index
        with self._lock:
            return self._index_locked()

    def _index_locked(self) -> LakeIndex:
        if self._lake_index is None:
            self._connection_locked()  # DuckLake creates its catalog tables first
            target = catalog_target(self.catalog)
            deadline = time.monotonic() + self.retry_timeout
            while True:  # another process may be creating the same tables right now
                try:
                    self._lake_index = LakeIndex(
                        self._index_cursor, _META, postgres=target.postgres, schema=target.schema
                    )
                    self._mark = self._lake_index.through()
                    break
                except duckdb.Error as exc:
                    retry = _is_retryable(exc) or isinstance(exc, duckdb.ConstraintException)
                    if not retry or time.monotonic() > deadline:
                        what = "could not open the lake's snapshot index"
                        raise _storage_error(exc, what) from None
                    time.sleep(random.uniform(0.01, 0.1))
        return self._lake_index

    def _index_cursor(self) -> duckdb.DuckDBPyConnection:
        con = self._con
        if con is None:
            raise self._closed_error()
        return con.cursor()

    def _catch_up_locked(
        self, con: duckdb.DuckDBPyConnection, index: LakeIndex, own: Sequence[Entry] = ()
    ) -> None:
        """Index every DuckLake snapshot above the index's mark: ``own`` (the asset snapshots
        just made, whose counts are known) and any other, described from DuckLake's record."""
        pending = index.pending()
        if not pending:
            return
        entries: list[Entry] = []
        dropped: list[str] = []
        for snap in pending:
            if snap.indexed:
                continue
            mine = [e for e in own if e.snapshot == snap.snapshot]
            if mine:
                entries += [dataclasses.replace(e, committed_at=snap.committed_at) for e in mine]
                continue
            found, gone = self._describe(con, index, snap)
            entries += found
            dropped += gone
        index.record(entries, through=pending[-1].snapshot, dropped=dropped)
        self._mark = max(self._mark, pending[-1].snapshot)

    def _describe(
        self, con: duckdb.DuckDBPyConnection, index: LakeIndex, snap: Pending
    ) -> tuple[list[Entry], list[str]]:
        """The asset snapshots one DuckLake snapshot made, and the assets it dropped: a Klaw
        commit says which asset in its extra info; any other change is read off the table
        names and ids DuckLake lists (compaction and schema changes make no asset snapshot)."""
        tags = _extra(snap.extra_info)
        run_id, stage, attempt = _tags(tags)
        changes = _CHANGE.findall(snap.changes)
        grouped = tags.get("commits")
        if isinstance(grouped, list):  # a group commit: one snapshot, several assets
            found: list[Entry] = []
            for one in grouped:
                if isinstance(one, dict) and isinstance(one.get("key"), str):
                    alone = Pending(snap.snapshot, snap.committed_at, "", json.dumps(one))
                    got, _ = self._describe(con, index, alone)
                    found += got
            return found, []
        if isinstance(tags.get("key"), str):
            names = {str(tags["key"])}
        else:
            created = {_created_name(target) for kind, target in changes if kind == "created_table"}
            ids = [
                int(target)
                for kind, target in changes
                if kind in _DATA_CHANGES and target.isdigit()
            ]
            names = {n for n in created if n} | set(index.table_names(ids).values())
        dropped_ids = [int(t) for kind, t in changes if kind == "dropped_table" and t.isdigit()]
        gone = set(index.table_names(dropped_ids).values()) - names if dropped_ids else set()
        entries = []
        for name in sorted(names):
            rows = tags.get("rows") if name == tags.get("key") else None
            try:
                at = _table(name, snap.snapshot)
                schema = _arrow_schema(con.execute(f"SELECT * FROM {at} LIMIT 0").to_arrow_table())
                if not isinstance(rows, int):
                    row = con.execute(f"SELECT count(*) FROM {at}").fetchone()
                    rows = int(row[0]) if row else 0
            except duckdb.Error:
                continue  # not a table of schema main at that snapshot (made and dropped)
            entries.append(
                Entry(snap.snapshot, name, snap.committed_at, rows, schema, run_id, stage, attempt)
            )
        return entries, sorted(gone)


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


def _same_columns(old: dict[str, str], new: dict[str, str]) -> bool:
    """Whether two tables' columns have the same names, order and types (Arrow's, as DuckDB
    hands them back)."""
    return list(old.items()) == list(new.items())


def _extra(extra: object) -> dict[str, object]:
    """A snapshot's extra info as a dict ({} for none, or for what Klaw did not write)."""
    try:
        tags = json.loads(extra) if isinstance(extra, str) else {}
    except ValueError:
        tags = {}
    return tags if isinstance(tags, dict) else {}


def _tags(tags: dict[str, object]) -> tuple[str | None, str | None, int | None]:
    """Run id, stage and attempt from a snapshot's extra info; None for what is not there."""
    run_id, stage, attempt = tags.get("run_id"), tags.get("stage"), tags.get("attempt")
    return (
        run_id if isinstance(run_id, str) else None,
        stage if isinstance(stage, str) else None,
        attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None,
    )


def _created_name(target: str) -> str | None:
    """``"main"."orders"`` -> ``orders``; None for a table of another schema."""
    parts = [p.replace('""', '"') for p in re.findall(r'"((?:[^"]|"")*)"', target)]
    return parts[1] if len(parts) == 2 and parts[0] == "main" else None


def _arrow_schema(table: pa.Table) -> dict[str, str]:
    return {f.name: str(f.type) for f in table.schema}


def _snapshot_info(key: str, entry: Entry) -> SnapshotInfo:
    return SnapshotInfo(
        key=key,
        snapshot=entry.snapshot,
        committed_at=entry.committed_at,
        rows=entry.rows,
        run_id=entry.run_id,
        stage=entry.stage,
        attempt=entry.attempt,
        schema=entry.schema,
    )


def _asset_info(listed: Listed) -> AssetInfo:
    latest = listed.latest
    return AssetInfo(
        key=latest.key,
        latest_snapshot=latest.snapshot,
        snapshots=listed.snapshots,
        rows=latest.rows,
        updated_at=latest.committed_at,
        schema=latest.schema,
    )


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):  # none open: a failed COMMIT already ended it
        con.execute("ROLLBACK")


def _is_retryable(exc: Exception) -> bool:
    """Whether another writer caused the failure, so trying again can succeed. DuckLake raises
    a conflicting or blocked commit as ``TransactionException``. Only when DuckDB gives no
    type (a bare ``duckdb.Error``: e.g. "Failed to initialize DuckLake" while another process
    creates the same catalog) is its message read, for the catalog database's own words."""
    if isinstance(exc, duckdb.TransactionException):
        return True
    return type(exc) is duckdb.Error and _CONTENDED.search(str(exc)) is not None


def _storage_error(exc: Exception, what: str) -> StorageError:
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
