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
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, cast

import msgspec

from klaw import metrics, telemetry
from klaw.errors import KlawError, StaleAttemptError
from klaw.execution.executor import Executor, InlineExecutor
from klaw.execution.readiness import Readiness, Transition
from klaw.execution.recorder import DEFAULT_LIMIT, Recorder
from klaw.execution.task import InputRef, Observed, Outcome, Phase, Started, Task
from klaw.execution.values import ValueStore
from klaw.graph.plan import Plan
from klaw.ids import AssetRef, new_token
from klaw.metadata import journal
from klaw.metadata.records import (
    AttemptRecord,
    Batch,
    EventRecord,
    MetricRecord,
    RunRecord,
)
from klaw.metadata.store import RunStore
from klaw.observability import get_logger
from klaw.states import EventKind, RunState, StageState

log = get_logger("klaw.runner")
# members bound once: attribute access on an Enum class costs a descriptor call per use
READY = StageState.READY
RUNNING = StageState.RUNNING
SUCCEEDED = StageState.SUCCEEDED
FAILED = StageState.FAILED
RETRYING = StageState.RETRYING
TIMED_OUT = StageState.TIMED_OUT

_CANCEL = object()


@dataclass(frozen=True, slots=True)
class _Reported:
    """An outcome a worker reported by command, not through the executor."""

    outcome: Outcome


_FAST = 0.002  # seconds: stages shorter than this get a queued successor per worker
_ENDS = frozenset(s for s in StageState if s.terminal) | {StageState.RETRYING}
_FORCE = object()
_NO_DATA: dict[str, Any] = {}  # shared by every event without data: never mutated
_copy = msgspec.structs.replace
STAGE_EVENT = EventKind.STAGE.value


class TimerKind(Enum):
    """What a runner's timer does when it fires."""

    LEASES = "leases"  # look for attempts whose lease expired
    RETRY = "retry"  # a stage's backoff is over: run it again
    GRACE = "grace"  # a stopped attempt's grace is over: give it up
    LOAD = Phase.LOAD.value  # a timed attempt overran its phase ...
    RUN = Phase.RUN.value
    COMMIT = Phase.COMMIT.value


_PHASE_TIMERS = {phase: TimerKind(phase.value) for phase in Phase}
_TIMER_PHASES = {kind: phase for phase, kind in _PHASE_TIMERS.items()}
# a timer on the heap: (due, seq, kind, stage, attempt); ordered by due, then seq
_Timer = tuple[float, int, TimerKind, str, int]


@dataclass(frozen=True, slots=True)
class Reused:
    """A stage satisfied by an earlier run's snapshot (``--resume``)."""

    ref: AssetRef
    run_id: str


@dataclass(slots=True)
class RunOptions:
    fail_fast: bool = False
    stop_grace: float = 5.0  # seconds a stopped attempt has to end before it is abandoned
    io_timeout: float = 3600.0  # seconds a timed stage may spend loading inputs or committing
    params: Mapping[type[Any], Any] = field(default_factory=dict)
    reused: Mapping[str, Reused] = field(default_factory=dict)
    external: Mapping[str, AssetRef] = field(default_factory=dict)  # unselected upstream assets
    on_events: Callable[[list[EventRecord]], None] | None = None  # after each durable write
    lease_ttl: float | None = None  # seconds; None: attempts hold no lease (nothing expires)
    metadata_queue: int = DEFAULT_LIMIT  # records waiting for a commit before the run waits
    # Taking over a run after its owner died: where each stage's attempt numbers continue,
    # and the run is not started again (it is recovered).
    attempts_before: Mapping[str, int] = field(default_factory=dict)
    recovered: bool = False
    done: frozenset[str] = frozenset()  # stages already finished whose value no one needs
    trace: Mapping[str, str] = field(default_factory=dict)  # W3C context the run's span is under


def _shared(seen: dict[Any, Any], value: Any) -> Any:
    """One object for equal values (hashable ones)."""
    return seen.setdefault(value, value)


