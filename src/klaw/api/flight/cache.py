"""Snapshots recently streamed, kept in memory as Arrow batches: a snapshot never changes once
committed, so a second ``DoGet`` of it is served from memory at the speed of the network
instead of decoding Parquet again. Bounded in bytes, least recently used out first
(``cachetools.LRUCache`` weighing each snapshot by its Arrow bytes)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa
    from cachetools import LRUCache

    Entry = tuple[pa.Table, int]  # a snapshot's table and its Arrow bytes


class SnapshotCache:
    """``(asset key, snapshot id) -> Arrow table``, at most ``max_bytes`` in all (0: off)."""

    def __init__(self, max_bytes: int) -> None:
        from cachetools import LRUCache

        self.max_bytes = max(0, max_bytes)
        self._tables: LRUCache[tuple[str, int], Entry] = LRUCache(
            maxsize=self.max_bytes, getsizeof=_nbytes
        )
        self._sizes: dict[tuple[str, int], int] = {}  # bytes of every snapshot seen whole
        self._lock = threading.Lock()  # cachetools caches are not thread-safe

    def get(self, key: str, snapshot: int) -> pa.Table | None:
        with self._lock:
            entry = self._tables.get((key.lower(), snapshot))  # a hit makes it the newest
        return None if entry is None else entry[0]

    def size(self, key: str, snapshot: int) -> int | None:
        """The Arrow bytes of a snapshot this server has streamed whole, cached or not."""
        with self._lock:
            return self._sizes.get((key.lower(), snapshot))

    def keep(
        self, key: str, snapshot: int, schema: pa.Schema, batches: Iterable[pa.RecordBatch]
    ) -> Iterator[pa.RecordBatch]:
        """Pass ``batches`` on; when all of them went through and fit, keep them."""
        import pyarrow as pa

        held: list[pa.RecordBatch] | None = []
        total = 0
        for batch in batches:
            total += batch.nbytes
            if held is not None:
                held.append(batch)
                if total > self.max_bytes:
                    held = None  # too large to keep: stream it, remember only its size
            yield batch
        name = (key.lower(), snapshot)
        with self._lock:
            self._sizes[name] = total
        if held is None:
            return
        table = pa.Table.from_batches(held, schema=schema)
        with self._lock:
            if name not in self._tables:  # the least recently used go until it fits
                self._tables[name] = (table, total)

    def clear(self) -> None:
        with self._lock:
            self._tables.clear()


def _nbytes(entry: Entry) -> int:
    return entry[1]
