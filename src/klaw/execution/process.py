"""The process executor: stages run in a pool of worker processes.

Each worker is its own process group, so stopping an attempt (cancel or timeout) kills the
worker and everything it started, then a fresh worker takes its place. Values cross the
process boundary pickled (Arrow tables travel as Arrow buffers); asset snapshots are committed
by the worker that ran the stage.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from klaw import telemetry
from klaw.execution.executor import Deliver
from klaw.execution.invoke import invoke
from klaw.execution.lease import LeaseKeeper
from klaw.execution.local import default_workers, stopped_outcome
from klaw.execution.task import AssetStoreFactory, InputRef, Outcome, Phase, Started, Task
from klaw.execution.values import ValueStore
from klaw.failpoints import failpoint


def _worker_main(
    conn: Connection, assets: AssetStoreFactory, leases: LeaseKeeper | None = None
) -> None:
    os.setpgrp()  # its own group: a stop kills the stage's children too
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what stops
    if leases is not None:
        leases.watch_parent()  # orphaned by a killed coordinator: stop, do not run on
    values = ValueStore()
    while True:
        try:
            message = conn.recv()
        except EOFError:
            telemetry.flush()  # a worker process runs no atexit: its spans leave now
            return
        except Exception as exc:  # the task could not be loaded here (e.g. stage not found)
            conn.send(("load_error", f"{type(exc).__name__}: {exc}"))
            continue
        if message is None:
            telemetry.flush()
            return
        task, inputs = message
        for upstream, value in inputs.items():
            values.put(upstream, value)
        on_phase = None
        if task.stage.timeout is not None:
            conn.send(("phase", Phase.LOAD.value))
            on_phase = functools.partial(_send_phase, conn)
        failpoint("worker_claimed")
        outcome = invoke(task, values, assets, leases, on_phase)
        if task.keep_value and outcome.ok:
            outcome.value = values.get(task.stage.name)
        for name in [*inputs, task.stage.name]:
            values.release(name)
        conn.send(outcome)


def _send_phase(conn: Connection, phase: Phase) -> None:
    conn.send(("phase", phase.value))


class _Worker:
    def __init__(self, ctx: Any, assets: AssetStoreFactory, leases: LeaseKeeper | None) -> None:
        self.conn, child = ctx.Pipe()
        self.process: BaseProcess = ctx.Process(
            target=_worker_main, args=(child, assets, leases), name="klaw-worker", daemon=True
        )
        self.process.start()
        child.close()
        self.task: Task | None = None
        self.killed = False


class ProcessExecutor:
    """Runs attempts in ``max_workers`` worker processes (started with ``spawn``)."""

    def __init__(
        self,
        assets: AssetStoreFactory,
        max_workers: int | None = None,
        leases: LeaseKeeper | None = None,
    ) -> None:
        self._assets = assets
        self._leases = leases
        self._size = max_workers or min(default_workers(), os.cpu_count() or 1)
        self._ctx = multiprocessing.get_context("spawn")
        self._idle: list[_Worker] = []
        self._pending: list[Task] = []
        self._by_task: dict[tuple[str, int], _Worker] = {}
        self._lock = threading.Lock()
        self._deliver: Deliver | None = None
        self._values: ValueStore | None = None
        self._closed = False

    @property
    def capacity(self) -> int:
        return self._size

    def open(self, deliver: Deliver, values: ValueStore) -> None:
        self._deliver, self._values = deliver, values

    def submit(self, task: Task) -> None:
        with self._lock:
            worker = self._idle.pop() if self._idle else None
            if worker is None and len(self._by_task) >= self._size:
                self._pending.append(task)
                return
        self._start(worker or _Worker(self._ctx, self._assets, self._leases), task)

    def _start(self, worker: _Worker, task: Task) -> None:
        assert self._values is not None
        inputs = {i.upstream: self._values.get(i.upstream) for i in task.inputs if _local(i)}
        with self._lock:
            worker.task = task
            self._by_task[task.key] = worker
        worker.conn.send((task, inputs))
        threading.Thread(target=self._wait, args=(worker, task), daemon=True).start()

    def _wait(self, worker: _Worker, task: Task) -> None:
        assert self._deliver is not None
        try:
            received = worker.conn.recv()
            while isinstance(received, tuple) and received[0] == "phase":
                phase = Phase(received[1])
                self._deliver(Started(task.stage.name, task.attempt, task.token, phase))
                received = worker.conn.recv()
            if isinstance(received, tuple):  # the worker could not load the task
                now = time.time()
                received = Outcome(
                    task.stage.name,
                    task.attempt,
                    task.token,
                    now,
                    now,
                    received[1],
                    retryable=False,
                )
            outcome: Outcome = received
        except (EOFError, OSError):
            worker.process.join(timeout=5)
            if worker.killed:
                outcome = stopped_outcome(task)
            else:
                now = time.time()
                outcome = Outcome(
                    task.stage.name,
                    task.attempt,
                    task.token,
                    now,
                    now,
                    f"worker process died (exit code {worker.process.exitcode})",
                    lost=True,
                )
            worker = _Worker(self._ctx, self._assets, self._leases) if not self._closed else worker
            worker.task = None
        with self._lock:
            self._by_task.pop(task.key, None)
            worker.task = None
            nxt = self._pending.pop(0) if self._pending and not self._closed else None
            if nxt is None and not worker.killed and not self._closed:
                self._idle.append(worker)
        self._deliver(outcome)
        if nxt is not None:
            self._start(worker, nxt)

    def stop(self, task: Task) -> None:
        with self._lock:
            worker = self._by_task.get(task.key)
            if worker is None or worker.killed:
                return
            worker.killed = True
        _kill(worker)

    def abandon(self, task: Task) -> None:
        """A killed process cannot linger: nothing to abandon beyond what ``stop`` did."""

    def close(self) -> None:
        with self._lock:
            self._closed = True
            busy = list(self._by_task.values())
            idle, self._idle = self._idle, []
            self._pending.clear()
        for worker in busy:
            worker.killed = True
            _kill(worker)
        for worker in idle:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in [*busy, *idle]:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                _kill(worker)


def _local(item: InputRef) -> bool:
    return item.ref is None


def _kill(worker: _Worker) -> None:
    """Kill the worker and everything it started (its process group, once it made one)."""
    pid = worker.process.pid
    if pid is None:
        return
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)
