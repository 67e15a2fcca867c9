"""The recorder: writes a run's transitions to the metadata store on its own thread.

The runner hands over one batch per scheduling round and goes straight on; the recorder
commits whatever has queued up since its last commit in one transaction (group commit), so a
slow disk or a WAL checkpoint never stalls scheduling and there is no flush timer. Batches are
committed in order; a transition is durable once the commit that holds it returns, and
``drain`` waits for that.

The queue is bounded: once ``limit`` records are handed over and not yet committed, ``put``
blocks until a commit makes room (back-pressure: a runner far ahead of a slow database waits
for it instead of piling records up in memory). Nothing is ever dropped; a batch is always
taken when nothing is waiting, however large.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from klaw.errors import MetadataError, MetadataUnavailableError
from klaw.execution import threads
from klaw.metadata.records import Batch, EventRecord
from klaw.metadata.store import MetadataWriter
from klaw.observability import get_logger

_STOP = None
_log = get_logger("klaw.recorder")

DEFAULT_LIMIT = 10_000  # records handed over and not yet committed


def _size(batch: Batch) -> int:
    return (
        len(batch.events)
        + len(batch.attempts)
        + len(batch.runs)
        + len(batch.logs)
        + len(batch.metrics)
    )


class Recorder:
    def __init__(
        self,
        metadata: MetadataWriter,
        on_events: Callable[[list[EventRecord]], None] | None = None,
        *,
        outage: float = 300.0,
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        """``outage``: how long (seconds) a commit is retried while the database is
        unreachable before the run fails; everything waits, in order, meanwhile. ``limit``:
        how many records may wait for a commit before :meth:`put` blocks."""
        self._metadata = metadata
        self._on_events = on_events
        self._queue: queue.SimpleQueue[Batch | threading.Event | None] = queue.SimpleQueue()
        self._room = threading.Condition(threading.Lock())  # guards the two below
        self._pending = 0  # records handed over and not yet committed
        self._full = False  # a put waits for room
        self._thread: threads.Started | None = None
        self.error: BaseException | None = None
        self.outage = outage
        self.limit = limit

    def start(self) -> None:
        self._thread = threads.start(self._work, "klaw-recorder")

    def put(self, batch: Batch) -> None:
        """Hand ``batch`` over; blocks while ``limit`` records wait for a commit."""
        if self.error is not None:
            raise MetadataError(f"Recording the run failed: {self.error}") from self.error
        size = _size(batch)
        with self._room:
            while self._pending and self._pending + size > self.limit and self.error is None:
                self._full = True
                self._room.wait()
            self._pending += size
        self._queue.put(batch)

    def drain(self) -> None:
        """Wait until everything put so far is committed (raises if a commit failed)."""
        done = threading.Event()
        self._queue.put(done)
        done.wait()
        if self.error is not None:
            raise MetadataError(f"Recording the run failed: {self.error}") from self.error

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            pending: list[Batch] = []
            waiters: list[threading.Event] = []
            stop = False
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    pending.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if pending:
                if self.error is None:
                    self._commit(_merge(pending))
                with self._room:  # committed (or failed for good): room for the runner
                    self._pending -= sum(_size(b) for b in pending)
                    if self._full:
                        self._full = False
                        self._room.notify_all()
            for waiter in waiters:
                waiter.set()
            if stop:
                return

    def _commit(self, batch: Batch) -> None:
        wait, deadline = 0.1, time.monotonic() + self.outage
        while True:
            try:
                self._metadata.commit(batch)
                break
            except MetadataUnavailableError as exc:  # the database is away: hold on, in order
                if time.monotonic() >= deadline:
                    self.error = exc
                    return
                _log.warning("metadata unavailable; retrying", error=exc.message, wait=wait)
                time.sleep(wait)
                wait = min(wait * 2, 2.0)
            except BaseException as exc:  # reported to the runner through put/drain
                self.error = exc
                return
        if self._on_events is not None and batch.events:
            try:
                self._on_events(batch.events)
            except Exception:  # a display callback must not stop the recording
                self._on_events = None


def _merge(batches: list[Batch]) -> Batch:
    if len(batches) == 1:
        return batches[0]
    merged = Batch()
    attempts = {}
    runs = {}
    for b in batches:
        merged.events.extend(b.events)
        merged.logs.extend(b.logs)
        merged.metrics.extend(b.metrics)
        for a in b.attempts:
            attempts[(a.run_id, a.stage, a.attempt)] = a
        for r in b.runs:
            runs[r.run_id] = r
    merged.attempts = list(attempts.values())
    merged.runs = list(runs.values())
    return merged
