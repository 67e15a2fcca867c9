"""The local executor: a fixed pool of worker threads (the default).

A fixed pool, however large the fan-out: tasks queue, threads do not multiply. Stopping a
running attempt raises ``StageStopped`` inside its thread at the next Python instruction; a
stage blocked inside native code is abandoned after a grace period (use the process executor
when work must be killed outright).
"""

from __future__ import annotations

import ctypes
import os
import queue
import threading

from klaw.execution.executor import Deliver
from klaw.execution.invoke import StageStopped, invoke
from klaw.execution.task import AssetStoreFactory, Outcome, Started, Task
from klaw.execution.values import ValueStore


def default_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


class ThreadExecutor:
    """Runs attempts on ``max_workers`` threads of this process."""

    def __init__(self, assets: AssetStoreFactory, max_workers: int | None = None) -> None:
        self._assets = assets
        self._size = max_workers or default_workers()
        self._tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._running: dict[tuple[str, int], int] = {}  # task key -> thread ident
        self._stopping: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._deliver: Deliver | None = None
        self._values: ValueStore | None = None

    @property
    def capacity(self) -> int:
        return self._size

    def open(self, deliver: Deliver, values: ValueStore) -> None:
        self._deliver, self._values = deliver, values
        for _ in range(self._size):
            self._spawn()

    def _spawn(self) -> None:
        thread = threading.Thread(target=self._work, name="klaw-worker", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        deliver, values = self._deliver, self._values
        assert deliver is not None and values is not None
        me = threading.get_ident()
        while (task := self._tasks.get()) is not None:
            outcome = None
            try:
                with self._lock:
                    self._running[task.key] = me
                if task.stage.timeout is not None:
                    deliver(Started(task.stage.name, task.attempt, task.token))
                outcome = invoke(task, values, self._assets)
            except StageStopped:  # landed outside the stage's own frame
                pass
            with self._lock:
                abandoned = self._running.pop(task.key, None) != me
                self._stopping.discard(task.key)
            if outcome is None:
                outcome = stopped_outcome(task)
            deliver(outcome)
            if abandoned:  # a replacement thread has taken this one's place
                return

    def submit(self, task: Task) -> None:
        self._tasks.put(task)

    def stop(self, task: Task) -> None:
        with self._lock:
            ident = self._running.get(task.key)
            if ident is not None and task.key not in self._stopping:
                self._stopping.add(task.key)
                _raise_in(ident)

    def abandon(self, task: Task) -> None:
        with self._lock:
            if self._running.pop(task.key, None) is None:
                return
        self._spawn()

    def close(self) -> None:
        with self._lock:
            for key, ident in self._running.items():
                if key not in self._stopping:
                    self._stopping.add(key)
                    _raise_in(ident)
        for _ in self._threads:
            self._tasks.put(None)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()


def _raise_in(ident: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), ctypes.py_object(StageStopped)
    )


def stopped_outcome(task: Task) -> Outcome:
    """The outcome of an attempt that was stopped before it could report anything."""
    import time

    now = time.time()
    return Outcome(task.stage.name, task.attempt, task.token, now, now, "stopped", stopped=True)
