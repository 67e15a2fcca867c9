"""The runner: owns one run. Drives the readiness state machine with an executor, records
every transition in the metadata store, and hands stages references, never data.

The loop blocks on a queue of outcomes; its only timed wait is until the next deadline it
owns (a stage timeout, a retry's backoff, a stop's grace period). No polling tick.
"""

from __future__ import annotations

import heapq
import itertools
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from klaw.execution.executor import Executor
from klaw.execution.readiness import Readiness, Transition
from klaw.execution.task import InputRef, Outcome, Started, Task
from klaw.execution.values import ValueStore
from klaw.graph.plan import Plan
from klaw.ids import AssetRef, new_token
from klaw.metadata.records import (
    AttemptRecord,
    Batch,
    EventRecord,
    MetricRecord,
    RunRecord,
)
from klaw.metadata.store import MetadataWriter
from klaw.observability import get_logger
from klaw.states import RunState, StageState

log = get_logger("klaw.runner")
S = StageState

_CANCEL = object()
_FORCE = object()


@dataclass(frozen=True, slots=True)
class Reused:
    """A stage satisfied by an earlier run's snapshot (``--resume``)."""

    ref: AssetRef
    run_id: str


@dataclass(slots=True)
class RunOptions:
    fail_fast: bool = False
    stop_grace: float = 5.0  # seconds a stopped attempt has to end before it is abandoned
    params: Mapping[type[Any], Any] = field(default_factory=dict)
    reused: Mapping[str, Reused] = field(default_factory=dict)
    external: Mapping[str, AssetRef] = field(default_factory=dict)  # unselected upstream assets
    on_events: Callable[[list[EventRecord]], None] | None = None  # after each durable write


