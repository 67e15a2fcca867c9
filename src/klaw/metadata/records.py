"""The records the metadata store keeps. Plain msgspec Structs: cheap to build, easy to encode."""

from __future__ import annotations

from typing import Any

import msgspec

from klaw.states import RunState, StageState


class RunRecord(msgspec.Struct, kw_only=True):
    """One run of a workflow. ``state`` is the projection of the run's events."""

    run_id: str
    workflow: str
    state: RunState
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    selection: str | None = None
    parent_run_id: str | None = None
    # Who drives the run: the owner process, so a run whose owner died is known to be abandoned.
    owner_host: str = ""
    owner_pid: int = 0
    error: str | None = None
    stage_counts: dict[str, int] = msgspec.field(default_factory=dict)
    # The pipeline version the run ran (None: files no version holds) and the environment
    # whose deployment it ran (None: the project's working copy).
    version: int | None = None
    environment: str | None = None
    trace_id: str | None = None  # the OpenTelemetry trace of its span (None: not traced)


class AttemptRecord(msgspec.Struct, kw_only=True):
    """One attempt of one stage in one run (attempt numbers start at 1; 0 means reused)."""

    run_id: str
    stage: str
    attempt: int
    state: StageState
    token: str = ""
    queued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    traceback: str | None = None
    asset_key: str | None = None
    snapshot_id: int | None = None
    reused_from: str | None = None
    rows: int | None = None
    bytes: int | None = None
    # While running: when the attempt's lease runs out unless its worker renews it (epoch s).
    lease_expires_at: float | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


class Lease(msgspec.Struct, frozen=True, array_like=True):
    """What a worker holds while it runs a stage attempt: the attempt and its fencing token."""

    run_id: str
    stage: str
    attempt: int
    token: str


class EventRecord(msgspec.Struct, kw_only=True):
    """An append-only transition. ``seq`` is assigned by the store (per run, from 1)."""

    run_id: str
    kind: str
    ts: float
    stage: str | None = None
    attempt: int | None = None
    state: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    seq: int = 0


class LogRecord(msgspec.Struct, kw_only=True, array_like=True):
    """One captured line of a stage attempt. ``stream`` is ``stdout``, ``stderr`` or ``log``."""

    run_id: str
    stage: str
    attempt: int
    stream: str
    ts: float
    line: str
    level: str | None = None
    seq: int = 0


class MetricRecord(msgspec.Struct, kw_only=True, array_like=True):
    """A named number about a run or stage attempt (``duration_s``, ``rows``, ``bytes``...)."""

    run_id: str
    name: str
    value: float
    ts: float
    stage: str | None = None
    attempt: int | None = None


class Batch(msgspec.Struct, kw_only=True):
    """Everything one scheduling round writes, committed in a single transaction.

    A transition is committed when ``MetadataWriter.commit`` returns; nothing in a batch is
    visible before the whole batch is.
    """

    events: list[EventRecord] = msgspec.field(default_factory=list)
    attempts: list[AttemptRecord] = msgspec.field(default_factory=list)
    runs: list[RunRecord] = msgspec.field(default_factory=list)
    logs: list[LogRecord] = msgspec.field(default_factory=list)
    metrics: list[MetricRecord] = msgspec.field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events or self.attempts or self.runs or self.logs or self.metrics)


class RunFilter(msgspec.Struct, kw_only=True, frozen=True):
    workflow: str | None = None
    states: tuple[RunState, ...] = ()
    limit: int = 50
    before: str | None = None  # run id cursor: runs strictly older than this one
    since: float | None = None  # created at or after (epoch seconds)
    until: float | None = None  # created before (epoch seconds)


class StateCount(msgspec.Struct, kw_only=True, frozen=True):
    """How many runs created in one time bucket (from ``start``, epoch seconds) ended in (or
    are in) ``state``."""

    start: float
    state: RunState
    count: int


class StageFailures(msgspec.Struct, kw_only=True, frozen=True):
    """A stage's failed attempts in a window, and the newest of them."""

    workflow: str
    stage: str
    failures: int
    last_run_id: str
    last_error: str | None = None


class StageDuration(msgspec.Struct, kw_only=True, frozen=True):
    """One attempt's duration (start to end, in seconds)."""

    workflow: str
    stage: str
    run_id: str
    attempt: int
    duration_s: float


