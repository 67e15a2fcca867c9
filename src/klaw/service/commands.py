"""Typed commands: every control action Klaw offers, as a versioned msgspec Struct on the wire.

HTTP, CLI, TUI, MCP and cron build these values; :class:`klaw.service.dispatcher.Dispatcher`
turns each into a call on the Orchestrator. On the wire a command is MessagePack: a map whose
``type`` field names the command. :func:`decode` refuses bad input with a :class:`CommandError`
subclass whose message names the command and field; its class name is the stable error code.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Final

import msgspec

from klaw.errors import DefinitionError, KlawError
from klaw.metadata.records import AttemptRecord, EventRecord, LogRecord, MetricRecord, RunRecord
from klaw.states import RunState
from klaw.storage.store import AssetInfo, SnapshotInfo

MAX_COMMAND_BYTES: Final = 1024 * 1024  # 1 MiB: commands carry references, never data
MAX_PREVIEW_ROWS: Final = 1_000  # PreviewRows: a look at an asset, not a way to move its data
MAX_EVENTS_WAIT: Final = 30.0  # seconds a ListEvents may wait for events (a longer wait is cut)

Version = Annotated[int, msgspec.Meta(ge=1)]
Positive = Annotated[int, msgspec.Meta(ge=1)]
MAX_PAGE: Final = 100_000  # the most records one listing may ask for
PageSize = Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]


# -- errors ----------------------------------------------------------------------------------
class CommandError(KlawError):
    """A command could not be decoded. ``command`` and ``field`` name what was wrong."""

    def __init__(
        self,
        message: str,
        *,
        command: str | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.command = command
        self.field = field


class MalformedCommandError(CommandError):
    """The bytes are not MessagePack, or not a map with a ``type`` field."""


class CommandTooLargeError(CommandError):
    """The encoded command is over :data:`MAX_COMMAND_BYTES`."""


class UnknownCommandError(CommandError):
    """The ``type`` field names no command."""


class InvalidCommandError(CommandError):
    """A field is missing, of the wrong type or out of range."""


class UnsupportedVersionError(CommandError):
    """The command's version is newer than this Klaw knows."""


class WorkflowNotFoundError(DefinitionError):
    """GetWorkflow named no workflow of the project."""


# -- commands --------------------------------------------------------------------------------
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


class CancelRun(_Command, frozen=True):
    run_id: str
    wait: Seconds = 30.0


class GetRun(_Command, frozen=True):
    run_id: str


class ListRuns(_Command, frozen=True):
    workflow: str | None = None
    states: tuple[RunState, ...] = ()
    limit: PageSize = 50
    before: str | None = None


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
    key: str


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
    """One workflow: its graph (stages and edges), params JSON Schema and configuration."""

    workflow: str


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
    )
}
# The newest version of each command this code understands.
VERSIONS: Final[dict[str, int]] = {**dict.fromkeys(COMMANDS, 1), "ListEvents": 2}
LONG_POLL_VERSION: Final = 2  # the ListEvents version that has ``wait``


def long_poll(run_id: str, after_seq: int, wait: float) -> ListEvents:
    """A ListEvents that waits up to ``wait`` seconds for events after ``after_seq``."""
    return ListEvents(run_id=run_id, after_seq=after_seq, wait=wait, version=LONG_POLL_VERSION)


# -- replies ---------------------------------------------------------------------------------
class _Reply(msgspec.Struct, tag=True, kw_only=True, frozen=True):
    """Every reply is tagged, so one decoder reads any of them (errors included)."""


class ErrorReply(_Reply, frozen=True):
    """What went wrong. ``code`` is the KlawError class name (``UnknownCommandError``...)."""

    code: str
    message: str
    hint: str | None = None


class RunReply(_Reply, frozen=True):
    """Reply to SubmitRun, CancelRun and GetRun."""

    run: RunRecord


class RunsReply(_Reply, frozen=True):
    runs: list[RunRecord]


class AttemptView(AttemptRecord, kw_only=True):
    """An attempt as it is shown: its record, with the seconds it spent loading its inputs
    (``load_s``) and committing its snapshot (``commit_s``), kept as the attempt's metrics.
    Neither counts toward the stage's timeout."""

    load_s: float | None = None
    commit_s: float | None = None

    @classmethod
    def of(cls, attempts: list[AttemptRecord], metrics: list[MetricRecord]) -> list[AttemptView]:
        timings: dict[tuple[str | None, int | None], dict[str, float]] = {}
        for m in metrics:
            if m.name in _TIMINGS:
                timings.setdefault((m.stage, m.attempt), {})[m.name] = m.value
        views = []
        for a in attempts:
            view = cls(**msgspec.structs.asdict(a))
            found = timings.get((a.stage, a.attempt))
            if found:
                view.load_s, view.commit_s = found.get("load_s"), found.get("commit_s")
            views.append(view)
        return views


_TIMINGS: Final = frozenset({"load_s", "commit_s"})


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


