"""Typed commands: every control action Klaw offers, as a versioned msgspec Struct on the wire.

HTTP, CLI, TUI, MCP and cron build these values; a server's dispatcher turns each into a call
on the service. On the wire a command is MessagePack: a map whose ``type`` field names the
command (:mod:`klaw.protocol.wire`).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec

from klaw.states import RunState

MAX_PREVIEW_ROWS: Final = 1_000  # PreviewRows: a look at an asset, not a way to move its data
MAX_EVENTS_WAIT: Final = 30.0  # seconds a ListEvents may wait for events (a longer wait is cut)

Version = Annotated[int, msgspec.Meta(ge=1)]
Positive = Annotated[int, msgspec.Meta(ge=1)]
MAX_PAGE: Final = 100_000  # the most records one listing may ask for
PageSize = Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]


class _Command(msgspec.Struct, tag=True, kw_only=True, frozen=True):
    version: Version = 1


class SubmitRun(_Command, frozen=True):
    """Run a workflow. With ``wait`` (the default) the reply is the final run record; without,
    the run goes on in the background and the reply is the run as just created (follow it with
    ListEvents or GetRun)."""

    workflow: str
    selection: str | None = None
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    executor: str | None = None
    max_workers: Positive | None = None
    fail_fast: bool = False
    resume: str | None = None
    wait: bool = True
    # Run the version deployed in this environment (dev, qa, uat, prod) rather than the
    # project's files as they are; the run records the version and the environment.
    environment: Annotated[str, msgspec.Meta(pattern="^(dev|qa|uat|prod)$")] | None = None


class CancelRun(_Command, frozen=True):
    run_id: str
    wait: Seconds = 30.0


class GetRun(_Command, frozen=True):
    run_id: str


class ListRuns(_Command, frozen=True):
    """Runs, newest first: of ``workflow``, in ``states``, created in ``[since, until)``
    (epoch seconds), at most ``limit``, older than the run ``before`` (a cursor)."""

    workflow: str | None = None
    states: tuple[RunState, ...] = ()
    limit: PageSize = 50
    before: str | None = None
    since: float | None = None
    until: float | None = None


class LastRuns(_Command, frozen=True):
    """The newest ``limit`` runs of each of ``workflows`` (newest first, workflow by workflow):
    what a list of workflows shows beside each, in one call; each is one indexed lookup."""

    workflows: Annotated[tuple[str, ...], msgspec.Meta(max_length=1_000)]
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1


class ListAttempts(_Command, frozen=True):
    run_id: str


class ListEvents(_Command, frozen=True):
    """The run's events after ``after_seq`` (a cursor: pass the last ``seq`` seen).

    With ``wait`` (version 2), a long poll: when there are none yet and the run has not ended,
    the reply waits until there are (or the run ends), ``wait`` seconds at most (cut to
    :data:`MAX_EVENTS_WAIT`); an empty reply then means nothing happened meanwhile. Send it
    as ``version=2`` so that an older server refuses it rather than answering at once."""

    run_id: str
    after_seq: Annotated[int, msgspec.Meta(ge=0)] = 0
    wait: Seconds = 0.0


class Ping(_Command, frozen=True):
    """Is the server there, and which Klaw and project does it serve?"""


class ReadLogs(_Command, frozen=True):
    run_id: str
    stage: str | None = None


class ListWorkflows(_Command, frozen=True):
    """Every workflow of the project."""


class PlanWorkflow(_Command, frozen=True):
    workflow: str
    selection: str | None = None


class ValidateWorkflows(_Command, frozen=True):
    workflows: tuple[str, ...] = ()  # empty: every workflow of the project


class ListAssets(_Command, frozen=True):
    """Every asset in the lake with its latest snapshot."""


class ListSnapshots(_Command, frozen=True):
    """An asset's snapshots, oldest first: the newest ``limit`` of them when given."""

    key: str
    limit: Annotated[int, msgspec.Meta(ge=1)] | None = None


class ListSchedules(_Command, frozen=True):
    """Every cron schedule of the project, with its state, next tick and last tick and run."""


class PauseSchedule(_Command, frozen=True):
    """Stop a schedule from firing (by name: the name of its workflow) until it is resumed."""

    name: str


class ResumeSchedule(_Command, frozen=True):
    """Let a paused schedule fire again, from its next tick: the ticks of the pause are
    skipped, whatever its catch-up policy."""

    name: str


class Heartbeat(_Command, frozen=True):
    """A worker renews the lease of the attempt it runs. Refused (``StaleAttemptError``) once
    the attempt was given up: the worker must stop and may send nothing more."""

    run_id: str
    stage: str
    attempt: Positive
    token: str


