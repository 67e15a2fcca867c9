"""The asset store contract: every backend's test class subclasses ``AssetStoreContract`` and
provides two fixtures: ``store`` (an empty store) and ``reopen`` (a callable that opens another
store on the same location, as a later process would)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from klaw.errors import AssetNotFoundError, StorageError
from klaw.storage.store import AssetStore

UTC = dt.UTC


def mixed_table() -> pa.Table:
    """Several column types, with a null in every column."""
    return pa.table(
        {
            "id": pa.array([1, 2, None], pa.int64()),
            "price": pa.array([1.5, None, -2.25], pa.float64()),
            "name": pa.array(["a", None, "ç日本"], pa.string()),
            "at": pa.array(
                [dt.datetime(2024, 1, 1, 12), None, dt.datetime(1999, 12, 31, 23, 59, 59, 5)],
                pa.timestamp("us"),
            ),
            "at_utc": pa.array(
                [None, dt.datetime(2024, 6, 1, tzinfo=UTC), dt.datetime(2000, 1, 1, tzinfo=UTC)],
                pa.timestamp("us", tz="UTC"),
            ),
            "flag": pa.array([True, False, None], pa.bool_()),
            "day": pa.array([dt.date(2024, 2, 29), None, dt.date(1970, 1, 1)], pa.date32()),
        }
    )


def ints(n: int, start: int = 0) -> pa.Table:
    return pa.table({"a": pa.array(range(start, start + n), pa.int64())})


def commit(
    store: AssetStore, key: str, table: pa.Table, run_id: str = "run1", attempt: int = 1
) -> int:
    return store.commit(key, table, run_id=run_id, stage=f"stage_{key}", attempt=attempt)


class AssetStoreContract:
    # -- round trips --------------------------------------------------------------------------

    def test_commit_and_read_round_trip_several_types(self, store: AssetStore) -> None:
        table = mixed_table()
        commit(store, "orders", table)
        read = store.read("orders")
        assert read.schema.names == table.schema.names
        assert read.equals(table), read.to_pydict()

    def test_read_with_a_limit(self, store: AssetStore) -> None:
        first = commit(store, "orders", ints(100))
        commit(store, "orders", ints(50, start=1000))
        assert store.read("orders", limit=3).num_rows == 3
        assert store.read("orders", first, limit=2).column("a").to_pylist() == [0, 1]
        empty = store.read("orders", limit=0)
        assert empty.num_rows == 0 and empty.schema.names == ["a"]

    def test_read_by_snapshot_returns_that_snapshot(self, store: AssetStore) -> None:
        first = commit(store, "orders", ints(3))
        assert store.read("orders", first).column("a").to_pylist() == [0, 1, 2]

    def test_empty_table_commits_and_reads_back_with_its_columns(self, store: AssetStore) -> None:
        empty = pa.table({"a": pa.array([], pa.int64()), "b": pa.array([], pa.string())})
        snapshot = commit(store, "nothing", empty)
        read = store.read("nothing")
        assert read.num_rows == 0
        assert read.schema.names == ["a", "b"]
        assert [s.rows for s in store.snapshots("nothing")] == [0]
        assert store.snapshots("nothing")[-1].snapshot == snapshot

    def test_empty_after_empty_is_still_a_new_snapshot(self, store: AssetStore) -> None:
        empty = pa.table({"a": pa.array([], pa.int64())})
        first = commit(store, "nothing", empty)
        second = commit(store, "nothing", empty, run_id="run2")
        assert second > first
        assert [s.snapshot for s in store.snapshots("nothing")] == [first, second]
        assert [s.run_id for s in store.snapshots("nothing")] == ["run1", "run2"]

    def test_emptying_a_table_and_filling_it_again(self, store: AssetStore) -> None:
        full = commit(store, "t", ints(5))
        empty = commit(store, "t", ints(0))
        again = commit(store, "t", ints(2, start=7))
        assert store.read("t").column("a").to_pylist() == [7, 8]
        assert store.read("t", empty).num_rows == 0
        assert store.read("t", full).num_rows == 5
        assert [s.rows for s in store.snapshots("t")] == [5, 0, 2]
        assert store.snapshots("t")[-1].snapshot == again

    # -- snapshots and time travel ------------------------------------------------------------

    def test_second_commit_makes_a_second_snapshot_and_time_travel_sees_the_first(
        self, store: AssetStore
    ) -> None:
        first = commit(store, "orders", ints(3), run_id="run1")
        second = commit(store, "orders", ints(2, start=10), run_id="run2", attempt=2)
        assert second > first
        assert store.read("orders").column("a").to_pylist() == [10, 11]
        assert store.read("orders", second).column("a").to_pylist() == [10, 11]
        assert store.read("orders", first).column("a").to_pylist() == [0, 1, 2]

    def test_snapshots_lists_each_commit_oldest_first_with_rows_and_tags(
        self, store: AssetStore
    ) -> None:
        first = commit(store, "orders", ints(3), run_id="run1")
        second = store.commit("orders", ints(5), run_id="run2", stage="load", attempt=3)
        snaps = store.snapshots("orders")
        assert [s.snapshot for s in snaps] == [first, second]
        assert [s.rows for s in snaps] == [3, 5]
        assert [(s.run_id, s.stage, s.attempt) for s in snaps] == [
            ("run1", "stage_orders", 1),
            ("run2", "load", 3),
        ]
        assert all(s.key == "orders" for s in snaps)
        assert snaps[0].schema == {"a": "int64"}
        assert snaps[0].committed_at <= snaps[1].committed_at
        assert abs(snaps[1].committed_at - dt.datetime.now(UTC).timestamp()) < 300

    def test_each_commit_adds_exactly_one_snapshot(self, store: AssetStore) -> None:
        tables = [ints(3), ints(4), pa.table({"b": ["x"]}), ints(0), ints(0), ints(1)]
        seen: list[int] = []
        for i, table in enumerate(tables):
            snapshot = commit(store, "orders", table, run_id=f"run{i}")
            seen.append(snapshot)
            snaps = store.snapshots("orders")
            assert len(snaps) == i + 1
            assert [s.snapshot for s in snaps] == seen
        assert seen == sorted(set(seen))

    def test_other_assets_commits_are_not_this_assets_snapshots(self, store: AssetStore) -> None:
        mine = commit(store, "orders", ints(3))
        theirs = commit(store, "customers", ints(1))
        mine_again = commit(store, "orders", ints(4))
        assert [s.snapshot for s in store.snapshots("orders")] == [mine, mine_again]
        assert [s.snapshot for s in store.snapshots("customers")] == [theirs]

    def test_schema_change_works_and_old_snapshot_stays_readable(self, store: AssetStore) -> None:
        old = commit(store, "orders", ints(3))
        new_table = pa.table({"name": ["x", "y"], "price": [1.0, 2.0]})
        new = commit(store, "orders", new_table)
        assert store.read("orders").equals(new_table)
        assert store.read("orders", old).equals(ints(3))
        assert store.read("orders", new).equals(new_table)
        snaps = store.snapshots("orders")
        assert [s.schema for s in snaps] == [
            {"a": "int64"},
            {"name": "string", "price": "double"},
        ]
        assert [s.rows for s in snaps] == [3, 2]

    def test_column_type_change_is_a_schema_change(self, store: AssetStore) -> None:
        old = commit(store, "orders", ints(2))
        new_table = pa.table({"a": pa.array(["0", "1"], pa.string())})
        commit(store, "orders", new_table)
        assert store.read("orders").equals(new_table)
        assert store.read("orders", old).equals(ints(2))

    # -- errors -------------------------------------------------------------------------------

    def test_unknown_key_names_the_key_and_the_closest_ones(self, store: AssetStore) -> None:
        commit(store, "orders", ints(1))
        commit(store, "customers", ints(1))
        with pytest.raises(AssetNotFoundError) as info:
            store.read("ordrs")
        message = str(info.value)
        assert "'ordrs'" in message
        assert "'orders'" in message
        assert "customers" not in message
        assert "klaw assets list" in message

    def test_unknown_key_in_an_empty_store(self, store: AssetStore) -> None:
        with pytest.raises(AssetNotFoundError, match="'orders'"):
            store.read("orders")
        with pytest.raises(AssetNotFoundError, match="'orders'"):
            store.snapshots("orders")
        with pytest.raises(AssetNotFoundError, match="'orders'"):
            store.read("orders", 1)

    def test_unknown_snapshot_names_it_and_lists_the_assets_snapshots(
        self, store: AssetStore
    ) -> None:
        first = commit(store, "orders", ints(1))
        other = commit(store, "customers", ints(1))
        second = commit(store, "orders", ints(2))
        for missing in (other, second + 1000, -1):
            with pytest.raises(AssetNotFoundError) as info:
                store.read("orders", missing)
            message = str(info.value)
            assert "'orders'" in message
            assert str(missing) in message
            assert f"{first}, {second}" in message

    def test_invalid_keys_are_rejected_by_name(self, store: AssetStore) -> None:
        for bad in ["", "1abc", "a-b", "a b", 'x"; DROP TABLE y; --', "é", "a" * 64, "a.b"]:
            with pytest.raises(StorageError) as info:
                commit(store, bad, ints(1))
            assert repr(bad) in str(info.value)
            with pytest.raises(StorageError):
                store.read(bad)
            with pytest.raises(StorageError):
                store.snapshots(bad)
        assert store.assets() == []
        commit(store, "a" * 63, ints(1))
        commit(store, "_Mixed_Case_9", ints(1))
        assert [a.key for a in store.assets()] == ["_Mixed_Case_9", "a" * 63]

    def test_a_non_table_is_rejected(self, store: AssetStore) -> None:
        not_a_table: Any = {"a": [1]}
        with pytest.raises(StorageError, match="'orders'"):
            store.commit("orders", not_a_table, run_id="r", stage="s", attempt=1)

    # -- listing ------------------------------------------------------------------------------

    def test_assets_lists_every_asset_sorted_with_its_latest_snapshot(
        self, store: AssetStore
    ) -> None:
        assert store.assets() == []
        commit(store, "orders", ints(3))
        customers = commit(store, "customers", pa.table({"name": ["a", "b"]}))
        orders = commit(store, "orders", ints(5))
        assets = store.assets()
        assert [a.key for a in assets] == ["customers", "orders"]
        by_key = {a.key: a for a in assets}
        assert by_key["orders"].latest_snapshot == orders
        assert by_key["orders"].snapshots == 2
        assert by_key["orders"].rows == 5
        assert by_key["orders"].schema == {"a": "int64"}
        assert by_key["customers"].latest_snapshot == customers
        assert by_key["customers"].snapshots == 1
        assert by_key["customers"].rows == 2
        assert by_key["customers"].schema == {"name": "string"}
        latest = store.snapshots("orders")[-1]
        assert by_key["orders"].updated_at == latest.committed_at

    # -- concurrency and lifetime -------------------------------------------------------------

    def test_concurrent_commits_from_four_threads_all_land(self, store: AssetStore) -> None:
        per_thread = 5
        errors: list[BaseException] = []
        snapshots: dict[str, list[int]] = {}
        start = threading.Barrier(5)

        def work(key: str) -> None:
            try:
                start.wait()
                for i in range(per_thread):
                    snapshot = commit(store, key, ints(i + 1), run_id=f"run{i}")
                    snapshots.setdefault(key, []).append(snapshot)
                    assert store.read(key).num_rows >= 1
            except BaseException as exc:
                errors.append(exc)

        def read_while_committing() -> None:
            try:
                start.wait()
                for _ in range(per_thread * 2):
                    store.assets()
            except BaseException as exc:
                errors.append(exc)

        keys = [f"asset_{n}" for n in range(4)]
        threads = [threading.Thread(target=work, args=(key,)) for key in keys]
        threads.append(threading.Thread(target=read_while_committing))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
        assert errors == [], [f"{type(e).__name__}: {e}" for e in errors]
        # each asset's snapshots are its own, increasing; assets committed at once may share
        # one lake snapshot (a group commit: one catalog transaction)
        for ids in snapshots.values():
            assert ids == sorted(set(ids)) and len(ids) == per_thread
        for key in keys:
            snaps = store.snapshots(key)
            assert [s.snapshot for s in snaps] == snapshots[key]
            assert [s.rows for s in snaps] == list(range(1, per_thread + 1))
            assert store.read(key).num_rows == per_thread

    def test_reopened_store_sees_everything(
        self, store: AssetStore, reopen: Callable[[], AssetStore]
    ) -> None:
        first = commit(store, "orders", ints(3))
        second = commit(store, "orders", mixed_table())
        commit(store, "customers", ints(1))
        before = (store.assets(), store.snapshots("orders"))
        store.close()
        again = reopen()
        try:
            assert (again.assets(), again.snapshots("orders")) == before
            assert again.read("orders").equals(mixed_table())
            assert again.read("orders", first).equals(ints(3))
            third = commit(again, "orders", ints(1))
            assert [s.snapshot for s in again.snapshots("orders")] == [first, second, third]
        finally:
            again.close()

    def test_close_is_idempotent_and_a_closed_store_says_so(self, store: AssetStore) -> None:
        commit(store, "orders", ints(1))
        store.close()
        store.close()
        with pytest.raises(StorageError, match="closed"):
            store.read("orders")
        with pytest.raises(StorageError, match="closed"):
            commit(store, "orders", ints(1))