class WorkflowInfo(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    description: str = ""
    schedule: str | None = None
    stages: tuple[str, ...] = ()
    assets: tuple[str, ...] = ()  # asset keys the workflow produces
    tags: tuple[str, ...] = ()
    source: str = ""


class WorkflowsReply(_Reply, frozen=True):
    workflows: list[WorkflowInfo]


class PlannedStage(msgspec.Struct, kw_only=True, frozen=True):
    """How a planned stage is set up (what ``klaw plan`` shows beside its name)."""

    kind: str  # "stage" or "asset"
    retries: int = 0
    timeout: float | None = None
    tags: tuple[str, ...] = ()


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


class ScheduleInfo(msgspec.Struct, kw_only=True, frozen=True):
    """A cron schedule: its definition, state, next tick and newest claimed tick. Ticks are
    UTC tick keys (``2026-03-29T01:00:00Z``); times are epoch seconds."""

    name: str  # the workflow's name
    workflow: str
    cron: str
    timezone: str
    catch_up: str  # none | latest | all
    paused: bool = False
    paused_at: float | None = None
    next_tick: str | None = None  # None while paused
    last_tick: str | None = None
    last_run_id: str | None = None
    last_run_state: RunState | None = None
    last_error: str | None = None  # why the last tick started no run


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


class StageNode(msgspec.Struct, kw_only=True, frozen=True):
    """A stage in a workflow's graph."""

    name: str
    kind: str  # "stage" or "asset"
    asset: str | None = None  # the asset key it commits, for an asset stage
    description: str = ""
    retries: int = 0
    timeout: float | None = None
    tags: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()  # assets of other workflows it reads (their latest snapshot)


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
)


def error_reply(exc: KlawError) -> ErrorReply:
    return ErrorReply(code=type(exc).__name__, message=exc.message, hint=exc.hint)


# -- the wire --------------------------------------------------------------------------------
_encoder: Final = msgspec.msgpack.Encoder()
_command_decoder: Final[msgspec.msgpack.Decoder[Command]] = msgspec.msgpack.Decoder(Command)
_reply_decoder: Final[msgspec.msgpack.Decoder[Reply]] = msgspec.msgpack.Decoder(Reply)
_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_MISSING = re.compile(r"missing required field `([^`]*)`")


def encode(value: Command | Reply) -> bytes:
    """MessagePack bytes of a command (or a reply)."""
    return _encoder.encode(value)


def decode(data: bytes) -> Command:
    """The command in ``data``; a :class:`CommandError` subclass names what is wrong."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedCommandError(
            f"A command must be MessagePack bytes, not {type(data).__name__}."
        )
    if len(data) > MAX_COMMAND_BYTES:
        raise CommandTooLargeError(
            f"Command of {len(data)} bytes is over the limit of {MAX_COMMAND_BYTES} bytes.",
            hint="Commands carry references (asset key, snapshot id), never data.",
        )
    try:
        raw = msgspec.msgpack.decode(data)
    except msgspec.DecodeError as exc:
        raise MalformedCommandError(
            f"Command is not valid MessagePack: {exc}.",
            hint="Build commands with klaw.service.commands.encode.",
        ) from None
    tag = raw.get("type") if isinstance(raw, dict) else None
    if not isinstance(tag, str):
        raise MalformedCommandError(
            "A command must be a MessagePack map with a string field 'type' naming the "
            f"command; got {type(raw).__name__}"
            + (" without 'type'." if isinstance(raw, dict) else "."),
            field="type",
            hint=f"Commands: {', '.join(COMMANDS)}.",
        )
    if tag not in COMMANDS:
        close = difflib.get_close_matches(tag, list(COMMANDS), n=3)
        raise UnknownCommandError(
            f"Unknown command {tag!r}" + (f"; did you mean {', '.join(close)}?" if close else "."),
            command=tag,
            field="type",
            hint=f"Commands: {', '.join(COMMANDS)}.",
        )
    version = raw.get("version", 1)
    known = VERSIONS[tag]
    if type(version) is int and version > known:
        raise UnsupportedVersionError(
            f"{tag} version {version} is newer than this Klaw supports (version {known}).",
            command=tag,
            field="version",
            hint="Upgrade Klaw on this side, or send the older version.",
        )
    try:
        return _command_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise _invalid(tag, str(exc)) from None


def decode_reply(data: bytes) -> Reply:
    """The reply in ``data`` (the client side of :meth:`Dispatcher.handle`)."""
    try:
        return _reply_decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise MalformedCommandError(f"Reply could not be decoded: {exc}.") from None


def _invalid(tag: str, detail: str) -> InvalidCommandError:
    field: str | None = None
    at = _AT.search(detail)
    if at is not None:
        field = at.group(1) or None
        detail = detail[: at.start()]
    missing = _MISSING.search(detail)
    if missing is not None:
        field = ".".join(filter(None, (field, missing.group(1))))
    where = f", field {field!r}" if field else ""
    return InvalidCommandError(
        f"Invalid {tag} command{where}: {detail}.",
        command=tag,
        field=field,
        hint=f"See the fields of klaw.service.commands.{tag}.",
    )
