"""Leases: how a process running stage attempts proves they are still alive, and learns when
one of them has been given up.

The runner records each attempt ``running`` with a lease that lasts ``ttl`` seconds. Every
process that runs attempts (the runner's own for the thread executor; each worker process for
the process and Ray executors) has one :class:`LeaseKeeper`: a daemon thread that renews the
leases of the attempts running there every ``ttl / 3`` seconds, in one statement. A lease that
is not renewed (the worker was killed, stopped, or its machine is gone) runs out; the runner
then ends the attempt ``failed`` and starts a new one with a new token. From then on the old
attempt is *fenced*: the keeper's renewals report it, :meth:`LeaseKeeper.check` (called just
before an asset snapshot is committed) refuses it, and the runner drops its outcome and logs.

Nothing here is on a stage's hot path: holding and releasing a lease are dictionary updates;
``check`` reads the clock and only asks the database when the last renewal is older than
half the lease.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from klaw.errors import KlawError
from klaw.errors import LeaseLostError as LeaseLostError  # noqa: PLC0414  (re-export)
from klaw.execution.task import Task
from klaw.metadata.records import Lease
from klaw.metadata.store import LeaseStore
from klaw.observability import get_logger

_log = get_logger("klaw.lease")


@dataclass(slots=True)
class _Held:
    task: Task
    valid_until: float  # monotonic: until then the lease is surely still held
    fenced: bool = False

    @property
    def lease(self) -> Lease:
        task = self.task
        return Lease(task.run_id, task.stage.name, task.attempt, task.token)


class LeaseKeeper:
    """Renews the leases of the attempts running in this process. Picklable: a worker
    process gets its own copy, which opens its own store and thread on first use."""

    def __init__(self, store: Callable[[], LeaseStore], ttl: float) -> None:
        self.ttl = ttl
        self._store_factory = store
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, _Held] = {}  # id(task) -> its lease, while the task runs here
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._parent: int | None = None
        self._opened: LeaseStore | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"ttl": self.ttl, "store": self._store_factory}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.ttl, self._store_factory = state["ttl"], state["store"]
        self._reset()

    # -- holding -------------------------------------------------------------------------------
    def hold(self, task: Task) -> None:
        """``task`` runs here from now on: keep its lease alive. When the hand-off took most
        of the lease (a slow worker start), the lease is renewed right away, and an attempt
        already given up raises :class:`LeaseLostError` before it starts.

        Holding and releasing are single dictionary operations (atomic under the GIL), so a
        stage pays about a microsecond for its lease."""
        until = task.lease_until
        left = self.ttl if until is None else until - time.time()
        held = _Held(task, time.monotonic() + left / 2)
        self._held[id(task)] = held
        if self._thread is None:
            self._start()
        if left < self.ttl / 2:
            held.valid_until = 0.0
            self.check(task)  # asks the database now

    def release(self, task: Task) -> None:
        self._held.pop(id(task), None)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="klaw-leases", daemon=True)
                self._thread.start()

    def check(self, task: Task) -> None:
        """Raise :class:`LeaseLostError` unless ``task`` still holds its lease. Asks the
        database only when the last renewal is older than half the lease."""
        held = self._held.get(id(task))
        if held is None:
            return
        if not held.fenced and time.monotonic() < held.valid_until:
            return
        if not held.fenced:
            started = time.monotonic()
            try:
                lost = self._store().renew_leases([held.lease], time.time() + self.ttl)
            except KlawError as exc:
                raise LeaseLostError(
                    f"Stage {task.stage.name!r} attempt {task.attempt} could not confirm its "
                    f"lease ({exc.message}); nothing was committed.",
                    hint="The attempt is retried once the metadata store is reachable.",
                ) from exc
            held.fenced = bool(lost)
            held.valid_until = started + self.ttl / 2
        if held.fenced:
            raise LeaseLostError(
                f"Stage {task.stage.name!r} attempt {task.attempt} of run {task.run_id} lost its "
                f"lease (no heartbeat for {self.ttl:g} s); another attempt has the stage, so "
                "nothing of this one is kept.",
            )

    def watch_parent(self) -> None:
        """For a worker process: when the process that started it dies, stop everything this
        worker runs (its whole process group), so nothing runs on without an owner."""
        self._parent = os.getppid()

    # -- the renewal thread ----------------------------------------------------------------------
    def _store(self) -> LeaseStore:
        if self._opened is None:
            self._opened = self._store_factory()
        return self._opened

    def _run(self) -> None:
        period = self.ttl / 3
        while not self._stop.wait(period):
            if self._parent is not None and os.getppid() != self._parent:
                _log.warning("owner process gone; stopping this worker")
                os.killpg(os.getpgrp(), signal.SIGKILL)
            held = list(self._held.values())  # one C-level copy: atomic under the GIL
            if held:
                self._renew(held)

    def _renew(self, held: list[_Held]) -> None:
        started = time.monotonic()
        try:
            lost = set(self._store().renew_leases([h.lease for h in held], time.time() + self.ttl))
        except KlawError as exc:  # the store is unreachable: keep trying; check() will refuse
            _log.warning("lease renewal failed", error=exc.message)
            return
        for h in held:
            if h.lease in lost:
                if not h.fenced:
                    task = h.task
                    _log.warning(
                        "lease lost",
                        run_id=task.run_id,
                        stage=task.stage.name,
                        attempt=task.attempt,
                    )
                h.fenced = True
            else:
                h.valid_until = started + self.ttl / 2

    def close(self) -> None:
        self._stop.set()
