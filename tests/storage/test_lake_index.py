"""The snapshot index and compaction, on a SQLite and on a Postgres catalog.

An asset stays one DuckLake table however often it is committed; its history is answered from
Klaw's index; a commit whose process died before indexing it, a lake made before the index
existed, and a table written outside Klaw are all indexed from DuckLake's own record; and
``compact`` merges, expires and deletes without losing a kept snapshot, even when interrupted.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pytest

from klaw.errors import AssetNotFoundError, StorageError
from klaw.storage.ducklake import DuckLakeAssetStore

from .conftest import Lake
from .contract import commit, ints

NOW = dt.timedelta(0)

_CHILD = textwrap.dedent(
    """
    import sys
    import pyarrow as pa
    from klaw.storage.ducklake import DuckLakeAssetStore

    catalog, data, action = sys.argv[1:4]
    store = DuckLakeAssetStore(catalog, data)
    if action == "big":
        table = pa.table({"a": pa.array([-777] * 600_000, pa.int64())})
        store.commit("big", table, run_id="lost", stage="s", attempt=1)
    elif action == "commit":
        store.commit("orders", pa.table({"a": [7, 8, 9]}), run_id="lost", stage="s", attempt=2)
    else:
        import datetime as dt
        store.compact(retain=dt.timedelta(0), grace=dt.timedelta(0))
    print("finished: the failpoint did not fire")
    """
)


def _die_at(lake: Lake, failpoint: str, action: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "KLAW_FAILPOINTS": failpoint}
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, lake.catalog, str(lake.data), action],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stdout, child.stderr)


def _tables(store: DuckLakeAssetStore) -> int:
    """How many DuckLake tables the catalog has ever had (live and dropped)."""
    row = store._connection().execute(f"SELECT count(*) FROM {store._meta}.ducklake_table")
    found = row.fetchone()
    assert found is not None
    return int(found[0])


def test_an_asset_stays_one_table_however_often_it_is_committed(lake_place: Lake) -> None:
    with DuckLakeAssetStore(lake_place.catalog, lake_place.data) as store:
        ids = [commit(store, "orders", ints(3, start=10 * i)) for i in range(12)]
        assert _tables(store) == 1
        assert [s.snapshot for s in store.snapshots("orders")] == ids
        for i, snap in enumerate(ids):  # time travel to every one of them
            assert store.read("orders", snap).equals(ints(3, start=10 * i))
        # new columns, or an empty old version, make a new table: still one snapshot each
        wider = pa.table({"a": [1], "b": ["x"]})
        later = [commit(store, "orders", wider), commit(store, "orders", ints(0))]
        later.append(commit(store, "orders", ints(2)))
        assert [s.snapshot for s in store.snapshots("orders")] == ids + later
        assert [s.rows for s in store.snapshots("orders")][-3:] == [1, 0, 2]
        assert store.read("orders", later[0]).equals(wider)
        assert store.read("orders", ids[-1]).equals(ints(3, start=110))


def test_history_is_paged_from_the_newest(lake_place: Lake) -> None:
    with DuckLakeAssetStore(lake_place.catalog, lake_place.data) as store:
        ids = [commit(store, "orders", ints(i + 1), run_id=f"run{i}") for i in range(5)]
        newest = store.snapshots("orders", limit=2)
        assert [s.snapshot for s in newest] == ids[-2:]
        assert [(s.run_id, s.rows) for s in newest] == [("run3", 4), ("run4", 5)]
        assert store.snapshot("orders", ids[1]).rows == 2
        asset = store.asset("ORDERS")
        assert asset is not None and (asset.snapshots, asset.latest_snapshot) == (5, ids[-1])
        assert store.asset("nothing") is None
        with pytest.raises(AssetNotFoundError, match=r"no snapshot 999; it has"):
            store.snapshot("orders", 999)


def test_a_commit_whose_process_died_before_indexing_it_is_indexed_next_time(
    lake_place: Lake,
) -> None:
    with DuckLakeAssetStore(lake_place.catalog, lake_place.data) as store:
        first = commit(store, "orders", ints(3))
        _die_at(lake_place, "before_lake_index", "commit")
        # the snapshot landed in DuckLake: a reader that stayed open sees it, fully described
        snaps = store.snapshots("orders")
        assert len(snaps) == 2 and snaps[0].snapshot == first
        lost = snaps[-1]
        assert (lost.run_id, lost.stage, lost.attempt, lost.rows) == ("lost", "s", 2, 3)
        assert lost.schema == {"a": "int64"}
        assert store.read("orders").to_pydict() == {"a": [7, 8, 9]}
        assets = store.assets()
        assert [(a.key, a.latest_snapshot, a.snapshots) for a in assets] == [
            ("orders", lost.snapshot, 2)
        ]
        nxt = commit(store, "orders", ints(1))
        assert [s.snapshot for s in store.snapshots("orders")] == [first, lost.snapshot, nxt]


def test_a_lake_made_before_the_index_is_indexed_when_opened(lake_place: Lake) -> None:
    with DuckLakeAssetStore(lake_place.catalog, lake_place.data) as store:
        ids = [commit(store, "orders", ints(i + 2), run_id=f"run{i}") for i in range(3)]
        other = commit(store, "Customers", ints(1))
        con = store._connection()
        for table in ("klaw_asset_snapshot", "klaw_asset", "klaw_lake_index"):
            con.execute(f"DROP TABLE {store._meta}.{table}")
    with DuckLakeAssetStore(lake_place.catalog, lake_place.data) as reopened:
        snaps = reopened.snapshots("orders")
        assert [(s.snapshot, s.run_id, s.rows) for s in snaps] == [
            (ids[0], "run0", 2),
            (ids[1], "run1", 3),
            (ids[2], "run2", 4),
        ]
        assert [(a.key, a.latest_snapshot) for a in reopened.assets()] == [
            ("Customers", other),
            ("orders", ids[2]),
        ]
        with pytest.raises(StorageError, match="case-insensitive"):
            commit(reopened, "customers", ints(1))


def test_a_table_written_outside_klaw_is_listed_untagged(lake_place: Lake) -> None:
    with DuckLakeAssetStore(lake_place.catalog, lake_place.data) as store:
        commit(store, "orders", ints(1))
        con = store._connection()
        con.execute("CREATE TABLE klaw_lake.main.manual AS SELECT range AS a FROM range(4)")
        con.execute("CREATE TABLE klaw_lake.main.dropped AS SELECT 1 AS a")
        snaps = store.snapshots("manual")
        assert [(s.rows, s.run_id, s.stage) for s in snaps] == [(4, None, None)]
        assert {a.key for a in store.assets()} == {"orders", "manual", "dropped"}
        con.execute("DROP TABLE klaw_lake.main.dropped")
        assert {a.key for a in store.assets()} == {"orders", "manual"}


def test_compact_expires_old_snapshots_and_keeps_the_rest_readable(lake_place: Lake) -> None:
    with DuckLakeAssetStore(lake_place.catalog, lake_place.data) as store:
        old = [commit(store, "orders", ints(3, start=i)) for i in range(4)]
        lone = commit(store, "customers", ints(2))
        time.sleep(0.3)
        cutoff = dt.datetime.now(dt.UTC)
        kept = [commit(store, "orders", ints(5, start=100 + i)) for i in range(2)]
        files = len(list(lake_place.data.rglob("*.parquet")))
        retain = dt.datetime.now(dt.UTC) - cutoff + dt.timedelta(milliseconds=150)
        report = store.compact(retain=retain, grace=NOW)
        assert report.snapshots_expired >= len(old)
        assert report.files_deleted > 0
        assert len(list(lake_place.data.rglob("*.parquet"))) < files
        assert [s.snapshot for s in store.snapshots("orders")] == kept
        for i, snap in enumerate(kept):
            assert store.read("orders", snap).equals(ints(5, start=100 + i))
        # an asset whose only snapshot expired keeps it: it is still its current contents
        assert [s.snapshot for s in store.snapshots("customers")] == [lone]
        assert store.read("customers", lone).equals(ints(2))
        assert [(a.key, a.snapshots) for a in store.assets()] == [("customers", 1), ("orders", 2)]
        with pytest.raises(AssetNotFoundError, match=f"no snapshot {old[0]}"):
            store.read("orders", old[0])
        again = store.compact(retain=dt.timedelta(days=1), grace=NOW)  # nothing left to do
        assert (again.snapshots_expired, again.files_deleted) == (0, 0)
        assert commit(store, "orders", ints(1)) > kept[-1]


@pytest.mark.parametrize("point", ["lake_compact_merged", "lake_compact_forgotten"])
def test_an_interrupted_compaction_loses_nothing_and_a_rerun_finishes(
    lake_place: Lake, point: str
) -> None:
    with DuckLakeAssetStore(lake_place.catalog, lake_place.data) as store:
        ids = [commit(store, "orders", ints(3, start=i)) for i in range(3)]
        _die_at(lake_place, point, "compact")
        latest = store.snapshots("orders")[-1]
        assert latest.snapshot == ids[-1]
        assert store.read("orders").equals(ints(3, start=2))
        for snap in store.snapshots("orders"):  # whatever is listed reads
            store.read("orders", snap.snapshot)
        store.compact(retain=NOW, grace=NOW)
        assert [s.snapshot for s in store.snapshots("orders")] == [ids[-1]]
        assert store.read("orders", ids[-1]).equals(ints(3, start=2))


def test_a_negative_retention_is_refused(tmp_path: os.PathLike[str]) -> None:
    store = DuckLakeAssetStore(f"{tmp_path}/lake.sqlite", f"{tmp_path}/lake")
    with store, pytest.raises(StorageError, match="must not be negative"):
        store.compact(retain=dt.timedelta(days=-1))


def _big(n: int = 600_000, start: int = 0) -> pa.Table:  # over the size staged before the lock
    return pa.table({"a": pa.array(range(start, start + n), pa.int64())})


def test_a_large_table_is_written_before_the_lock_and_registered(lake_place: Lake) -> None:
    with DuckLakeAssetStore(lake_place.catalog, lake_place.data) as store:
        first = commit(store, "big", _big())
        second = commit(store, "big", _big(start=5))
        staged = sorted(p.name for p in lake_place.data.rglob("klaw-*.parquet"))
        assert len(staged) == 2  # Klaw wrote them, and DuckLake refers to them
        assert store.delete_orphaned_files(older_than=NOW) == []
        assert store.read("big", first).equals(_big())
        assert store.read("big").equals(_big(start=5))
        assert [s.rows for s in store.snapshots("big")] == [600_000, 600_000]
        assert second > first


def test_a_large_table_parquet_would_change_is_written_by_duckdb(lake_place: Lake) -> None:
    labels = pa.array(["x", "y"] * 300_000).dictionary_encode()
    table = pa.table({"a": pa.array(range(600_000), pa.int64()), "label": labels})
    with DuckLakeAssetStore(lake_place.catalog, lake_place.data) as store:
        commit(store, "labelled", table)
        back = store.read("labelled")
        assert back.num_rows == 600_000
        assert back.column("label").to_pylist()[:3] == ["x", "y", "x"]
        assert store.delete_orphaned_files(older_than=NOW) == []  # nothing was left behind


def test_a_large_commit_killed_before_the_catalog_commit_leaves_an_orphan(
    lake_place: Lake,
) -> None:
    with DuckLakeAssetStore(lake_place.catalog, lake_place.data) as store:
        kept = commit(store, "big", _big(10))
        _die_at(lake_place, "before_lake_commit", "big")
        assert [s.snapshot for s in store.snapshots("big")] == [kept]
        assert store.read("big").equals(_big(10))
        orphans = store.delete_orphaned_files(older_than=NOW)
        assert len(orphans) == 1 and "klaw-" in orphans[0]
        assert store.read("big").equals(_big(10))


def test_a_refused_large_commit_leaves_no_file(lake_place: Lake) -> None:
    with DuckLakeAssetStore(lake_place.catalog, lake_place.data) as store:
        commit(store, "Big", ints(1))
        with pytest.raises(StorageError, match="case-insensitive"):
            commit(store, "big", _big())
        assert list(lake_place.data.rglob("klaw-*.parquet")) == []
        assert store.delete_orphaned_files(older_than=NOW) == []


def test_columns_in_another_order_or_of_another_type_make_a_new_table(lake_place: Lake) -> None:
    """Whether a commit rewrites the asset's table in place is decided from the columns the
    index holds for its latest snapshot: the same names, order and types, or a new table."""
    first = pa.table({"a": pa.array([1, 2], pa.int64()), "b": ["x", "y"]})
    swapped = pa.table({"b": ["z"], "a": pa.array([3], pa.int64())})
    retyped = pa.table({"b": ["w"], "a": pa.array([0.5], pa.float64())})
    with DuckLakeAssetStore(lake_place.catalog, lake_place.data) as store:
        ids = [commit(store, "orders", t) for t in (first, first, swapped, retyped, retyped)]
        assert _tables(store) == 3  # first twice in place, then two new tables, then in place
        for snap, table in zip(ids, (first, first, swapped, retyped, retyped), strict=True):
            assert store.read("orders", snap).equals(table)
        assert [s.schema for s in store.snapshots("orders")][-1] == {"b": "string", "a": "double"}


_UNINDEXED = textwrap.dedent(
    """
    import sys
    import pyarrow as pa
    from klaw.storage.ducklake import DuckLakeAssetStore

    store = DuckLakeAssetStore(*sys.argv[1:3])
    store.commit("orders", pa.table({"a": ["x", "y", "z"]}), run_id="other", stage="s", attempt=1)
    print("finished: the failpoint did not fire")
    """
)


def test_a_commit_plans_from_a_snapshot_another_process_left_unindexed(lake_place: Lake) -> None:
    """Another process commits new column types and dies before indexing them: this store's
    next commit must see them (or it would insert its rows into the other table, cast)."""
    with DuckLakeAssetStore(lake_place.catalog, lake_place.data) as store:
        first = commit(store, "orders", ints(3))
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(sys.path),
            "KLAW_FAILPOINTS": "before_lake_index",
        }
        child = subprocess.run(
            [sys.executable, "-c", _UNINDEXED, lake_place.catalog, str(lake_place.data)],
            capture_output=True,
            text=True,
            env=env,
            timeout=90,
            check=False,
        )
        assert child.returncode == -signal.SIGKILL, (child.returncode, child.stderr)
        third = commit(store, "orders", ints(2))
        assert store.read("orders").equals(ints(2))
        snaps = store.snapshots("orders")
        assert (snaps[0].snapshot, snaps[-1].snapshot) == (first, third)
        assert [s.schema["a"] for s in snaps] == ["int64", "string", "int64"]
        assert store.read("orders", snaps[1].snapshot).column("a").to_pylist() == ["x", "y", "z"]


def test_a_staged_table_reads_back_by_row_group_and_time_travels(lake_place: Lake) -> None:
    """A staged file keeps pyarrow's row groups; DuckLake reads it, its statistics and its
    snapshot like one it wrote itself."""
    with DuckLakeAssetStore(lake_place.catalog, lake_place.data) as store:
        first = commit(store, "big", _big(1_200_000))
        second = commit(store, "big", ints(3))
        assert store.read("big", first, limit=5).equals(_big(5))
        assert store.read("big", first).num_rows == 1_200_000
        cur = store._connection().cursor()
        try:
            at = f'klaw_lake.main."big" AT (VERSION => {first})'
            row = cur.execute(f"SELECT count(*), max(a) FROM {at} WHERE a >= 1_100_000")
            assert row.fetchone() == (100_000, 1_199_999)
        finally:
            cur.close()
        assert store.read("big", second).equals(ints(3))
        assert store.delete_orphaned_files(older_than=NOW) == []