class Runner:
    def __init__(
        self,
        plan: Plan,
        run: RunRecord,
        *,
        executor: Executor,
        metadata: RunStore,
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
            done=frozenset(self.options.reused) | self.options.done,
            attempts_before=self.options.attempts_before,
            # the whole graph planned: its downstream map is the inverse already
            downstream=plan.graph.downstream if plan.upstream is plan.graph.upstream else None,
        )
        self._values = ValueStore()
        # consumers still to finish, per stage whose value is held in memory
        # values are kept for the planned stages that take them as an input (not for ``deps=``)
        consumers: dict[str, int] = dict.fromkeys(plan.stages, 0)
        for name in plan.stages:
            for up in {i.upstream for i in stages[name].inputs}:
                if up in consumers:
                    consumers[up] += 1
        self._consumers = consumers
        # equal tuples shared: in a wide fan-out, thousands of stages read the same inputs
        shared: dict[Any, Any] = {}
        self._value_inputs = {
            name: _shared(
                shared,
                tuple({i.upstream for i in stages[name].inputs if i.upstream in consumers}),
            )
            for name in plan.stages
        }
        self._inputs = {name: _shared(shared, self._input_refs(name)) for name in plan.stages}
        self._asset_keys = {name: stages[name].asset_key for name in plan.stages}
        self._recorder = Recorder(
            metadata, self.options.on_events, limit=self.options.metadata_queue
        )
        self._tasks: dict[tuple[str, int], Task] = {}  # running attempts
        self._attempts: dict[tuple[str, int], AttemptRecord] = {}
        self._waiting: deque[str] = deque()  # ready, waiting for a free slot
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self._batch = Batch()
        self._cancelling = False
        self._fast = False
        self._ready_events: dict[str, tuple[int, float]] = {}  # stage -> attempt, when
        # attempts changed since the last write, one entry each however often they changed
        self._dirty: dict[tuple[str, int], AttemptRecord] = {}
        self._inline_task: Task | None = None
        self._inline = isinstance(executor, InlineExecutor)
        self._timed_out: set[tuple[str, int]] = set()
        self._phases: dict[tuple[str, int], int] = {}  # timed attempt -> its live phase timer
        self._lease_timer = False
        self._log = log.bind(run_id=run.run_id, workflow=run.workflow)
        self._span: Any = None  # the run's span, when traces are on
        self._observed: Observed | None = None  # handed to each attempt when telemetry is on

    # -- public --------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the run to stop (thread- and signal-safe): running attempts are stopped, nothing
        new starts, and the run ends ``cancelled``."""
        self._outcomes.put(_CANCEL)
        self._stop_inline()

    def force(self) -> None:
        """Ask again, harder (a second Ctrl-C): attempts that have not stopped are given up
        at once rather than after their grace."""
        self._outcomes.put(_FORCE)
        self._stop_inline()

    def report(self, outcome: Outcome) -> None:
        """An attempt's outcome reported from outside the executor (a worker's
        ``CompleteAttempt`` / ``FailAttempt``). Raises :class:`StaleAttemptError` unless the
        attempt is running under that token; the executor's own copy is then given up."""
        task = self._tasks.get((outcome.stage, outcome.attempt))
        if task is None or task.token != outcome.token:
            raise StaleAttemptError(
                f"Stage {outcome.stage!r} attempt {outcome.attempt} of run {self.run.run_id} is "
                "not running under that token; the report is refused.",
                hint="The attempt was given up (its lease expired) or has already ended.",
            )
        if outcome.snapshot is not None and outcome.asset_key is None:
            outcome.asset_key = task.stage.asset_key  # the snapshot is of the stage's asset
        self._outcomes.put(_Reported(outcome))
        if self._inline_task is task:  # it runs on the runner's thread: stop it there
            self.executor.stop(task)

    def _stop_inline(self) -> None:
        """A stage running on the runner's own thread cannot wait for the loop: stop it now."""
        task = self._inline_task
        if task is not None:
            self.executor.stop(task)

    def execute(self) -> RunRecord:
        """Run the plan to the end and return the final run record."""
        run = self.run
        run.state, run.started_at = RunState.RUNNING, run.started_at or time.time()
        run.owner_host, run.owner_pid = socket.gethostname(), os.getpid()
        self._batch.runs.append(run)
        if self.options.recovered:
            self._event(
                EventKind.RUN_RECOVERED,
                state=RunState.RUNNING.value,
                done=len(self.options.reused),
            )
        else:
            self._event(EventKind.RUN_STARTED, state=RunState.RUNNING.value)
            for name, reused in self.options.reused.items():
                self._record_reused(name, reused)
        self._log.info("run started", stages=len(self.plan.stages))
        metrics.run_started(run.workflow)
        if telemetry.ACTIVE.on:
            self._observe()
        self._recorder.start()
        self.executor.open(self._outcomes.put, self._values)
        try:
            self._apply(self._readiness.start())
            self._drain(None)  # a cancel asked for before the start is seen before any stage
            self._dispatch()
            self._flush()
            self._loop()
        finally:
            self.executor.close()
        try:
            return self._finish()
        finally:
            self._recorder.close()

    def _observe(self) -> None:
        """Telemetry is on: a span for the run, and what each attempt needs to be traced."""
        run = self.run
        self._span = telemetry.start(
            f"run {run.workflow}",
            {
                "klaw.run_id": run.run_id,
                "klaw.workflow": run.workflow,
                "klaw.stages": len(self.plan.stages),
            },
            self.options.trace,
        )
        if self._span is not None and not self._span.is_recording():
            self._span = None  # sampled out: its attempts are not traced either
        headers = telemetry.carrier(self._span) if self._span is not None else {}
        if self._span is not None:  # the run's own log records name its trace
            context = self._span.get_span_context()
            run.trace_id = format(context.trace_id, "032x")
            self._log = self._log.bind(
                trace_id=format(context.trace_id, "032x"), span_id=format(context.span_id, "016x")
            )
        active = telemetry.ACTIVE
        if headers or active.lineage is not None or active.logger is not None:
            self._observed = Observed(run.workflow, headers, telemetry.exported())

    # -- loop ----------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._readiness.finished:
            try:
                item = self._outcomes.get(timeout=self._next_wait())
            except queue.Empty:
                item = None
            self._drain(item)
            self._fire_timers()
            self._dispatch()
            self._flush()

    def _drain(self, item: Any) -> None:
        """Handle ``item`` (if any) and every message already queued, without waiting."""
        while True:
            if item is not None:
                self._handle(item)
            try:
                item = self._outcomes.get_nowait()
            except queue.Empty:
                return

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
        if type(item) is _Reported:
            found = self._tasks.get((item.outcome.stage, item.outcome.attempt))
            if found is not None and found.token == item.outcome.token:
                self.executor.abandon(found)  # whatever the executor's copy sends is stale
                self._read_from_snapshot(item.outcome)
            item = item.outcome
        key = (item.stage, item.attempt)
        task = self._tasks.get(key)
        if task is None or task.token != item.token:
            return  # a stale attempt (abandoned after a stop): fenced off
        if isinstance(item, Started):
            self._enter(task, item.phase)
            return
        outcome: Outcome = item
        del self._tasks[key]
        self._phases.pop(key, None)
        record = self._attempts[key]
        if not outcome.stopped:  # a stopped attempt keeps the start recorded at submit
            record.started_at = outcome.started_at
        record.ended_at = outcome.ended_at
        record.rows, record.bytes = outcome.rows, outcome.bytes
        if outcome.load_s is not None or outcome.commit_s is not None:
            self._io_metrics(outcome)
        if outcome.value is not None and task.keep_value:
            self._values.put(outcome.stage, outcome.value)
        self._batch.logs.extend(outcome.logs)
        name = outcome.stage
        self._fast = outcome.ended_at - outcome.started_at < _FAST
        if outcome.ok:
            record.asset_key, record.snapshot_id = outcome.asset_key, outcome.snapshot
            if record.asset_key and outcome.snapshot is not None:
                metrics.asset_written(record.asset_key, outcome.rows, outcome.bytes)
            self._apply(self._readiness.succeeded(name))
            return
        timed_out = key in self._timed_out
        if outcome.lost and not outcome.stopped and not timed_out:
            record.error = outcome.error
            self._lost(task, record)
            return
        if outcome.stopped and not timed_out:  # stopped by a cancel
            record.error = "cancelled" if outcome.error == "stopped" else outcome.error
            self._apply([self._readiness.stopped(name)])
            return
        if not timed_out:
            record.error, record.traceback = outcome.error, outcome.traceback
        self._log.warning("stage failed", stage=name, attempt=outcome.attempt, error=record.error)
        state = TIMED_OUT if timed_out else FAILED
        transitions = self._readiness.failed(name, retryable=outcome.retryable, state=state)
        if transitions[0].state is RETRYING:
            wait = self.plan.graph.stages[name].retry.wait_before(outcome.attempt)
            self._timer(wait, TimerKind.RETRY, name, outcome.attempt)
        self._apply(transitions)
        if self.options.fail_fast and transitions[0].state is not RETRYING:
            self._event(EventKind.RUN_FAILING_FAST, stage=name)
            self._cancelling = True  # what still runs is stopped and ends cancelled
            for running in list(self._tasks.values()):
                self._stop(running)

    def _fire_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, seq, kind, name, attempt = heapq.heappop(self._timers)
            task = self._tasks.get((name, attempt))
            if kind is TimerKind.LEASES:
                self._expire_leases()
            elif kind is TimerKind.RETRY:
                if self._readiness.state[name] is RETRYING and not self._cancelling:
                    self._apply([self._readiness.retry_due(name)])
            elif task is None:
                continue  # the attempt already ended
            elif kind in _TIMER_PHASES:
                if self._phases.get(task.key) != seq:
                    continue  # the attempt has moved on to its next phase
                self._attempts[task.key].error = self._overran(task, _TIMER_PHASES[kind])
                self._timed_out.add(task.key)
                self._stop(task)
            elif kind is TimerKind.GRACE:
                self._abandon(task)

    def _enter(self, task: Task, phase: Phase) -> None:
        """A timed attempt entered ``phase``: the stage's function is bounded by its timeout,
        loading its inputs and committing its snapshot by the I/O timeout."""
        limit = task.stage.timeout if phase is Phase.RUN else self.options.io_timeout
        assert limit is not None
        timer = self._timer(limit, _PHASE_TIMERS[phase], task.stage.name, task.attempt)
        self._phases[task.key] = timer

    def _overran(self, task: Task, phase: Phase) -> str:
        """Why a timed attempt was stopped, naming the part of it that overran."""
        stage, io = task.stage, self.options.io_timeout
        if phase is Phase.RUN:
            return f"timed out after {stage.timeout:g} s"
        if phase is Phase.COMMIT:
            return (
                f"timed out committing asset {stage.asset_key!r}: stage {stage.name!r} was still "
                f"storing its snapshot after {io:g} s (the stage_io_timeout setting, "
                "KLAW_EXECUTOR__STAGE_IO_TIMEOUT); its own timeout covers only its function"
            )
        reading = [
            f"asset {i.ref.key!r} (snapshot {i.ref.snapshot})"
            if i.ref is not None
            else f"the value of stage {i.upstream!r}"
            for i in task.inputs
        ]
        return (
            f"timed out loading inputs: stage {stage.name!r} was still reading "
            f"{', '.join(reading) or 'its inputs'} after {io:g} s (the stage_io_timeout "
            "setting, KLAW_EXECUTOR__STAGE_IO_TIMEOUT); its own timeout covers only its function"
        )

    def _io_metrics(self, outcome: Outcome) -> None:
        """The attempt's input loading and snapshot commit times, as metrics of the attempt."""
        for name, value in (("load_s", outcome.load_s), ("commit_s", outcome.commit_s)):
            if value is not None:
                self._batch.metrics.append(
                    MetricRecord(
                        run_id=self.run.run_id,
                        name=name,
                        value=value,
                        ts=outcome.ended_at,
                        stage=outcome.stage,
                        attempt=outcome.attempt,
                    )
                )

    def _dispatch(self) -> None:
        # While stages finish within a couple of milliseconds, keep one task queued per worker
        # so a worker goes straight on to its next stage instead of waiting for this loop.
        # (A queued task counts as running for those few milliseconds.)
        capacity = self.executor.capacity
        free = (4 * capacity if self._fast else capacity) - len(self._tasks)
        while self._waiting and free > 0:
            name = self._waiting.popleft()
            if self._readiness.state[name] is not READY:
                continue  # cancelled or skipped while it waited
            alone = not self._tasks and not self._waiting
            if alone and self._inline and self.plan.graph.stages[name].timeout is None:
                self._run_inline(name)
                return
            self._submit(name)
            free -= 1

    def _run_inline(self, name: str) -> None:
        """The only stage that can run now: run it on this thread (no hand-off to a worker).
        Its outcome goes through the queue like any other; a cancel stops it as usual."""
        task = self._submit(name, start=False)
        self._flush()  # `running` is recorded while the stage runs
        executor = cast(InlineExecutor, self.executor)
        self._inline_task = task
        try:
            outcome = executor.run_here(task)
        finally:
            self._inline_task = None
        self._outcomes.put(outcome)

    def _submit(self, name: str, *, start: bool = True) -> Task:
        attempt = self._readiness.started(name).attempt
        stage = self.plan.graph.stages[name]
        ttl, now, run_id = self.options.lease_ttl, time.time(), self.run.run_id
        key = (name, attempt)
        task = Task(
            run_id,
            stage,
            attempt,
            new_token(),
            self._inputs[name],
            self.options.params.get(stage.params_model) if stage.params_model else None,
            self._consumers[name] > 0,
            None if ttl is None else now + ttl,
            self._observed,
        )
        self._tasks[key] = task
        self._ready_events.pop(name, None)
        # the `running` transition, recorded here (the hot path: no generic `_apply`)
        record = self._attempts[key]
        record.state, record.token, record.started_at = RUNNING, task.token, now
        if ttl is not None:
            record.lease_expires_at = task.lease_until
            if not self._lease_timer:
                self._lease_timer = True
                self._timer(ttl / 2, TimerKind.LEASES, "", 0)
        self._dirty[key] = record
        self._batch.events.append(
            EventRecord(
                run_id=run_id,
                kind=STAGE_EVENT,
                ts=now,
                stage=name,
                attempt=attempt,
                state=RUNNING,
                data=_NO_DATA,
            )
        )
        if start:
            self.executor.submit(task)
        return task

    def _input_refs(self, name: str) -> tuple[InputRef, ...]:
        """Where each input of ``name`` comes from: a value in memory, or a snapshot when the
        upstream was reused from an earlier run or is not part of the plan."""
        reused, external = self.options.reused, self.options.external
        refs = []
        for item in self.plan.graph.stages[name].inputs:
            ref: AssetRef | None = None
            if item.upstream in reused:
                ref = reused[item.upstream].ref
            elif item.upstream not in self.plan.upstream:
                ref = external[item.upstream]
            refs.append(InputRef(item.param, item.upstream, item.type.value, ref))
        return tuple(refs)

    def _read_from_snapshot(self, outcome: Outcome) -> None:
        """A stage completed elsewhere left no value here: its readers read its snapshot."""
        if not outcome.ok or outcome.snapshot is None or outcome.asset_key is None:
            return
        ref = AssetRef(outcome.asset_key, outcome.snapshot)
        for name, refs in self._inputs.items():
            if any(i.upstream == outcome.stage and i.ref is None for i in refs):
                self._inputs[name] = tuple(
                    InputRef(i.param, i.upstream, i.type, ref)
                    if i.upstream == outcome.stage and i.ref is None
                    else i
                    for i in refs
                )

    # -- leases --------------------------------------------------------------------------------
    def _expire_leases(self) -> None:
        """Give up the attempts whose lease ran out (their worker stopped renewing it): each
        goes back to be retried as a new attempt; anything the old one sends is dropped."""
        ttl = self.options.lease_ttl
        assert ttl is not None
        self._lease_timer = False
        if not self._tasks:
            return
        reason = f"lease expired: no heartbeat from its worker for {ttl:g} s"
        try:
            expired = self.metadata.expire_leases(self.run.run_id, time.time(), reason)
        except KlawError as exc:  # the store is unreachable: look again next round
            self._log.warning("could not check leases", error=exc.message)
            expired = []
        for found in expired:
            task = self._tasks.get((found.stage, found.attempt))
            if task is None or task.token != found.token:
                continue
            record = self._attempts[task.key]
            record.error, record.ended_at = reason, found.ended_at
            metrics.leases_expired(1)
            self.executor.abandon(task)
            self._lost(task, record)
        self._lease_timer = True
        self._timer(ttl / 2, TimerKind.LEASES, "", 0)

    def _lost(self, task: Task, record: AttemptRecord) -> None:
        """The attempt's worker is gone (or its lease expired): retry it as a new attempt."""
        self._tasks.pop(task.key, None)
        self._phases.pop(task.key, None)
        name = task.stage.name
        self._log.warning(
            "stage attempt lost", stage=name, attempt=task.attempt, error=record.error
        )
        self._event(EventKind.STAGE_LOST, stage=name, attempt=task.attempt, error=record.error)
        transitions = self._readiness.lost(name)
        if transitions[0].state is RETRYING:
            wait = self.plan.graph.stages[name].retry.wait_before(task.attempt)
            self._timer(wait, TimerKind.RETRY, name, task.attempt)
        self._apply(transitions)

    # -- cancel and stop -----------------------------------------------------------------------
    def _begin_cancel(self, reason: str) -> None:
        if self._cancelling:
            return
        self._cancelling = True
        self._log.warning("cancelling run", reason=reason, running=len(self._tasks))
        self._event(EventKind.RUN_CANCELLING, reason=reason)
        self._apply(self._readiness.cancel())
        for task in list(self._tasks.values()):
            self._stop(task)
        self._flush()

    def _stop(self, task: Task) -> None:
        self.executor.stop(task)
        self._timer(self.options.stop_grace, TimerKind.GRACE, task.stage.name, task.attempt)

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
        dirty, events = self._dirty, self._batch.events
        for t in transitions:
            stage, state, attempt = t
            key = (stage, attempt)
            record = self._attempts.get(key)
            if record is None:
                record = AttemptRecord(
                    run_id=run_id,
                    stage=stage,
                    attempt=attempt,
                    state=state,
                    queued_at=now,
                    asset_key=self._asset_keys[stage],
                )
                self._attempts[key] = record
            else:
                record.state = state
            dirty[key] = record
            if state is READY:
                # held back until the next write: a stage that starts in the same round goes
                # straight to `running` in the log; one that waits for a slot shows `ready`
                # (its event is made then)
                self._waiting.append(stage)
                self._ready_events[stage] = (attempt, now)
                continue
            data = _NO_DATA
            if state in _ENDS:
                if record.ended_at is None:
                    record.ended_at = now
                if record.error:
                    data = {"error": record.error}
                if state is not RETRYING:
                    self._release_inputs(stage)
                if metrics.ACTIVE.sinks:
                    started = record.started_at
                    metrics.attempt_ended(
                        self.run.workflow,
                        state.value,
                        None if started is None else record.ended_at - started,
                        None if started is None else started - (record.queued_at or started),
                    )
            events.append(
                EventRecord(
                    run_id=run_id,
                    kind=STAGE_EVENT,
                    ts=now,
                    stage=stage,
                    attempt=attempt,
                    state=state,
                    data=data,
                )
            )

    def _record_reused(self, name: str, reused: Reused) -> None:
        now = time.time()
        record = AttemptRecord(
            run_id=self.run.run_id,
            stage=name,
            attempt=0,
            state=SUCCEEDED,
            queued_at=now,
            started_at=now,
            ended_at=now,
            asset_key=reused.ref.key,
            snapshot_id=reused.ref.snapshot,
            reused_from=reused.run_id,
        )
        self._dirty[(name, 0)] = record
        self._event(
            EventKind.STAGE,
            stage=name,
            attempt=0,
            state=SUCCEEDED.value,
            reused_from=reused.run_id,
            snapshot=reused.ref.snapshot,
        )

    def _event(
        self,
        kind: EventKind,
        *,
        stage: str | None = None,
        attempt: int | None = None,
        state: str | None = None,
        **data: Any,
    ) -> None:
        self._batch.events.append(
            journal.event(self.run.run_id, kind, stage=stage, attempt=attempt, state=state, **data)
        )

    def _timer(self, delay: float, kind: TimerKind, stage: str, attempt: int) -> int:
        seq = next(self._seq)
        heapq.heappush(self._timers, (time.monotonic() + delay, seq, kind, stage, attempt))
        return seq

    def _release_inputs(self, name: str) -> None:
        """``name`` is done for good: values it consumed may be freed after their last use."""
        for up in self._value_inputs[name]:
            self._consumers[up] -= 1
            if self._consumers[up] <= 0:
                self._values.release(up)

    def _flush(self) -> None:
        """Hand this round's records to the recorder (committed in order, off this thread)."""
        batch = self._batch
        if self._ready_events:
            run_id = self.run.run_id
            batch.events.extend(
                [
                    EventRecord(
                        run_id=run_id,
                        kind=STAGE_EVENT,
                        ts=ts,
                        stage=stage,
                        attempt=attempt,
                        state=READY,
                        data=_NO_DATA,
                    )
                    for stage, (attempt, ts) in self._ready_events.items()
                ]
            )
            self._ready_events.clear()
        if self._dirty:
            # one copy per attempt changed this round: the recorder reads it while this
            # thread moves on
            batch.attempts.extend([_copy(a) for a in self._dirty.values()])
            self._dirty.clear()
        if batch:
            batch.runs = [_copy(r) for r in batch.runs]
            self._recorder.put(batch)
            self._batch = Batch()

    def _finish(self) -> RunRecord:
        run = self.run
        run.state = self._readiness.run_state
        run.ended_at = time.time()
        counts: dict[str, int] = {}
        for st in self._readiness.state.values():
            counts[st.value] = counts.get(st.value, 0) + 1
        run.stage_counts = counts
        failed = [n for n, st in self._readiness.state.items() if st in (FAILED, TIMED_OUT)]
        if failed:
            run.error = f"stage(s) failed: {', '.join(failed)}"
        self._batch.runs.append(run)
        self._event(EventKind.RUN_FINISHED, state=run.state.value)
        assets = [a for a in self._attempts.values() if a.asset_key and a.snapshot_id is not None]
        for metric, value in (
            ("run_duration_s", run.ended_at - (run.started_at or run.ended_at)),
            ("rows_written", sum(a.rows or 0 for a in assets)),
            ("bytes_written", sum(a.bytes or 0 for a in assets)),
            ("stages", len(self.plan.stages)),
        ):
            self._batch.metrics.append(
                MetricRecord(run_id=run.run_id, name=metric, value=value, ts=run.ended_at)
            )
        self._flush()
        self._recorder.drain()
        self._log.info("run finished", state=run.state.value)
        metrics.run_ended(run.workflow, run.state.value)
        if self._span is not None:
            error = run.error if run.state is not RunState.SUCCEEDED else None
            telemetry.end(self._span, error, {"klaw.state": run.state.value})
        return run
