"""The asset store seam: versioned datasets, one snapshot per successful asset stage."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Protocol

import msgspec

if TYPE_CHECKING:
    import pyarrow as pa


class SnapshotInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One snapshot of one asset, with the run and attempt that committed it."""

    key: str
    snapshot: int
    committed_at: float
    rows: int
    run_id: str | None = None
    stage: str | None = None
    attempt: int | None = None
    schema: dict[str, str] = msgspec.field(default_factory=dict)  # column -> Arrow type


class AssetInfo(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    latest_snapshot: int
    snapshots: int
    rows: int
    updated_at: float
    schema: dict[str, str] = msgspec.field(default_factory=dict)


class CompactReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one compaction of the lake did."""

    tables_merged: int = 0  # tables whose small files were merged
    files_merged: int = 0  # data files merged into bigger ones
    files_written: int = 0  # the files they were merged into
    snapshots_expired: int = 0
    files_deleted: int = 0  # files of expired snapshots and merges, no longer used
    orphans_deleted: int = 0  # files of commits that never landed


class AssetStore(Protocol):
    def commit(self, key: str, table: pa.Table, *, run_id: str, stage: str, attempt: int) -> int:
        """Replace the asset's contents with ``table`` as exactly one new snapshot; return its
        id. The snapshot is tagged with run, stage and attempt."""

    def read(self, key: str, snapshot: int | None = None, limit: int | None = None) -> pa.Table:
        """The latest snapshot, or the one asked for (time travel); its first ``limit`` rows
        when a limit is given (``limit=0``: the schema alone). ``AssetNotFoundError`` names
        the key and the closest keys, or the snapshot and the ones that exist."""

    def snapshots(self, key: str, limit: int | None = None) -> list[SnapshotInfo]:
        """Every snapshot of the asset, oldest first, with row counts and schema; the newest
        ``limit`` of them when given."""

    def snapshot(self, key: str, snapshot: int) -> SnapshotInfo:
        """One snapshot; ``AssetNotFoundError`` names the key, or lists the snapshots."""

    def asset(self, key: str) -> AssetInfo | None:
        """The asset with its latest snapshot; None when there is no such asset."""

    def assets(self) -> list[AssetInfo]: ...

    def compact(
        self,
        *,
        retain: dt.timedelta | None = None,
        grace: dt.timedelta = ...,
        orphan_age: dt.timedelta = ...,
    ) -> CompactReport:
        """Merge small files; expire snapshots older than ``retain`` (each asset's latest
        stays); delete files unused for ``grace`` and orphans older than ``orphan_age``."""

    def close(self) -> None: ...
