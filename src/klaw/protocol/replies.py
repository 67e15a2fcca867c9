"""Replies: what a Klaw server answers a command with. Every reply is a tagged msgspec
Struct, so one decoder reads any of them (errors included: :class:`ErrorReply`)."""

from __future__ import annotations

from typing import Any

import msgspec

from klaw.metadata.records import (
    ApprovalRecord,
    AuditRecord,
    DeploymentRecord,
    EventRecord,
    LogRecord,
    RunRecord,
    StageDuration,
    StageFailures,
)
from klaw.protocol.lifecycle import FileDiff, GitChange, StageChange, VersionDetail, VersionView
from klaw.protocol.views import AttemptView, PlannedStage, ScheduleInfo, StageNode, WorkflowInfo
from klaw.states import RunState
from klaw.storage.store import AssetInfo, SnapshotInfo


class _Reply(msgspec.Struct, tag=True, kw_only=True, frozen=True):
    """Every reply is tagged, so one decoder reads any of them (errors included)."""


class ErrorReply(_Reply, frozen=True):
    """What went wrong. ``code`` is the KlawError class name (``UnknownCommandError``...);
    ``fields`` the error's fields (``GraphError.problems``, ``RateLimitedError.retry_after``),
    so the client rebuilds the same class (:func:`klaw.protocol.errors.from_reply`)."""

    code: str
    message: str
    hint: str | None = None
    fields: dict[str, Any] = msgspec.field(default_factory=dict)


class RunReply(_Reply, frozen=True):
    """Reply to SubmitRun, CancelRun and GetRun."""

    run: RunRecord


class RunsReply(_Reply, frozen=True):
    runs: list[RunRecord]


class AttemptsReply(_Reply, frozen=True):
    attempts: list[AttemptView]


class EventsReply(_Reply, frozen=True):
    events: list[EventRecord]
    run: RunRecord  # the run as it stands after these events


class PongReply(_Reply, frozen=True):
    klaw_version: str
    project: str


class LogsReply(_Reply, frozen=True):
    logs: list[LogRecord]


class WorkflowsReply(_Reply, frozen=True):
    workflows: list[WorkflowInfo]


class PlanReply(_Reply, frozen=True):
    workflow: str
    selection: str | None
    stages: tuple[str, ...]  # topological order
    levels: list[list[str]]  # stages that can run together, level by level
    upstream: dict[str, tuple[str, ...]]  # dependencies inside the plan
    external: dict[str, tuple[str, ...]]  # inputs read from an asset's latest snapshot
    details: dict[str, PlannedStage] = msgspec.field(default_factory=dict)  # by stage name


class ValidationResult(msgspec.Struct, kw_only=True, frozen=True):
    workflow: str
    error: ErrorReply | None = None  # None: valid
    problems: tuple[str, ...] = ()  # every problem found (a GraphError lists several)
    # SQL statements that could not be checked, each with why (a warning: still valid)
    unchecked: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


class ValidateReply(_Reply, frozen=True):
    results: list[ValidationResult]


class AssetsReply(_Reply, frozen=True):
    assets: list[AssetInfo]


class SnapshotsReply(_Reply, frozen=True):
    snapshots: list[SnapshotInfo]


class SchedulesReply(_Reply, frozen=True):
    schedules: list[ScheduleInfo]


class ScheduleReply(_Reply, frozen=True):
    """Reply to PauseSchedule and ResumeSchedule: the schedule as it now stands."""

    schedule: ScheduleInfo


class LeaseReply(_Reply, frozen=True):
    """Reply to Heartbeat: the lease now runs until ``expires_at`` (epoch seconds)."""

    expires_at: float


class AcceptedReply(_Reply, frozen=True):
    """Reply to CompleteAttempt and FailAttempt: the runner took the report."""

    run_id: str
    stage: str
    attempt: int


class WorkflowReply(_Reply, frozen=True):
    """Reply to GetWorkflow: ``workflow`` as in ListWorkflows, its graph (stages in
    topological order, edges upstream -> downstream inside the workflow), the JSON Schema of
    its params and how its runs are set up."""

    workflow: WorkflowInfo
    stages: list[StageNode]
    edges: list[tuple[str, str]]
    params_schema: dict[str, Any]
    max_active_runs: int
    executor: str | None = None
    timezone: str = "UTC"
    catch_up: str = "latest"
    depends_on: tuple[str, ...] = ()
    # with GetWorkflow(layout=True): each stage's (x, y) in a layered drawing (klaw.graph.layout)
    positions: dict[str, tuple[float, float]] = msgspec.field(default_factory=dict)


class AssetReply(_Reply, frozen=True):
    """Reply to GetAsset: the asset and its latest snapshot (with its schema)."""

    asset: AssetInfo
    latest: SnapshotInfo


