from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from klaw.errors import AssetNotFoundError, StorageError
from klaw.storage import ducklake, location
from klaw.storage.ducklake import DuckLakeAssetStore

from .conftest import Lake
from .contract import AssetStoreContract, commit, ints


class TestDuckLakeAssetStore(AssetStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[DuckLakeAssetStore]:
        store = DuckLakeAssetStore(tmp_path / "lake.sqlite", tmp_path / "lake")
        yield store
        store.close()

    @pytest.fixture
    def reopen(self, tmp_path: Path) -> Callable[[], DuckLakeAssetStore]:
        return lambda: DuckLakeAssetStore(tmp_path / "lake.sqlite", tmp_path / "lake")


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[DuckLakeAssetStore]:
    store = DuckLakeAssetStore(tmp_path / "lake.sqlite", tmp_path / "lake")
    yield store
    store.close()


def catalog_rows(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read the SQLite catalog directly, past the store, to check what DuckLake recorded."""
    with contextlib.closing(sqlite3.connect(tmp_path / "lake.sqlite")) as con:
        return con.execute(sql).fetchall()


def test_constructing_a_store_touches_nothing(tmp_path: Path) -> None:
    store = DuckLakeAssetStore(tmp_path / "a" / "lake.sqlite", tmp_path / "a" / "lake")
    assert not (tmp_path / "a").exists()
    store.close()
    assert not (tmp_path / "a").exists()


def test_first_use_creates_catalog_and_data_folders(tmp_path: Path) -> None:
    with DuckLakeAssetStore(tmp_path / "a" / "lake.sqlite", tmp_path / "b" / "lake") as store:
        assert store.assets() == []
    assert (tmp_path / "a" / "lake.sqlite").is_file()
    assert (tmp_path / "b" / "lake").is_dir()


def test_a_commit_writes_parquet_files_under_the_data_path(
    tmp_path: Path, lake: DuckLakeAssetStore
) -> None:
    table = pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]})  # small: would be inlined by default
    commit(lake, "orders", table)
    files = sorted((tmp_path / "lake").rglob("*.parquet"))
    assert len(files) == 1
    assert pq.read_table(files[0]).num_rows == 3
    assert catalog_rows(tmp_path, "SELECT count(*) FROM ducklake_data_file") == [(1,)]
    commit(lake, "orders", ints(2))
    assert (
        len(list((tmp_path / "lake").rglob("*.parquet"))) == 2
    )  # the old file stays for time travel


def test_each_commit_is_exactly_one_catalog_snapshot(
    tmp_path: Path, lake: DuckLakeAssetStore
) -> None:
    """Counted in the catalog itself, so snapshots no asset owns would be seen too."""
    lake.assets()  # creates the catalog
    cases = [ints(3), ints(4), pa.table({"b": ["x"]}), ints(0), ints(0), ints(2), ints(2)]
    for i, table in enumerate(cases):
        (before,) = catalog_rows(tmp_path, "SELECT count(*) FROM ducklake_snapshot")
        snapshot = commit(lake, "orders", table, run_id=f"run{i}")
        (after,) = catalog_rows(tmp_path, "SELECT count(*) FROM ducklake_snapshot")
        (latest,) = catalog_rows(tmp_path, "SELECT max(snapshot_id) FROM ducklake_snapshot")
        assert after[0] == before[0] + 1, f"commit {i} made {after[0] - before[0]} snapshots"
        assert latest[0] == snapshot


def test_a_replacement_ends_the_old_files_and_keeps_them_for_time_travel(
    tmp_path: Path, lake: DuckLakeAssetStore
) -> None:
    first = commit(lake, "orders", ints(3))
    second = commit(lake, "orders", ints(5))
    files = catalog_rows(
        tmp_path,
        "SELECT begin_snapshot, end_snapshot, record_count FROM ducklake_data_file ORDER BY 1",
    )
    assert files == [(first, second, 3), (second, None, 5)]
    assert len(list((tmp_path / "lake").rglob("*.parquet"))) == 2
    assert lake.read("orders", first).num_rows == 3
    assert catalog_rows(tmp_path, "SELECT count(*) FROM ducklake_delete_file") == [(0,)]


def test_snapshots_are_tagged_in_the_catalog(tmp_path: Path, lake: DuckLakeAssetStore) -> None:
    snapshot = lake.commit("orders", ints(1), run_id="r-42", stage="load", attempt=2)
    ((author, message, extra),) = catalog_rows(
        tmp_path,
        "SELECT author, commit_message, commit_extra_info FROM ducklake_snapshot_changes"
        f" WHERE snapshot_id = {snapshot}",
    )
    assert author == "klaw"
    assert "orders" in message and "r-42" in message
    assert '"run_id":"r-42"' in extra and '"stage":"load"' in extra and '"attempt":2' in extra


def test_keys_are_case_insensitive_and_a_clash_is_refused(lake: DuckLakeAssetStore) -> None:
    first = commit(lake, "Orders", ints(2))
    with pytest.raises(StorageError, match="'orders' clashes with the existing asset 'Orders'"):
        commit(lake, "orders", ints(3))
    assert lake.read("orders").num_rows == 2
    assert [s.snapshot for s in lake.snapshots("ORDERS")] == [first]
    assert [a.key for a in lake.assets()] == ["Orders"]


def test_a_failed_commit_leaves_no_snapshot_and_the_store_usable(
    tmp_path: Path, lake: DuckLakeAssetStore
) -> None:
    first = commit(lake, "orders", ints(2))
    dup = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])
    with pytest.raises(StorageError, match="could not commit asset 'orders'"):
        commit(lake, "orders", dup)
    assert [s.snapshot for s in lake.snapshots("orders")] == [first]
    assert catalog_rows(tmp_path, "SELECT max(snapshot_id) FROM ducklake_snapshot") == [(first,)]
    second = commit(lake, "orders", ints(3))
    assert lake.read("orders").num_rows == 3
    assert second > first


def test_a_snapshot_from_before_the_asset_existed_is_refused(lake: DuckLakeAssetStore) -> None:
    other = commit(lake, "customers", ints(1))
    commit(lake, "orders", ints(1))
    with pytest.raises(AssetNotFoundError, match=f"no snapshot {other}"):
        lake.read("orders", other)


def test_extensions_come_from_the_packages_and_nothing_is_downloaded(
    lake: DuckLakeAssetStore,
) -> None:
    commit(lake, "orders", ints(1))
    con = lake._connection()
    settings = con.execute(
        "SELECT current_setting('autoinstall_known_extensions'),"
        " current_setting('autoload_known_extensions')"
    ).fetchall()
    assert settings == [(False, False)]
    loaded = dict(
        con.execute(
            "SELECT extension_name, install_mode FROM duckdb_extensions()"
            " WHERE extension_name IN ('ducklake', 'sqlite_scanner') AND loaded"
        ).fetchall()
    )
    assert loaded == {"ducklake": "NOT_INSTALLED", "sqlite_scanner": "NOT_INSTALLED"}


def test_a_needed_extension_that_is_not_installed_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(location, "extension_folders", lambda name: [])  # as if not installed
    store = DuckLakeAssetStore(tmp_path / "lake.sqlite", "s3://some-bucket/lake/")
    with pytest.raises(StorageError) as info:
        commit(store, "orders", ints(1))
    assert "duckdb-extension-httpfs" in str(info.value)
    assert "pip install" in str(info.value)
    assert not (tmp_path / "lake.sqlite").exists()  # refused before anything was opened


def test_a_query_needing_an_unloaded_extension_is_refused_not_downloaded(
    lake: DuckLakeAssetStore,
) -> None:
    commit(lake, "orders", ints(1))
    with pytest.raises(duckdb.Error, match="httpfs") as info:
        lake._connection().execute("SELECT * FROM 's3://some-bucket/x.parquet'").fetchall()
    error = ducklake._storage_error(info.value, "could not read asset 'x'")
    assert "never downloads" in str(error)
    assert "pip install duckdb-extension-httpfs==" in str(error)


def test_unsupported_data_path_scheme(tmp_path: Path) -> None:
    store = DuckLakeAssetStore(tmp_path / "lake.sqlite", "ftp://host/lake")
    with pytest.raises(StorageError, match="ftp://"):
        store.assets()


def test_another_data_path_than_the_catalogs_is_refused_with_what_to_set(tmp_path: Path) -> None:
    with DuckLakeAssetStore(tmp_path / "lake.sqlite", tmp_path / "a") as store:
        commit(store, "orders", ints(1))
    other = DuckLakeAssetStore(tmp_path / "lake.sqlite", tmp_path / "b")
    with other, pytest.raises(StorageError, match="KLAW_LAKE__DATA") as info:
        other.read("orders")
    assert str(tmp_path / "a") in str(info.value)
    with DuckLakeAssetStore(tmp_path / "lake.sqlite", tmp_path / "a") as store:
        assert store.read("orders").equals(ints(1))


_CHILD = textwrap.dedent(
    """
    import sys
    import pyarrow as pa
    from klaw.storage.ducklake import DuckLakeAssetStore

    catalog, data, key, count = sys.argv[1:5]
    store = DuckLakeAssetStore(catalog, data)
    ids = []
    for i in range(int(count)):
        table = pa.table({"a": list(range(i + 1)), "writer": [key] * (i + 1)})
        ids.append(store.commit(key, table, run_id=f"{key}{i}", stage=key, attempt=1))
        table = pa.table({"a": list(range(i + 1)), "writer": [key] * (i + 1)})
        ids.append(store.commit("shared", table, run_id=f"{key}{i}", stage=key, attempt=1))
    store.close()
    print(" ".join(map(str, ids)))
    """
)


def test_two_processes_commit_to_one_catalog(lake_place: Lake) -> None:
    catalog, data = lake_place.catalog, lake_place.data
    count = 8
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    parent = DuckLakeAssetStore(catalog, data)  # open before the children, so it must refresh
    try:
        before = commit(parent, "parent", ints(1))
        children = [
            subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(catalog), str(data), key, str(count)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for key in ("left", "right")
        ]
        results = [child.communicate(timeout=100) for child in children]
        for child, (_, err) in zip(children, results, strict=True):
            assert child.returncode == 0, err
        ids = [int(i) for out, _ in results for i in out.split()]
        assert len(ids) == len(set(ids)) == 4 * count

        assert parent.read("shared").num_rows == count
        after = commit(parent, "parent", ints(2))
        assert after > max(ids) > min(ids) > before
    finally:
        parent.close()
    with DuckLakeAssetStore(catalog, data) as store:
        assert [a.key for a in store.assets()] == ["left", "parent", "right", "shared"]
        for key in ("left", "right"):
            snaps = store.snapshots(key)
            assert [s.rows for s in snaps] == list(range(1, count + 1))
            assert [s.run_id for s in snaps] == [f"{key}{i}" for i in range(count)]
        shared = store.snapshots("shared")
        assert len(shared) == 2 * count
        for snap in shared:  # each version is one writer's whole table, never a mix
            table = store.read("shared", snap.snapshot)
            assert set(table.column("writer").to_pylist()) == {snap.stage}
            assert table.column("a").to_pylist() == list(range(table.num_rows))
            assert table.num_rows == snap.rows


_OPENER = textwrap.dedent(
    """
    import pathlib, sys, time
    import pyarrow as pa
    from klaw.storage.ducklake import DuckLakeAssetStore

    catalog, data, key, go = sys.argv[1:5]
    pathlib.Path(go + "." + key).touch()  # ready
    while not pathlib.Path(go).exists():  # every child opens the new catalog at once
        time.sleep(0.001)
    with DuckLakeAssetStore(catalog, data) as store:
        print(store.commit(key, pa.table({"a": [1]}), run_id=key, stage=key, attempt=1))
    """
)


def test_processes_creating_one_catalog_at_once_all_open_it(lake_place: Lake) -> None:
    """The first processes to open a catalog race to create its tables: the losers meet a
    locked SQLite file or, on Postgres, a duplicate key in Postgres's own catalog (errors
    DuckDB raises untyped), and must retry rather than fail."""
    catalog, data = lake_place.catalog, lake_place.data
    go = Path(str(data) + ".go")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    keys = [f"writer{i}" for i in range(4)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _OPENER, str(catalog), str(data), key, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for key in keys
    ]
    ready = [Path(f"{go}.{key}") for key in keys]
    for _ in range(6000):  # until every child waits for the go (started, imports done)
        if all(r.exists() or c.poll() is not None for r, c in zip(ready, children, strict=True)):
            break
        time.sleep(0.01)
    go.touch()
    results = [child.communicate(timeout=100) for child in children]
    for child, (_, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err
    with DuckLakeAssetStore(catalog, data) as store:
        assert sorted(a.key for a in store.assets()) == keys


def test_what_is_retried_is_read_from_the_exception_type_first() -> None:
    assert ducklake._is_retryable(duckdb.TransactionException("Failed to commit"))
    untyped = 'Failed to initialize DuckLake: ...: ERROR:  duplicate key value violates unique constraint "pg_type_typname_nsp_index"'  # noqa: E501
    assert ducklake._is_retryable(duckdb.Error(untyped))
    assert ducklake._is_retryable(duckdb.Error("Failed to initialize DuckLake: database is locked"))
    # a typed error is what its type says, whatever its message
    assert not ducklake._is_retryable(duckdb.ConstraintException(untyped))
    assert not ducklake._is_retryable(duckdb.CatalogException("Table with name x does not exist"))


def _queued(store: DuckLakeAssetStore, keys: list[str], results: dict[str, Any]) -> None:
    """Commit ``keys`` from one thread each while the test holds the store's lock, so that all
    of them wait for it: the next holder makes them as one group."""
    import threading

    def one(key: str) -> None:
        try:
            results[key] = store.commit(key, ints(3), run_id=f"r-{key}", stage=key, attempt=1)
        except StorageError as exc:
            results[key] = exc

    threads = [threading.Thread(target=one, args=(key,)) for key in keys]
    with store._lock:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(store._queue) < len(keys) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(store._queue) == len(keys)
    for thread in threads:
        thread.join(timeout=60)


def test_commits_waiting_for_the_lock_share_one_transaction(tmp_path: Path) -> None:
    catalog, data = tmp_path / "lake.sqlite", tmp_path / "data"
    with DuckLakeAssetStore(catalog, data) as store:
        before = commit(store, "first", ints(1))
        results: dict[str, Any] = {}
        _queued(store, ["a", "b", "c", "d"], results)
        assert len(set(results.values())) == 1  # one lake snapshot for the four
        [snapshot] = set(results.values())
        assert snapshot > before
        for key in "abcd":
            [made] = store.snapshots(key)
            assert (made.snapshot, made.run_id, made.stage, made.rows) == (
                snapshot,
                f"r-{key}",
                key,
                3,
            )
            assert store.read(key, snapshot).num_rows == 3
    # indexed from DuckLake's own record too (as when a process dies before indexing)
    con = sqlite3.connect(catalog)
    con.execute("DELETE FROM klaw_asset_snapshot WHERE snapshot_id = ?", (snapshot,))
    con.execute("UPDATE klaw_lake_index SET indexed_through = ?", (before,))
    con.commit()
    con.close()
    with DuckLakeAssetStore(catalog, data) as store:
        for key in "abcd":
            [made] = store.snapshots(key)
            assert (made.snapshot, made.run_id, made.stage, made.attempt) == (
                snapshot,
                f"r-{key}",
                key,
                1,
            )


def test_a_refused_commit_in_a_group_fails_alone(tmp_path: Path) -> None:
    with DuckLakeAssetStore(tmp_path / "lake.sqlite", tmp_path / "data") as store:
        commit(store, "dup", ints(1))
        results: dict[str, Any] = {}
        _queued(store, ["ok1", "DUP", "ok2"], results)  # DUP clashes with dup
        assert isinstance(results["DUP"], StorageError)
        assert "case-insensitive" in str(results["DUP"])
        assert isinstance(results["ok1"], int) and isinstance(results["ok2"], int)
        assert store.read("ok1").num_rows == store.read("ok2").num_rows == 3
        assert store.read("dup").num_rows == 1


def test_an_unexpected_failure_in_a_group_ends_every_commit_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    with DuckLakeAssetStore(tmp_path / "lake.sqlite", tmp_path / "data") as store:
        commit(store, "first", ints(1))

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("a bug in the commit path")

        monkeypatch.setattr(store, "_commit_once", broken)
        results: dict[str, Exception] = {}

        def one(key: str) -> None:
            try:
                store.commit(key, ints(3), run_id="r", stage=key, attempt=1)
            except Exception as exc:
                results[key] = exc

        threads = [threading.Thread(target=one, args=(key,)) for key in "abc"]
        with store._lock:  # all three wait: the next holder makes them as one group
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 30
            while len(store._queue) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)  # none waits for ever
        kinds = sorted(type(e).__name__ for e in results.values())
        assert kinds == ["RuntimeError", "StorageError", "StorageError"]
        told = [str(e) for e in results.values() if isinstance(e, StorageError)]
        assert all("grouped with failed (RuntimeError" in t for t in told), told
