"""The Flight server's snapshot cache: bounded in Arrow bytes, least recently used out first."""

from __future__ import annotations

import pyarrow as pa

from klaw.api.flight.cache import SnapshotCache


def _table(rows: int) -> pa.Table:
    return pa.table({"a": pa.array(range(rows), pa.int64())})  # 8 bytes a row


def _stream(cache: SnapshotCache, key: str, snapshot: int, table: pa.Table) -> pa.Table:
    """Stream ``table`` through the cache as ``DoGet`` does; what the client received."""
    batches = list(cache.keep(key, snapshot, table.schema, table.to_batches(max_chunksize=10)))
    return pa.Table.from_batches(batches, schema=table.schema)


def test_a_streamed_snapshot_is_kept_and_served_again() -> None:
    cache = SnapshotCache(1000)
    table = _table(20)
    assert _stream(cache, "Orders", 1, table).equals(table)
    kept = cache.get("orders", 1)  # keys are case-insensitive, as asset keys are
    assert kept is not None and kept.equals(table)
    assert cache.size("ORDERS", 1) == 160
    assert cache.get("orders", 2) is None


def test_a_snapshot_larger_than_the_cache_is_streamed_whole_but_not_kept() -> None:
    cache = SnapshotCache(100)
    table = _table(20)  # 160 bytes
    assert _stream(cache, "big", 1, table).equals(table)
    assert cache.get("big", 1) is None
    assert cache.size("big", 1) == 160  # its size is still known


def test_the_least_recently_used_snapshot_goes_first() -> None:
    cache = SnapshotCache(400)  # room for two tables of 160 bytes
    for snapshot in (1, 2):
        _stream(cache, "t", snapshot, _table(20))
    assert cache.get("t", 1) is not None  # 1 is now the most recently used
    _stream(cache, "t", 3, _table(20))
    assert cache.get("t", 2) is None
    assert cache.get("t", 1) is not None and cache.get("t", 3) is not None


def test_a_cache_of_zero_bytes_keeps_nothing_and_clear_empties_it() -> None:
    off = SnapshotCache(0)
    _stream(off, "t", 1, _table(5))
    assert off.get("t", 1) is None
    cache = SnapshotCache(1000)
    _stream(cache, "t", 1, _table(5))
    cache.clear()
    assert cache.get("t", 1) is None