class CompleteAttempt(_Command, frozen=True):
    """A worker reports that its attempt succeeded (with the snapshot it committed, for an
    asset stage). Refused when the token is not the attempt's current one."""

    run_id: str
    stage: str
    attempt: Positive
    token: str
    snapshot: int | None = None
    rows: int | None = None
    bytes: int | None = None


class FailAttempt(_Command, frozen=True):
    """A worker reports that its attempt failed; ``retryable=False`` skips the retries."""

    run_id: str
    stage: str
    attempt: Positive
    token: str
    error: str
    traceback: str | None = None
    retryable: bool = True


class GetWorkflow(_Command, frozen=True):
    """One workflow: its graph (stages and edges), params JSON Schema and configuration; with
    ``layout``, a layered drawing of the graph too (a position per stage)."""

    workflow: str
    layout: bool = False


class ReadLogPage(_Command, frozen=True):
    """A page of a run's log lines: those after ``after_seq`` (a cursor: pass the last
    ``seq`` seen), at most ``limit`` of them; with ``tail``, the last ``tail`` of those."""

    run_id: str
    stage: str | None = None
    after_seq: Annotated[int, msgspec.Meta(ge=0)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | None = None
    tail: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | None = None


class GetAsset(_Command, frozen=True):
    """One asset: its schema and latest snapshot."""

    key: str


class PreviewRows(_Command, frozen=True):
    """The first ``limit`` rows of a snapshot of an asset (default: the latest). A preview
    for people: at most :data:`MAX_PREVIEW_ROWS` rows; read data itself with Flight DoGet."""

    key: str
    snapshot: Annotated[int, msgspec.Meta(ge=0)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=0, le=1_000)] = 100


class GetLineage(_Command, frozen=True):
    """Which workflow and stage produce an asset, and the assets up- and downstream of it."""

    key: str


class GetOverview(_Command, frozen=True):
    """The last ``hours``: runs per state in ``buckets`` buckets, the stages that failed
    most, the longest attempts, and the runs active now."""

    hours: Annotated[float, msgspec.Meta(gt=0, le=24 * 90)] = 24.0
    buckets: Annotated[int, msgspec.Meta(ge=1, le=500)] = 24


class CreateToken(_Command, frozen=True):
    """Make an API token with ``role`` (viewer, operator, approver, admin), valid for
    ``expires_in`` seconds (None: until revoked). The reply holds its secret, once."""

    name: str
    role: str
    expires_in: Annotated[float, msgspec.Meta(gt=0)] | None = None


class ListTokens(_Command, frozen=True):
    """Every API token kept in the metadata store (never a secret)."""


class RevokeToken(_Command, frozen=True):
    token_id: str


class PruneMetadata(_Command, frozen=True):
    """Delete events and metrics older than ``older_than`` seconds (runs, attempts and logs
    stay), and the Idempotency-Keys that have expired."""

    older_than: Seconds


# -- the pipeline lifecycle -------------------------------------------------------------------

Files = Annotated[dict[str, str], msgspec.Meta(max_length=10_000)]
Number = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]  # a version's number, an audit seq
Environment = Annotated[str, msgspec.Meta(pattern="^(dev|qa|uat|prod)$")]


class CreateVersion(_Command, frozen=True):
    """Make a version of a workflow from its files as they are now (deployed to dev), or,
    with ``files``, from those (a folder workflow's ``config.yaml`` and ``workflow.sql`` or
    ``workflow.py``: what the pipeline builder saves). The same content makes no new version:
    the reply then has ``created`` false and the version that holds it."""

    workflow: str
    message: str = ""
    files: Files | None = None


class ListVersions(_Command, frozen=True):
    """A workflow's versions, newest first (at most ``limit``, numbered below ``before``),
    and where each environment's deployment is."""

    workflow: str
    limit: PageSize = 50
    before: Number | None = None


class GetVersion(_Command, frozen=True):
    """One version with its files and graph."""

    workflow: str
    number: Number  # the version's number (``version`` is the command's own)


class DiffVersions(_Command, frozen=True):
    """How version ``b`` (default: the working copy) differs from version ``a``: each file as
    a unified diff, and the stages added, removed and changed."""

    workflow: str
    a: Number
    b: Number | None = None


class GetSource(_Command, frozen=True):
    """A workflow's files as they are now (what the pipeline builder opens), with their
    content hash and the version that holds them, if one does."""

    workflow: str


class DeleteVersion(_Command, frozen=True):
    """Delete a version that is not read-only (in dev or qa)."""

    workflow: str
    number: Number  # the version's number (``version`` is the command's own)


class PromoteVersion(_Command, frozen=True):
    """Promote a version to the next environment ``to`` (qa, uat, prod): at once, or through
    an approval request where the policy needs approvals (always for uat and prod)."""

    workflow: str
    number: Number  # the version's number (``version`` is the command's own)
    to: Environment


