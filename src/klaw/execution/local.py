"""The local executor: a bounded pool of worker threads (the default).

Bounded, however large the fan-out: tasks queue, threads do not multiply. Threads start on
demand (a parked thread of an earlier run first, see ``klaw.execution.threads``), and a task
goes to the worker that went idle last, so a chain of stages keeps running on one warm thread
instead of rotating through the pool.

Stopping a running attempt raises ``StageStopped`` inside its thread at the next Python
instruction; a stage blocked inside native code is abandoned after a grace period (use the
process executor when work must be killed outright).
"""

from __future__ import annotations

import functools
import os
import queue
import threading
import time
from collections import deque

from klaw.execution import threads
from klaw.execution.executor import Deliver
from klaw.execution.invoke import StageStopped, invoke
from klaw.execution.lease import LeaseKeeper
from klaw.execution.task import AssetStoreFactory, Outcome, Phase, Started, Task
from klaw.execution.values import ValueStore


def default_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


class _Worker:
    __slots__ = ("abandoned", "inbox", "thread")

    def __init__(self) -> None:
        self.inbox: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self.thread: threads.Started | None = None
        self.abandoned = False


class ThreadExecutor:
    """Runs attempts on at most ``max_workers`` threads of this process."""

    def __init__(
        self,
        assets: AssetStoreFactory,
        max_workers: int | None = None,
        leases: LeaseKeeper | None = None,
    ) -> None:
        self._assets = assets
        self._leases = leases
        self._size = max_workers or default_workers()
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []  # live, not abandoned
        self._idle: list[_Worker] = []  # a stack: the last to go idle works next
        self._pending: deque[Task] = deque()
        self._running: dict[tuple[str, int], tuple[_Worker, int]] = {}  # key -> worker, ident
        self._stopping: set[tuple[str, int]] = set()
        self._deliver: Deliver | None = None
        self._values: ValueStore | None = None
        self._inline: tuple[tuple[str, int], int] | None = None  # task key, thread ident

    @property
    def capacity(self) -> int:
        return self._size

    def open(self, deliver: Deliver, values: ValueStore) -> None:
        self._deliver, self._values = deliver, values

    def submit(self, task: Task) -> None:
        with self._lock:
            if self._idle:
                worker = self._idle.pop()
            elif len(self._workers) < self._size:
                worker = self._spawn()
            else:
                self._pending.append(task)
                return
        worker.inbox.put(task)

    def _spawn(self) -> _Worker:
        worker = _Worker()
        self._workers.append(worker)
        worker.thread = threads.start(functools.partial(self._work, worker), "klaw-worker")
        return worker

    def _work(self, worker: _Worker) -> None:
        deliver, values = self._deliver, self._values
        assert deliver is not None and values is not None
        me = threading.get_ident()
        task = worker.inbox.get()
        while task is not None:
            outcome = None
            try:
                with self._lock:
                    self._running[task.key] = (worker, me)
                on_phase = None
                if task.stage.timeout is not None:
                    deliver(Started(task.stage.name, task.attempt, task.token))
                    on_phase = functools.partial(_phase, deliver, task)
                outcome = invoke(task, values, self._assets, self._leases, on_phase)
            except StageStopped:  # landed outside the stage's own frame: reported as stopped
                outcome = None
            with self._lock:
                self._running.pop(task.key, None)
                self._stopping.discard(task.key)
                nxt: Task | None = None
                if not worker.abandoned:
                    if self._pending:
                        nxt = self._pending.popleft()
                    else:
                        self._idle.append(worker)  # idle before delivering: ready for the next
            deliver(outcome if outcome is not None else stopped_outcome(task))
            if worker.abandoned:
                return  # a replacement has taken this thread's place
            task = nxt if nxt is not None else worker.inbox.get()

    def run_here(self, task: Task) -> Outcome:
        values = self._values
        assert values is not None
        try:
            with self._lock:
                self._inline = (task.key, threading.get_ident())
            outcome = invoke(task, values, self._assets, self._leases)
            with self._lock:  # a stop raised before this point lands inside the ``try``
                self._inline = None
                self._stopping.discard(task.key)
        except StageStopped:
            with self._lock:
                self._inline = None
                self._stopping.discard(task.key)
            outcome = stopped_outcome(task)
        return outcome

    def stop(self, task: Task) -> None:
        with self._lock:
            queued = task in self._pending
            if queued:
                self._pending.remove(task)
        if queued:  # never started: it ends here
            assert self._deliver is not None
            self._deliver(stopped_outcome(task))
            return
        with self._lock:
            entry = self._running.get(task.key)
            ident = entry[1] if entry is not None else None
            if self._inline is not None and self._inline[0] == task.key:
                ident = self._inline[1]
            if ident is not None and task.key not in self._stopping:
                self._stopping.add(task.key)
                _raise_in(ident)

    def abandon(self, task: Task) -> None:
        with self._lock:
            entry = self._running.pop(task.key, None)
            if entry is None:
                return
            worker = entry[0]
            worker.abandoned = True
            self._workers.remove(worker)
            nxt = self._pending.popleft() if self._pending else None
            replacement = self._spawn() if nxt is not None else None
        if replacement is not None and nxt is not None:
            replacement.inbox.put(nxt)

    def close(self) -> None:
        with self._lock:
            for key, (_, ident) in self._running.items():
                if key not in self._stopping:
                    self._stopping.add(key)
                    _raise_in(ident)
            workers = list(self._workers)
            self._pending.clear()
        for worker in workers:
            worker.inbox.put(None)
        for worker in workers:
            if worker.thread is not None:
                worker.thread.join(timeout=5)
        with self._lock:
            self._workers.clear()
            self._idle.clear()


def _raise_in(ident: int) -> None:
    import ctypes  # only to stop a stage: not at start

    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), ctypes.py_object(StageStopped)
    )


def _phase(deliver: Deliver, task: Task, phase: Phase) -> None:
    deliver(Started(task.stage.name, task.attempt, task.token, phase))


def stopped_outcome(task: Task) -> Outcome:
    """The outcome of an attempt that was stopped before it could report anything."""
    now = time.time()
    return Outcome(task.stage.name, task.attempt, task.token, now, now, "stopped", stopped=True)