class RowsReply(_Reply, frozen=True):
    """Reply to PreviewRows: ``rows`` (column -> value, at most the limit asked) of
    ``snapshot``, out of ``total_rows``."""

    key: str
    snapshot: int
    schema: dict[str, str]  # column -> Arrow type
    rows: list[dict[str, Any]]
    total_rows: int


class LineageReply(_Reply, frozen=True):
    """Reply to GetLineage. ``workflow``/``stage``: what produces the asset (None: no
    workflow of the project defines it); ``upstream``: the assets it is computed from;
    ``downstream``: the assets computed from it (in any workflow of the project)."""

    key: str
    workflow: str | None = None
    stage: str | None = None
    upstream: tuple[str, ...] = ()
    downstream: tuple[str, ...] = ()


class StateBucket(msgspec.Struct, kw_only=True, frozen=True):
    """The runs created in one bucket (from ``start``, epoch seconds), counted by state."""

    start: float
    counts: dict[RunState, int]


class OverviewReply(_Reply, frozen=True):
    """Reply to GetOverview: a window of ``window_s`` seconds up to now, in buckets of
    ``bucket_s``; ``running``: the runs queued or running now (newest first)."""

    window_s: float
    bucket_s: float
    buckets: list[StateBucket]
    running: list[RunRecord]
    failing: list[StageFailures]
    longest: list[StageDuration]


class TokenView(msgspec.Struct, kw_only=True, frozen=True):
    """An API token as it may be shown: never its secret nor the secret's hash. ``state``:
    active, expired or revoked; times are epoch seconds."""

    id: str
    name: str
    role: str
    state: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None


class TokenReply(_Reply, frozen=True):
    """Reply to CreateToken (``secret``: the token, shown this once) and RevokeToken."""

    token: TokenView
    secret: str | None = None


class TokensReply(_Reply, frozen=True):
    tokens: list[TokenView]


class PruneReply(_Reply, frozen=True):
    pruned: int  # events and metrics (rows or partitions) deleted
    older_than_seconds: float
    expired_keys: int


class VersionReply(_Reply, frozen=True):
    """Reply to CreateVersion, ImportVersion, RetireVersion and DeleteVersion; ``created``:
    whether a new version was made (false: the same content already was one)."""

    version: VersionView
    created: bool = True


class VersionsReply(_Reply, frozen=True):
    versions: list[VersionView]  # newest first
    deployments: list[DeploymentRecord]


class VersionDetailReply(_Reply, frozen=True):
    detail: VersionDetail


class DiffReply(_Reply, frozen=True):
    """Reply to DiffVersions; ``b`` None: the working copy."""

    workflow: str
    a: int
    b: int | None
    files: list[FileDiff]
    stages_added: tuple[str, ...]
    stages_removed: tuple[str, ...]
    stages_changed: list[StageChange]


class SourceReply(_Reply, frozen=True):
    workflow: str
    kind: str  # folder | python
    files: dict[str, str]
    hash: str
    version: int | None = None  # the version that holds these files, if one does


class PromotionReply(_Reply, frozen=True):
    """Reply to PromoteVersion, DemoteVersion, ApproveRequest and RejectRequest: the request
    (when there is one) and the deployment the change made (None: none yet)."""

    request: ApprovalRecord | None = None
    deployment: DeploymentRecord | None = None


class ApprovalsReply(_Reply, frozen=True):
    requests: list[ApprovalRecord]


class AuditReply(_Reply, frozen=True):
    entries: list[AuditRecord]  # newest first


class BundleReply(_Reply, frozen=True):
    bundle: dict[str, Any]


class DraftReply(_Reply, frozen=True):
    """Reply to CheckDraft: ``error`` None when the draft is valid, with its plan and graph."""

    workflow: str
    error: ErrorReply | None = None
    plan: PlanReply | None = None
    stages: list[StageNode] = msgspec.field(default_factory=list)
    edges: list[tuple[str, str]] = msgspec.field(default_factory=list)
    params_schema: dict[str, Any] = msgspec.field(default_factory=dict)


class GitSyncReply(_Reply, frozen=True):
    """Reply to SyncGit: the commit synced, and what it did to each workflow folder."""

    repository: str
    branch: str
    commit: str
    dry_run: bool
    changes: list[GitChange]


Reply = (
    ErrorReply
    | RunReply
    | RunsReply
    | AttemptsReply
    | EventsReply
    | PongReply
    | LogsReply
    | WorkflowsReply
    | PlanReply
    | ValidateReply
    | AssetsReply
    | SnapshotsReply
    | SchedulesReply
    | ScheduleReply
    | LeaseReply
    | AcceptedReply
    | WorkflowReply
    | AssetReply
    | RowsReply
    | LineageReply
    | OverviewReply
    | TokenReply
    | TokensReply
    | PruneReply
    | VersionReply
    | VersionsReply
    | VersionDetailReply
    | DiffReply
    | SourceReply
    | PromotionReply
    | ApprovalsReply
    | AuditReply
    | BundleReply
    | DraftReply
    | GitSyncReply
)