class DemoteVersion(_Command, frozen=True):
    """Take the version deployed in uat back to qa."""

    workflow: str


class RetireVersion(_Command, frozen=True):
    """Retire a version: it leaves every environment and is never deployed again."""

    workflow: str
    number: Number  # the version's number (``version`` is the command's own)


class ListApprovals(_Command, frozen=True):
    """Promotion requests, newest first: of ``workflow``, in ``state`` (pending, approved,
    rejected, or all)."""

    workflow: str | None = None
    state: Annotated[str, msgspec.Meta(pattern="^(pending|approved|rejected|all)$")] = "pending"
    limit: PageSize = 100


class ApproveRequest(_Command, frozen=True):
    """Approve a pending promotion request (approver role; not its requester)."""

    request_id: str
    comment: str = ""


class RejectRequest(_Command, frozen=True):
    """Reject a pending promotion request (approver role; not its requester)."""

    request_id: str
    comment: str = ""


class ListAudit(_Command, frozen=True):
    """The audit log, newest first: at most ``limit`` entries with seq below ``before``."""

    workflow: str | None = None
    limit: PageSize = 100
    before: Number | None = None


class ExportVersion(_Command, frozen=True):
    """A version as a self-contained bundle (``docs/bundle.schema.json``)."""

    workflow: str
    number: Number  # the version's number (``version`` is the command's own)


class ImportVersion(_Command, frozen=True):
    """Import a bundle as a new dev version; ``replace``: in place of the version of its
    number (refused when that one is read-only). Refused when its hash or signature does not
    check or its format is unknown."""

    bundle: dict[str, Any]
    replace: bool = False


class CheckDraft(_Command, frozen=True):
    """Validate and plan a folder workflow that is not saved (the pipeline builder's files)."""

    workflow: str
    files: Files
    selection: str | None = None


class SyncGit(_Command, frozen=True):
    """Follow the project's git repository (``[lifecycle.git]``): each folder workflow whose
    files changed becomes a new dev version; with ``dry_run``, only say what would."""

    dry_run: bool = False


Command = (
    SubmitRun
    | CancelRun
    | GetRun
    | ListRuns
    | ListAttempts
    | ListEvents
    | Ping
    | ReadLogs
    | ListWorkflows
    | PlanWorkflow
    | ValidateWorkflows
    | ListAssets
    | ListSnapshots
    | ListSchedules
    | PauseSchedule
    | ResumeSchedule
    | Heartbeat
    | CompleteAttempt
    | FailAttempt
    | GetWorkflow
    | ReadLogPage
    | GetAsset
    | PreviewRows
    | GetLineage
    | GetOverview
    | LastRuns
    | CreateToken
    | ListTokens
    | RevokeToken
    | PruneMetadata
    | CreateVersion
    | ListVersions
    | GetVersion
    | DiffVersions
    | GetSource
    | DeleteVersion
    | PromoteVersion
    | DemoteVersion
    | RetireVersion
    | ListApprovals
    | ApproveRequest
    | RejectRequest
    | ListAudit
    | ExportVersion
    | ImportVersion
    | CheckDraft
    | SyncGit
)

COMMANDS: Final[dict[str, type[_Command]]] = {
    cls.__name__: cls
    for cls in (
        SubmitRun,
        CancelRun,
        GetRun,
        ListRuns,
        ListAttempts,
        ListEvents,
        Ping,
        ReadLogs,
        ListWorkflows,
        PlanWorkflow,
        ValidateWorkflows,
        ListAssets,
        ListSnapshots,
        ListSchedules,
        PauseSchedule,
        ResumeSchedule,
        Heartbeat,
        CompleteAttempt,
        FailAttempt,
        GetWorkflow,
        ReadLogPage,
        GetAsset,
        PreviewRows,
        GetLineage,
        GetOverview,
        LastRuns,
        CreateToken,
        ListTokens,
        RevokeToken,
        PruneMetadata,
        CreateVersion,
        ListVersions,
        GetVersion,
        DiffVersions,
        GetSource,
        DeleteVersion,
        PromoteVersion,
        DemoteVersion,
        RetireVersion,
        ListApprovals,
        ApproveRequest,
        RejectRequest,
        ListAudit,
        ExportVersion,
        ImportVersion,
        CheckDraft,
        SyncGit,
    )
}
# The newest version of each command this code understands.
VERSIONS: Final[dict[str, int]] = {**dict.fromkeys(COMMANDS, 1), "ListEvents": 2}
LONG_POLL_VERSION: Final = 2  # the ListEvents version that has ``wait``


def long_poll(run_id: str, after_seq: int, wait: float) -> ListEvents:
    """A ListEvents that waits up to ``wait`` seconds for events after ``after_seq``."""
    return ListEvents(run_id=run_id, after_seq=after_seq, wait=wait, version=LONG_POLL_VERSION)
