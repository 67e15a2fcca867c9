"""The dispatcher: typed commands in, Orchestrator calls, typed replies out.

Every interface (HTTP, CLI, TUI, MCP, cron, Flight ``DoAction``) ends here. The dispatcher only
translates: a command into the Orchestrator's method, its result into a reply Struct, and any
:class:`KlawError` into an :class:`ErrorReply`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from klaw import metrics
from klaw.errors import (
    AssetNotFoundError,
    DefinitionError,
    KlawError,
    WorkflowNotFoundError,
)
from klaw.metadata.records import EventRecord, Lease, RunFilter, RunRecord
from klaw.observability import get_logger
from klaw.protocol import (
    MAX_EVENTS_WAIT,
    AcceptedReply,
    AssetReply,
    AssetsReply,
    AttemptsReply,
    AttemptView,
    CancelRun,
    Command,
    CompleteAttempt,
    CreateToken,
    ErrorReply,
    EventsReply,
    FailAttempt,
    GetAsset,
    GetLineage,
    GetOverview,
    GetRun,
    GetWorkflow,
    Heartbeat,
    LastRuns,
    LeaseReply,
    LineageReply,
    ListAssets,
    ListAttempts,
    ListEvents,
    ListRuns,
    ListSchedules,
    ListSnapshots,
    ListTokens,
    ListWorkflows,
    LogsReply,
    OverviewReply,
    PauseSchedule,
    Ping,
    PlanReply,
    PlanWorkflow,
    PongReply,
    PreviewRows,
    PruneMetadata,
    PruneReply,
    ReadLogPage,
    ReadLogs,
    Reply,
    ResumeSchedule,
    RevokeToken,
    RowsReply,
    RunReply,
    RunsReply,
    ScheduleReply,
    SchedulesReply,
    SnapshotsReply,
    SubmitRun,
    TokenReply,
    TokensReply,
    ValidateReply,
    ValidateWorkflows,
    WorkflowReply,
    WorkflowsReply,
    decode,
    decode_reply,
    encode,
    error_reply,
    from_reply,
    internal_reply,
)
from klaw.service import releases, tokens, views
from klaw.service.lifecycle import Caller
from klaw.service.orchestrator import Orchestrator
from klaw.service.schedules import list_schedules, set_paused
from klaw.states import RunState

if TYPE_CHECKING:
    from klaw.graph.plan import Plan

_log: Final = get_logger(__name__)

# Commands answered from the workflow definitions: a serving process asks its definitions
# process (it imports no workflow module itself).
_DEFINITIONS: Final = (
    ListWorkflows,
    GetWorkflow,
    PlanWorkflow,
    ValidateWorkflows,
    GetLineage,
    *releases.DEFINITIONS,
)


class Dispatcher:
    """Executes commands on one Orchestrator."""

    def __init__(self, orchestrator: Orchestrator) -> None:
        self.orchestrator = orchestrator
        self._handlers: dict[type[Any], Callable[[Any], Reply]] = {
            SubmitRun: self._submit_run,
            CancelRun: self._cancel_run,
            GetRun: self._get_run,
            ListRuns: self._list_runs,
            ListAttempts: self._list_attempts,
            ListEvents: self._list_events,
            Ping: self._ping,
            ReadLogs: self._read_logs,
            ListWorkflows: self._list_workflows,
            PlanWorkflow: self._plan_workflow,
            ValidateWorkflows: self._validate_workflows,
            ListAssets: self._list_assets,
            ListSnapshots: self._list_snapshots,
            ListSchedules: self._list_schedules,
            PauseSchedule: self._pause_schedule,
            ResumeSchedule: self._resume_schedule,
            Heartbeat: self._heartbeat,
            CompleteAttempt: self._complete_attempt,
            FailAttempt: self._fail_attempt,
            GetWorkflow: self._get_workflow,
            ReadLogPage: self._read_log_page,
            GetAsset: self._get_asset,
            PreviewRows: self._preview_rows,
            GetLineage: self._get_lineage,
            GetOverview: self._get_overview,
            LastRuns: self._last_runs,
            CreateToken: self._create_token,
            ListTokens: self._list_tokens,
            RevokeToken: self._revoke_token,
            PruneMetadata: self._prune_metadata,
        }
        # the lifecycle's commands, which act as (and are audited as) their caller
        self.releases = releases.Releases(self)
        self._acting = self.releases.handlers()

    def execute(
        self,
        cmd: Command,
        *,
        caller: Caller | None = None,
        on_events: Callable[[list[EventRecord]], None] | None = None,
        on_start: Callable[[RunRecord, Plan], None] | None = None,
    ) -> Reply:
        """The reply to ``cmd``. A KlawError raised by the Orchestrator propagates.

        ``caller``: who sent it, as the transport authenticated them (None: the person at
        this terminal, :meth:`Caller.local`); lifecycle changes are made and audited as them.
        ``on_start`` and ``on_events`` are for an in-process caller of ``SubmitRun(wait=True)``
        (``klaw run``'s live display): they go to :meth:`Orchestrator.run` as they are."""
        if not metrics.ACTIVE.sinks:
            return self._execute(cmd, caller, on_events, on_start)
        with metrics.timed_command(type(cmd).__name__):
            return self._execute(cmd, caller, on_events, on_start)

    def _execute(
        self,
        cmd: Command,
        caller: Caller | None,
        on_events: Callable[[list[EventRecord]], None] | None,
        on_start: Callable[[RunRecord, Plan], None] | None,
    ) -> Reply:
        if isinstance(cmd, SubmitRun) and cmd.wait and (on_events or on_start):
            return self._submit_run(cmd, on_events=on_events, on_start=on_start)
        definitions = self.orchestrator.definitions
        if definitions is not None and isinstance(cmd, _DEFINITIONS):
            reply = decode_reply(definitions.handle(encode(cmd)))
            if isinstance(reply, ErrorReply):
                raise from_reply(reply)
            return reply
        acting = self._acting.get(type(cmd))
        if acting is not None:
            return acting(cmd, caller if caller is not None else Caller.local())
        handler = self._handlers.get(type(cmd))
        if handler is None:
            raise TypeError(f"Not a command: {cmd!r}")
        return handler(cmd)

    def handle(self, data: bytes, caller: Caller | None = None) -> bytes:
        """Decode, execute, encode. Never raises: a failure comes back as an ErrorReply."""
        reply: Reply
        try:
            reply = self.execute(decode(data), caller=caller)
        except KlawError as exc:
            reply = error_reply(exc)
        except Exception as exc:  # a bug, not bad input: keep serving, say so
            _log.error("command failed", error=repr(exc), exc_info=True)
            reply = internal_reply(
                f"Internal error: {type(exc).__name__}: {exc}",
                "This is a bug in Klaw; the server log has the traceback.",
            )
        return encode(reply)

    # -- handlers ------------------------------------------------------------------------------
    def _submit_run(
        self,
        cmd: SubmitRun,
        *,
        on_events: Callable[[list[EventRecord]], None] | None = None,
        on_start: Callable[[RunRecord, Plan], None] | None = None,
    ) -> RunReply:
        if not cmd.wait:
            return RunReply(run=self.orchestrator.start(cmd))
        return RunReply(run=self.orchestrator.run(cmd, on_events=on_events, on_start=on_start))

    def _cancel_run(self, cmd: CancelRun) -> RunReply:
        return RunReply(run=self.orchestrator.cancel(cmd.run_id, wait=cmd.wait))

    def _get_run(self, cmd: GetRun) -> RunReply:
        return RunReply(run=self.orchestrator.get_run(cmd.run_id))

    def _list_runs(self, cmd: ListRuns) -> RunsReply:
        fields = ("workflow", "states", "limit", "before", "since", "until")
        filter = RunFilter(**{name: getattr(cmd, name) for name in fields})
        return RunsReply(runs=self.orchestrator.runs(filter))

    def _create_token(self, cmd: CreateToken) -> TokenReply:
        store = self.orchestrator.metadata
        issued = tokens.create_token(store, name=cmd.name, role=cmd.role, expires_in=cmd.expires_in)
        return TokenReply(token=views.token_view(issued.record, time.time()), secret=issued.token)

    def _list_tokens(self, cmd: ListTokens) -> TokensReply:
        now = time.time()
        found = self.orchestrator.metadata.list_tokens()
        return TokensReply(tokens=[views.token_view(t, now) for t in found])

    def _revoke_token(self, cmd: RevokeToken) -> TokenReply:
        record = tokens.revoke_token(self.orchestrator.metadata, cmd.token_id)
        return TokenReply(token=views.token_view(record, time.time()))

    def _prune_metadata(self, cmd: PruneMetadata) -> PruneReply:
        store = self.orchestrator.metadata
        gone = store.prune(cmd.older_than)
        keys = store.prune_keys(time.time())  # expired Idempotency-Keys, whatever their age
        return PruneReply(pruned=gone, older_than_seconds=cmd.older_than, expired_keys=keys)

    def _last_runs(self, cmd: LastRuns) -> RunsReply:
        return RunsReply(runs=self.orchestrator.metadata.last_runs(cmd.workflows, cmd.limit))

    def _get_overview(self, cmd: GetOverview) -> OverviewReply:
        window = cmd.hours * 3600.0
        bucket = window / cmd.buckets
        # whole buckets, so the same window asked twice draws the same bars
        since = (time.time() // bucket + 1) * bucket - window
        activity = self.orchestrator.metadata.activity(since, bucket_s=bucket)
        active = RunFilter(states=(RunState.QUEUED, RunState.RUNNING), limit=50)
        running = self.orchestrator.runs(active)
        return views.overview_reply(activity, window, cmd.buckets, running)

    def _list_attempts(self, cmd: ListAttempts) -> AttemptsReply:
        attempts = self.orchestrator.attempts(cmd.run_id)
        metrics = self.orchestrator.metrics(cmd.run_id)
        template = self.orchestrator.settings.telemetry.trace_url
        trace_id = self.orchestrator.get_run(cmd.run_id).trace_id if template else None
        return AttemptsReply(attempts=AttemptView.of(attempts, metrics, template, trace_id))

    def _list_events(self, cmd: ListEvents) -> EventsReply:
        found: list[EventsReply] = []

        def arrived() -> bool:
            # the run first: when it is finished, every one of its events is already visible
            run = self.orchestrator.get_run(cmd.run_id)
            events = self.orchestrator.events(cmd.run_id, after_seq=cmd.after_seq)
            found[:] = [EventsReply(events=events, run=run)]
            return bool(events) or run.state.terminal

        if cmd.wait > 0:
            self.orchestrator.wait_run(cmd.run_id, arrived, min(cmd.wait, MAX_EVENTS_WAIT))
        else:
            arrived()
        return found[-1]

    def _ping(self, cmd: Ping) -> PongReply:
        from klaw import __version__

        return PongReply(klaw_version=__version__, project=self.orchestrator.project.name)

    def _read_logs(self, cmd: ReadLogs) -> LogsReply:
        return LogsReply(logs=self.orchestrator.logs(cmd.run_id, cmd.stage))

    def _list_workflows(self, cmd: ListWorkflows) -> WorkflowsReply:
        workflows = self.orchestrator.workflows
        return WorkflowsReply(
            workflows=[views.workflow_info(workflows[n]) for n in sorted(workflows)]
        )

    def _plan_workflow(self, cmd: PlanWorkflow) -> PlanReply:
        return views.plan_reply(self.orchestrator.plan(cmd.workflow, cmd.selection))

    def _validate_workflows(self, cmd: ValidateWorkflows) -> ValidateReply:
        found = self.orchestrator.validate(cmd.workflows or None)
        unchecked = {n: self.orchestrator.unchecked_sql(n) for n, e in found.items() if e is None}
        return ValidateReply(results=views.validation_results(found, unchecked))

    def _list_assets(self, cmd: ListAssets) -> AssetsReply:
        return AssetsReply(assets=self.orchestrator.assets())

    def _list_snapshots(self, cmd: ListSnapshots) -> SnapshotsReply:
        return SnapshotsReply(snapshots=self.orchestrator.snapshots(cmd.key, cmd.limit))

    def _list_schedules(self, cmd: ListSchedules) -> SchedulesReply:
        return SchedulesReply(schedules=list_schedules(self.orchestrator))

    def _pause_schedule(self, cmd: PauseSchedule) -> ScheduleReply:
        return ScheduleReply(schedule=set_paused(self.orchestrator, cmd.name, True))

    def _resume_schedule(self, cmd: ResumeSchedule) -> ScheduleReply:
        return ScheduleReply(schedule=set_paused(self.orchestrator, cmd.name, False))

    def _get_workflow(self, cmd: GetWorkflow) -> WorkflowReply:
        try:
            wf = self.orchestrator.workflow(cmd.workflow)
        except DefinitionError as exc:  # the message names it and the close matches
            raise WorkflowNotFoundError(exc.message, hint=exc.hint) from None
        graph = self.orchestrator.graph(cmd.workflow)
        return views.workflow_reply(wf, graph, layout=cmd.layout)

    def _read_log_page(self, cmd: ReadLogPage) -> LogsReply:
        read = self.orchestrator.logs
        if cmd.tail is not None:  # the last `tail` lines, then at most `limit` of them
            logs = read(cmd.run_id, cmd.stage, after_seq=cmd.after_seq, limit=cmd.tail, tail=True)
            return LogsReply(logs=logs[: cmd.limit] if cmd.limit is not None else logs)
        return LogsReply(logs=read(cmd.run_id, cmd.stage, after_seq=cmd.after_seq, limit=cmd.limit))

    def _get_asset(self, cmd: GetAsset) -> AssetReply:
        [latest] = self.orchestrator.snapshots(cmd.key, limit=1)  # or AssetNotFoundError
        found = self.orchestrator.asset(cmd.key)
        if found is None:
            raise AssetNotFoundError(f"No asset {cmd.key!r} in the lake.")
        return AssetReply(asset=found, latest=latest)

    def _preview_rows(self, cmd: PreviewRows) -> RowsReply:
        if cmd.snapshot is None:  # AssetNotFoundError names the key, or lists the snapshots
            [info] = self.orchestrator.snapshots(cmd.key, limit=1)
        else:
            info = self.orchestrator.snapshot(cmd.key, cmd.snapshot)
        snapshot = info.snapshot
        table = self.orchestrator.read_asset(cmd.key, snapshot, cmd.limit)
        return RowsReply(
            key=cmd.key,
            snapshot=snapshot,
            schema={f.name: str(f.type) for f in table.schema},
            rows=table.to_pylist(),
            total_rows=info.rows,
        )

    def _get_lineage(self, cmd: GetLineage) -> LineageReply:
        producer = self.orchestrator.producers().get(cmd.key)
        if producer is None:
            self.orchestrator.snapshots(cmd.key, limit=1)  # not defined: is it in the lake?
        feeds = self.orchestrator.catalog.asset_inputs()  # asset -> the assets it is made from
        return LineageReply(
            key=cmd.key,
            workflow=producer[0] if producer else None,
            stage=producer[1] if producer else None,
            upstream=feeds.get(cmd.key, ()),
            downstream=tuple(sorted(k for k, ups in feeds.items() if cmd.key in ups)),
        )

    # -- reports from workers --------------------------------------------------------------------
    def _heartbeat(self, cmd: Heartbeat) -> LeaseReply:
        lease = Lease(cmd.run_id, cmd.stage, cmd.attempt, cmd.token)
        return LeaseReply(expires_at=self.orchestrator.heartbeat(lease))

    def _complete_attempt(self, cmd: CompleteAttempt) -> AcceptedReply:
        from klaw.execution.task import Outcome

        now = time.time()  # the runner names the asset the snapshot is of
        outcome = Outcome(cmd.stage, cmd.attempt, cmd.token, now, now, snapshot=cmd.snapshot)
        outcome.rows, outcome.bytes = cmd.rows, cmd.bytes
        self.orchestrator.report(outcome, cmd.run_id)
        return AcceptedReply(run_id=cmd.run_id, stage=cmd.stage, attempt=cmd.attempt)

    def _fail_attempt(self, cmd: FailAttempt) -> AcceptedReply:
        from klaw.execution.task import Outcome

        now = time.time()
        outcome = Outcome(
            cmd.stage,
            cmd.attempt,
            cmd.token,
            now,
            now,
            cmd.error,
            cmd.traceback,
            retryable=cmd.retryable,
        )
        self.orchestrator.report(outcome, cmd.run_id)
        return AcceptedReply(run_id=cmd.run_id, stage=cmd.stage, attempt=cmd.attempt)