class Runner:
    def __init__(
        self,
        plan: Plan,
        run: RunRecord,
        *,
        executor: Executor,
        metadata: MetadataWriter,
        options: RunOptions | None = None,
    ) -> None:
        self.plan = plan
        self.run = run
        self.executor = executor
        self.metadata = metadata
        self.options = options or RunOptions()
        self._outcomes: queue.SimpleQueue[Any] = queue.SimpleQueue()
        stages = plan.graph.stages
        self._readiness = Readiness(
            plan.upstream,
            {n: stages[n].retry.retries for n in plan.stages},
            fail_fast=self.options.fail_fast,
            done=frozenset(self.options.reused),
        )
        self._values = ValueStore()
        # consumers still to finish, per stage whose value is held in memory
        self._downstream_in_plan = {
            n: tuple(d for d in plan.graph.downstream[n] if d in plan.upstream) for n in plan.stages
        }
        self._consumers = {n: len(d) for n, d in self._downstream_in_plan.items()}
        self._tasks: dict[tuple[str, int], Task] = {}  # running attempts
        self._attempts: dict[tuple[str, int], AttemptRecord] = {}
        self._waiting: list[str] = []  # ready, waiting for a free slot
        self._timers: list[tuple[float, int, str, str, int]] = []
        self._seq = itertools.count()
        self._batch = Batch()
        self._cancelling = False
        self._timed_out: set[tuple[str, int]] = set()
        self._log = log.bind(run_id=run.run_id, workflow=run.workflow)

    # -- public --------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the run to stop (thread- and signal-safe): running attempts are stopped, nothing
        new starts, and the run ends ``cancelled``."""
        self._outcomes.put(_CANCEL)

    def execute(self) -> RunRecord:
        """Run the plan to the end and return the final run record."""
        run = self.run
        run.state, run.started_at = RunState.RUNNING, time.time()
        run.owner_host, run.owner_pid = socket.gethostname(), os.getpid()
        self._batch.runs.append(run)
        self._event("run_started", state=RunState.RUNNING.value)
        for name, reused in self.options.reused.items():
            self._record_reused(name, reused)
        self._log.info("run started", stages=len(self.plan.stages))
        self.executor.open(self._outcomes.put, self._values)
        restore = self._install_signals()
        try:
            self._apply(self._readiness.start())
            self._dispatch()
            self._flush()
            self._loop()
        finally:
            restore()
            self.executor.close()
        return self._finish()

    def _install_signals(self) -> Callable[[], None]:
        """Ctrl-C and SIGTERM cancel the run (a second Ctrl-C abandons what has not stopped).
        Only the main thread can own signals; elsewhere, call :meth:`cancel`."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        presses = itertools.count(1)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._outcomes.put(_CANCEL if next(presses) == 1 else _FORCE)

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore

    # -- loop ----------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._readiness.finished:
            try:
                item = self._outcomes.get(timeout=self._next_wait())
            except queue.Empty:
                item = None
            while item is not None:
                self._handle(item)
                try:
                    item = self._outcomes.get_nowait()
                except queue.Empty:
                    item = None
            self._fire_timers()
            self._dispatch()
            self._flush()

    def _next_wait(self) -> float | None:
        if not self._timers:
            return None
        return max(0.0, self._timers[0][0] - time.monotonic())

    def _handle(self, item: Any) -> None:
        if item is _CANCEL:
            self._begin_cancel("cancel requested")
            return
        if item is _FORCE:
            self._begin_cancel("cancel requested")
            for running in list(self._tasks.values()):
                self._abandon(running)
            return
        task = self._tasks.get((item.stage, item.attempt))
        if task is None or task.token != item.token:
            return  # a stale attempt (abandoned after a stop): fenced off
        if isinstance(item, Started):
            limit = task.stage.timeout
            assert limit is not None
            self._timer(limit, "timeout", task.stage.name, task.attempt)
            return
        outcome: Outcome = item
        del self._tasks[task.key]
        record = self._attempts[task.key]
        if not outcome.stopped:  # a stopped attempt keeps the start recorded at submit
            record.started_at = outcome.started_at
        record.ended_at = outcome.ended_at
        record.rows, record.bytes = outcome.rows, outcome.bytes
        if outcome.value is not None and task.keep_value:
            self._values.put(outcome.stage, outcome.value)
        self._batch.logs.extend(outcome.logs)
        self._batch.metrics.append(
            MetricRecord(
                run_id=self.run.run_id,
                stage=outcome.stage,
                attempt=outcome.attempt,
                name="duration_s",
                value=outcome.ended_at - outcome.started_at,
                ts=outcome.ended_at,
            )
        )
        name = outcome.stage
        if outcome.ok:
            record.asset_key, record.snapshot_id = outcome.asset_key, outcome.snapshot
            self._apply(self._readiness.succeeded(name))
            return
        timed_out = task.key in self._timed_out
        if outcome.stopped and not timed_out:  # stopped by a cancel
            record.error = "cancelled" if outcome.error == "stopped" else outcome.error
            self._apply([self._readiness.stopped(name)])
            return
        if not timed_out:
            record.error, record.traceback = outcome.error, outcome.traceback
        self._log.warning("stage failed", stage=name, attempt=outcome.attempt, error=record.error)
        state = S.TIMED_OUT if timed_out else S.FAILED
        transitions = self._readiness.failed(name, retryable=outcome.retryable, state=state)
        if transitions[0].state is S.RETRYING:
            wait = self.plan.graph.stages[name].retry.wait_before(outcome.attempt)
            self._timer(wait, "retry", name, outcome.attempt)
        self._apply(transitions)
        if self.options.fail_fast and transitions[0].state is not S.RETRYING:
            self._event("run_failing_fast", stage=name)
            self._cancelling = True  # what still runs is stopped and ends cancelled
            for running in list(self._tasks.values()):
                self._stop(running)

    def _fire_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, kind, name, attempt = heapq.heappop(self._timers)
            task = self._tasks.get((name, attempt))
            if kind == "retry":
                if self._readiness.state[name] is S.RETRYING and not self._cancelling:
                    self._apply([self._readiness.retry_due(name)])
            elif task is None:
                continue  # the attempt already ended
            elif kind == "timeout":
                limit = self.plan.graph.stages[name].timeout
                self._attempts[task.key].error = f"timed out after {limit:g} s"
                self._timed_out.add(task.key)
                self._stop(task)
            elif kind == "grace":
                self._abandon(task)

    def _dispatch(self) -> None:
        free = self.executor.capacity - len(self._tasks)
        while self._waiting and free > 0:
            name = self._waiting.pop(0)
            if self._readiness.state[name] is not S.READY:
                continue  # cancelled or skipped while it waited
            self._submit(name)
            free -= 1

    def _submit(self, name: str) -> None:
        transition = self._readiness.started(name)
        stage = self.plan.graph.stages[name]
        external = self.options.external
        reused = self.options.reused
        inputs = []
        for item in stage.inputs:
            ref: AssetRef | None = None
            if item.upstream in reused:
                ref = reused[item.upstream].ref
            elif item.upstream not in self.plan.upstream:
                ref = external[item.upstream]
            inputs.append(InputRef(item.param, item.upstream, item.type.value, ref))
        task = Task(
            run_id=self.run.run_id,
            stage=stage,
            attempt=transition.attempt,
            token=new_token(),
            inputs=tuple(inputs),
            params=self.options.params.get(stage.params_model) if stage.params_model else None,
            keep_value=bool(self._downstream_in_plan[name]),
        )
        self._tasks[task.key] = task
        record = self._attempts[task.key]
        record.token, record.started_at = task.token, time.time()
        self._apply([transition])
        self.executor.submit(task)

    # -- cancel and stop -----------------------------------------------------------------------
    def _begin_cancel(self, reason: str) -> None:
        if self._cancelling:
            return
        self._cancelling = True
        self._log.warning("cancelling run", reason=reason, running=len(self._tasks))
        self._event("run_cancelling", reason=reason)
        self._apply(self._readiness.cancel())
        for task in list(self._tasks.values()):
            self._stop(task)
        self._flush()

    def _stop(self, task: Task) -> None:
        self.executor.stop(task)
        self._timer(self.options.stop_grace, "grace", task.stage.name, task.attempt)

    def _abandon(self, task: Task) -> None:
        self.executor.abandon(task)
        record = self._attempts[task.key]
        record.error = (record.error or "stopped") + (
            f"; the attempt did not stop within {self.options.stop_grace:g} s and was abandoned"
        )
        self._outcomes.put(
            Outcome(
                task.stage.name,
                task.attempt,
                task.token,
                time.time(),
                time.time(),
                record.error,
                stopped=True,
            )
        )

    # -- records -------------------------------------------------------------------------------
    def _apply(self, transitions: list[Transition]) -> None:
        run_id, now = self.run.run_id, time.time()
        for t in transitions:
            key = (t.stage, t.attempt)
            record = self._attempts.get(key)
            if record is None:
                stage = self.plan.graph.stages[t.stage]
                record = AttemptRecord(
                    run_id=run_id,
                    stage=t.stage,
                    attempt=t.attempt,
                    state=t.state,
                    queued_at=now,
                    asset_key=stage.asset_key,
                )
                self._attempts[key] = record
            if t.state is S.READY:
                self._waiting.append(t.stage)
            record.state = t.state
            ends = t.state.terminal or t.state is S.RETRYING
            if ends and record.ended_at is None:
                record.ended_at = now
            if t.state.terminal:
                self._release_inputs(t.stage)
            self._batch.attempts.append(record)
            self._batch.events.append(
                EventRecord(
                    run_id=run_id,
                    kind="stage",
                    ts=now,
                    stage=t.stage,
                    attempt=t.attempt,
                    state=t.state.value,
                    data={"error": record.error} if ends and record.error else {},
                )
            )

    def _record_reused(self, name: str, reused: Reused) -> None:
        now = time.time()
        record = AttemptRecord(
            run_id=self.run.run_id,
            stage=name,
            attempt=0,
            state=S.SUCCEEDED,
            queued_at=now,
            started_at=now,
            ended_at=now,
            asset_key=reused.ref.key,
            snapshot_id=reused.ref.snapshot,
            reused_from=reused.run_id,
        )
        self._batch.attempts.append(record)
        self._event(
            "stage",
            stage=name,
            attempt=0,
            state=S.SUCCEEDED.value,
            reused_from=reused.run_id,
            snapshot=reused.ref.snapshot,
        )

    def _event(
        self,
        kind: str,
        *,
        stage: str | None = None,
        attempt: int | None = None,
        state: str | None = None,
        **data: Any,
    ) -> None:
        self._batch.events.append(
            EventRecord(
                run_id=self.run.run_id,
                kind=kind,
                ts=time.time(),
                stage=stage,
                attempt=attempt,
                state=state,
                data=data,
            )
        )

    def _timer(self, delay: float, kind: str, stage: str, attempt: int) -> None:
        heapq.heappush(
            self._timers, (time.monotonic() + delay, next(self._seq), kind, stage, attempt)
        )

    def _release_inputs(self, name: str) -> None:
        """``name`` is done for good: values it consumed may be freed after their last use."""
        for up in self.plan.upstream[name]:
            self._consumers[up] -= 1
            if self._consumers[up] <= 0:
                self._values.release(up)

    def _flush(self) -> None:
        batch = self._batch
        if batch:
            # one record per attempt per batch: the last state written wins anyway
            batch.attempts = list({(a.stage, a.attempt): a for a in batch.attempts}.values())
            self.metadata.commit(batch)
            self._batch = Batch()
            if self.options.on_events is not None and batch.events:
                self.options.on_events(batch.events)

    def _finish(self) -> RunRecord:
        run = self.run
        run.state = self._readiness.run_state
        run.ended_at = time.time()
        counts: dict[str, int] = {}
        for st in self._readiness.state.values():
            counts[st.value] = counts.get(st.value, 0) + 1
        run.stage_counts = counts
        failed = [n for n, st in self._readiness.state.items() if st in (S.FAILED, S.TIMED_OUT)]
        if failed:
            run.error = f"stage(s) failed: {', '.join(failed)}"
        self._batch.runs.append(run)
        self._event("run_finished", state=run.state.value)
        self._batch.metrics.append(
            MetricRecord(
                run_id=run.run_id,
                name="run_duration_s",
                value=run.ended_at - (run.started_at or run.ended_at),
                ts=run.ended_at,
            )
        )
        self._flush()
        self._log.info("run finished", state=run.state.value)
        return run
