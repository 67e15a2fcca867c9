"""Snapshots recently streamed, kept in memory as Arrow batches: a snapshot never changes once
committed, so a second ``DoGet`` of it is served from memory at the speed of the network
instead of decoding Parquet again. Bounded in bytes, least recently used out first."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa


class SnapshotCache:
    """``(asset key, snapshot id) -> Arrow table``, at most ``max_bytes`` in all (0: off)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, max_bytes)
        self._tables: OrderedDict[tuple[str, int], pa.Table] = OrderedDict()
        self._sizes: dict[tuple[str, int], int] = {}  # bytes of every snapshot seen whole
        self._used = 0
        self._lock = threading.Lock()

    def get(self, key: str, snapshot: int) -> pa.Table | None:
        with self._lock:
            table = self._tables.get((key.lower(), snapshot))
            if table is not None:
                self._tables.move_to_end((key.lower(), snapshot))
            return table

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
        with self._lock:
            self._sizes[(key.lower(), snapshot)] = total
        if held is not None:
            self._put(key, snapshot, pa.Table.from_batches(held, schema=schema), total)

    def _put(self, key: str, snapshot: int, table: pa.Table, nbytes: int) -> None:
        name = (key.lower(), snapshot)
        with self._lock:
            if name in self._tables:
                return
            while self._tables and self._used + nbytes > self.max_bytes:
                old, _ = self._tables.popitem(last=False)
                self._used -= self._sizes.get(old, 0)
            self._tables[name] = table
            self._used += nbytes

    def clear(self) -> None:
        with self._lock:
            self._tables.clear()
            self._used = 0
