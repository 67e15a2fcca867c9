"""Waiting for a run's next write: the one loop every follower of a run waits in.

A :class:`Wakeups` belongs to one database in this process. Writers tell it which runs they
wrote (:meth:`Wakeups.notify`): the SQLite store after each durable commit of this process, the
Postgres listener for each ``NOTIFY`` it receives. When writes may have been missed (a listener
connected or lost its connection) :meth:`Wakeups.notify_all` makes every waiter look again.

:meth:`Wakeups.wait` is the bounded poll, written once: it subscribes to the run *before* it
calls ``ready()``, so a write that lands between the caller's last read and the wait is seen by
that first call, and a write after it wakes the waiter. Between wake-ups it re-checks every
``poll()`` seconds (writers in other processes of a SQLite file; a Postgres listener that is
reconnecting), never longer than the caller's timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Final

from klaw.metadata.records import Batch

SQLITE_POLL: Final = 0.1  # seconds between checks of a SQLite file another process may write


class _Slot:
    """The waiters of one run: a wake-up counter and their condition (on the shared lock)."""

    __slots__ = ("cond", "count", "waiters")

    def __init__(self, lock: threading.Lock) -> None:
        self.cond = threading.Condition(lock)
        self.count = 0
        self.waiters = 0


class Wakeups:
    """The wake-ups of the runs of one database in this process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._epoch = 0  # moved by notify_all

    @property
    def waiting(self) -> int:
        """How many runs have a waiter now."""
        with self._lock:
            return len(self._slots)

    def notify(self, run_ids: Iterable[str]) -> None:
        """Wake the waiters of these runs (those nobody waits for cost nothing)."""
        with self._lock:
            if not self._slots:
                return
            for run_id in set(run_ids) & self._slots.keys():
                slot = self._slots[run_id]
                slot.count += 1
                slot.cond.notify_all()

    def notify_all(self) -> None:
        """Wake every waiter: something may have been written that no one was told of."""
        with self._lock:
            self._epoch += 1
            for slot in self._slots.values():
                slot.cond.notify_all()

    def wait(
        self,
        run_id: str,
        ready: Callable[[], bool],
        timeout: float,
        poll: Callable[[], float],
    ) -> bool:
        """Call ``ready()`` now and after each wake-up of ``run_id`` (or every ``poll()``
        seconds) until it returns True (then True) or ``timeout`` seconds have passed (then
        False). An error ``ready()`` raises propagates."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            slot = self._slots.get(run_id)
            if slot is None:
                slot = self._slots[run_id] = _Slot(self._lock)
            slot.waiters += 1
            seen = (self._epoch, slot.count)
        try:
            while True:
                if ready():
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                interval = min(left, poll())
                with self._lock:
                    if (self._epoch, slot.count) == seen:
                        slot.cond.wait(interval)
                    seen = (self._epoch, slot.count)
        finally:
            with self._lock:
                slot.waiters -= 1
                if not slot.waiters:
                    del self._slots[run_id]


def written(batch: Batch) -> Iterator[str]:
    """The ids of the runs a batch writes to (with repeats): whose followers to wake."""
    for records in (batch.events, batch.logs, batch.attempts, batch.runs):
        for record in records:
            yield record.run_id


_lock: Final = threading.Lock()
_files: dict[str, Wakeups] = {}


def for_file(path: Path | str) -> Wakeups:
    """The wake-ups of a SQLite database file, shared by every store of it in this process
    (``:memory:``: a new one, as each such store is a database of its own)."""
    if str(path) == ":memory:":
        return Wakeups()
    key = str(Path(path).resolve())
    with _lock:
        found = _files.get(key)
        if found is None:
            found = _files[key] = Wakeups()
        return found
