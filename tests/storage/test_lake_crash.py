"""A process killed (SIGKILL) between writing an asset's Parquet files and committing its
DuckLake snapshot, on a SQLite and on a Postgres catalog.

Afterwards the asset's earlier snapshots are intact, no new snapshot is visible, a new commit
gets the next snapshot id, reads never see the dead commit's rows, and
``delete_orphaned_files`` removes the files it left behind.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from klaw.errors import AssetNotFoundError
from klaw.storage.ducklake import DuckLakeAssetStore

from .conftest import Lake
from .contract import commit, ints

MARKER = -777  # the value only the killed commit's rows hold
NOW = dt.timedelta(0)

_CHILD = textwrap.dedent(
    """
    import sys
    import pyarrow as pa
    from klaw.storage.ducklake import DuckLakeAssetStore

    catalog, data, key, marker = sys.argv[1:5]
    store = DuckLakeAssetStore(catalog, data)
    table = pa.table({"a": pa.array([int(marker)] * 5000, pa.int64())})
    store.commit(key, table, run_id="doomed", stage=key, attempt=1)
    print("committed: the failpoint did not fire")
    """
)


def _commit_and_die(lake: Lake, key: str) -> None:
    """Commit ``key`` in a child process armed to die at ``before_lake_commit``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "KLAW_FAILPOINTS": "before_lake_commit",
    }
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, lake.catalog, str(lake.data), key, str(MARKER)],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stdout, child.stderr)


def _files(lake: Lake) -> set[Path]:
    return set(lake.data.rglob("*.parquet"))


def _latest_snapshot(store: DuckLakeAssetStore) -> int:
    """The newest snapshot of the whole catalog, read from DuckLake's own table."""
    row = store._connection().execute(
        f"SELECT max(snapshot_id) FROM {store._meta}.ducklake_snapshot"
    )
    found = row.fetchone()
    assert found is not None
    return int(found[0])


def _never_marked(store: DuckLakeAssetStore, key: str) -> None:
    assert MARKER not in store.read(key).column("a").to_pylist()
    for snap in store.snapshots(key):
        assert MARKER not in store.read(key, snap.snapshot).column("a").to_pylist()


def test_a_commit_killed_before_the_catalog_commit_leaves_the_asset_as_it_was(
    lake_place: Lake,
) -> None:
    store = DuckLakeAssetStore(lake_place.catalog, lake_place.data)
    try:
        first = commit(store, "orders", ints(3))
        second = commit(store, "orders", ints(4, start=10))
        other = commit(store, "customers", ints(1))
        latest = _latest_snapshot(store)
        before = _files(lake_place)

        _commit_and_die(lake_place, "orders")

        orphans = _files(lake_place) - before
        assert orphans, "the child died before writing its Parquet files"
        for orphan in orphans:  # the dead commit's rows are on disk ...
            assert set(pq.read_table(orphan).column("a").to_pylist()) == {MARKER}

        # ... but no snapshot refers to them: the store that stayed open and a fresh one agree
        with DuckLakeAssetStore(lake_place.catalog, lake_place.data) as fresh:
            for lake in (store, fresh):
                assert _latest_snapshot(lake) == latest
                assert [s.snapshot for s in lake.snapshots("orders")] == [first, second]
                assert lake.read("orders").equals(ints(4, start=10))
                assert lake.read("orders", first).equals(ints(3))
                assert [(a.key, a.latest_snapshot) for a in lake.assets()] == [
                    ("customers", other),
                    ("orders", second),
                ]
                _never_marked(lake, "orders")

        third = commit(store, "orders", ints(2, start=100))
        assert third == latest + 1
        assert [s.snapshot for s in store.snapshots("orders")] == [first, second, third]
        assert store.read("orders").equals(ints(2, start=100))
        _never_marked(store, "orders")

        live = _files(lake_place) - orphans
        assert store.delete_orphaned_files(older_than=dt.timedelta(days=1)) == []  # too young
        deleted = store.delete_orphaned_files(older_than=NOW)
        assert sorted(Path(p) for p in deleted) == sorted(orphans)
        assert _files(lake_place) == live
        assert store.delete_orphaned_files(older_than=NOW) == []
        for snap in store.snapshots("orders"):  # every snapshot still reads from its files
            store.read("orders", snap.snapshot)
        assert store.read("orders", first).equals(ints(3))
        assert store.read("customers").equals(ints(1))
    finally:
        store.close()


def test_a_first_commit_killed_before_the_catalog_commit_creates_no_asset(
    lake_place: Lake,
) -> None:
    with DuckLakeAssetStore(lake_place.catalog, lake_place.data) as store:
        kept = commit(store, "customers", ints(1))

    _commit_and_die(lake_place, "orders")

    with DuckLakeAssetStore(lake_place.catalog, lake_place.data) as store:
        with pytest.raises(AssetNotFoundError, match="'orders'"):
            store.read("orders")
        assert [a.key for a in store.assets()] == ["customers"]
        assert _latest_snapshot(store) == kept
        snapshot = commit(store, "orders", pa.table({"a": pa.array([1, 2], pa.int64())}))
        assert snapshot == kept + 1
        assert store.read("orders").column("a").to_pylist() == [1, 2]
        assert len(store.delete_orphaned_files(older_than=NOW)) >= 1
        assert store.read("orders").column("a").to_pylist() == [1, 2]
        assert store.read("customers").equals(ints(1))