class Activity(msgspec.Struct, kw_only=True, frozen=True):
    """What happened in a window: runs per state per bucket, the stages that failed most and
    the longest attempts (``ActivityReader.activity``)."""

    since: float
    bucket_s: float
    counts: list[StateCount]
    failing: list[StageFailures]
    longest: list[StageDuration]


class ScheduleDefinition(msgspec.Struct, kw_only=True, frozen=True):
    """A schedule as the project defines it (``ScheduleStore.sync_schedules`` writes these).

    ``name`` is the workflow's name; ``catch_up`` is ``none``, ``latest`` or ``all``."""

    name: str
    workflow: str
    cron: str
    timezone: str = "UTC"
    catch_up: str = "latest"


class ScheduleRecord(msgspec.Struct, kw_only=True):
    """A schedule's state in the metadata store, with its newest claimed tick.

    Ticks at or before ``updated_at`` (when the cron, time zone or workflow last changed) or
    ``resumed_at`` (when it was last resumed) never fire, so neither a new definition nor a
    resume catches up ticks from before it. Times are epoch seconds; ticks are tick keys
    (``2026-03-29T01:00:00Z``)."""

    name: str
    workflow: str
    cron: str
    timezone: str
    catch_up: str
    paused: bool = False
    created_at: float
    updated_at: float
    paused_at: float | None = None
    resumed_at: float | None = None
    last_tick: str | None = None
    last_tick_at: float | None = None  # when the newest tick was claimed
    last_run_id: str | None = None
    last_error: str | None = None


class TokenRecord(msgspec.Struct, kw_only=True):
    """A stored API token (``klaw_<token_id>_<secret>``). Only the SHA-256 of the secret (hex)
    is kept; the token itself is shown once, when it is made. ``role`` is a role label
    (``viewer``, ``operator``, ``approver``, ``admin``); times are epoch seconds."""

    token_id: str
    name: str
    role: str
    secret_hash: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None

    def live(self, now: float) -> bool:
        """Neither revoked nor expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


class IdempotencyRecord(msgspec.Struct, kw_only=True):
    """A claim on an ``Idempotency-Key`` of ``subject`` (who sent it): the request whose
    ``claim`` (a random value) holds the key makes the run and records ``run_id``. The key
    binds ``fingerprint`` (the SHA-256 of the request body) until ``expires_at``; a claim that
    made no run by ``pending_until`` (its request died) may be taken over. Times are epoch s."""

    subject: str
    key: str
    fingerprint: str
    claim: str
    created_at: float
    expires_at: float
    pending_until: float
    run_id: str | None = None


class VersionRecord(msgspec.Struct, kw_only=True):
    """An immutable pipeline version of a workflow: its number (1, 2, ... per workflow), the
    SHA-256 of its content (``hash``), the bundle ``format`` it was made in, ``kind`` (folder
    or python), who made it and why, and ``stage``: the furthest environment it has reached
    (dev, qa, uat, prod, retired). Its files and graph are kept beside it (``content``)."""

    workflow: str
    version: int
    hash: str
    format: int
    kind: str
    author: str
    message: str
    created_at: float
    stage: str
    stages: int  # how many stages its graph has


class DeploymentRecord(msgspec.Struct, kw_only=True):
    """The version deployed in an environment of a workflow (at most one per environment)."""

    workflow: str
    environment: str
    version: int
    deployed_at: float
    deployed_by: str


class DecisionRecord(msgspec.Struct, kw_only=True):
    """One approver's decision on a promotion request: ``approve`` or ``reject``."""

    approver: str
    decision: str
    comment: str
    at: float


class ApprovalRecord(msgspec.Struct, kw_only=True):
    """A request to promote ``version`` of ``workflow`` to ``environment``: ``pending`` until
    ``required`` approvers approve it (then ``approved``, and the version is deployed) or one
    rejects it (``rejected``)."""

    request_id: str
    workflow: str
    version: int
    environment: str
    requester: str
    state: str
    created_at: float
    required: int
    decided_at: float | None = None
    decisions: list[DecisionRecord] = msgspec.field(default_factory=list)


class AuditRecord(msgspec.Struct, kw_only=True):
    """One entry of the append-only audit log: who did what, when, to which workflow,
    version, environment or request; ``detail`` holds the rest (a comment, a commit)."""

    seq: int = 0  # given by the store
    at: float
    actor: str
    action: str
    workflow: str | None = None
    version: int | None = None
    environment: str | None = None
    request_id: str | None = None
    detail: dict[str, Any] = msgspec.field(default_factory=dict)
