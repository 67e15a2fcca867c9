"""The command table: how each typed command travels over the HTTP API, defined once.

Every command of :data:`~klaw.protocol.commands.COMMANDS` has an entry here: its HTTP method,
path (under ``/api/v1``; ``{field}`` segments are the command's fields), route name, minimum
role, and which of its fields go in the query or the JSON body (and under which wire name). A
command with no HTTP route (a remote agent's ``Heartbeat`` and reports) says so with ``None``.

What is derived from it:

- the HTTP client's requests (:func:`request`), so ``klaw --url`` and ``klaw.Client`` over HTTP
  send exactly what the routes read;
- the role of every API route (``klaw.api.http.routes.ROLES``), by route name;
- the FastAPI routes' method, path, name and status (``klaw.api.http.routes`` declares each
  route's typed handler against its entry, and ``create_app`` refuses a route that does not
  match the table).

The Flight dispatcher needs no entry: a command travels there as itself.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import quote

import msgspec

from klaw.errors import NotOverHttpError
from klaw.protocol.commands import (
    COMMANDS,
    ApproveRequest,
    CancelRun,
    CheckDraft,
    CreateToken,
    CreateVersion,
    DeleteVersion,
    DemoteVersion,
    DiffVersions,
    ExportVersion,
    GetAsset,
    GetLineage,
    GetOverview,
    GetRun,
    GetSource,
    GetVersion,
    GetWorkflow,
    ImportVersion,
    LastRuns,
    ListApprovals,
    ListAssets,
    ListAttempts,
    ListAudit,
    ListEvents,
    ListRuns,
    ListSchedules,
    ListSnapshots,
    ListTokens,
    ListVersions,
    ListWorkflows,
    PauseSchedule,
    PlanWorkflow,
    PreviewRows,
    PromoteVersion,
    PruneMetadata,
    ReadLogPage,
    ReadLogs,
    RejectRequest,
    ResumeSchedule,
    RetireVersion,
    RevokeToken,
    SubmitRun,
    SyncGit,
    ValidateWorkflows,
)

PREFIX: Final = "/api/v1"
Request = tuple[str, str, dict[str, Any], Any]  # method, path, query, JSON body (None: none)
Method = Literal["GET", "POST"]
_FIELD: Final = re.compile(r"\{(\w+)(:path)?\}")


@dataclass(frozen=True, slots=True)
class Http:
    """How one command is an HTTP request. ``path`` is under :data:`PREFIX`; ``{f}`` is the
    field ``f`` as one path segment, ``{f:path}`` keeps its slashes (asset keys). ``query`` and
    ``body`` name the fields sent there; ``names`` renames a field on the wire. A field left at
    its default is not sent (the route has the same default). ``build``: a request made by hand
    (what no table row can say), in place of the generic one."""

    method: Method
    path: str
    name: str
    role: str  # viewer, operator, approver, admin
    query: tuple[str, ...] = ()
    body: tuple[str, ...] = ()
    names: Mapping[str, str] = field(default_factory=dict)
    status: int = 200
    build: Callable[[Any], Request] | None = None
    serve: bool = True  # False: the route is another command's (it answers this request too)
    safe: bool = False  # a POST that changes nothing (it posts only to send its body)
    headers: Mapping[str, str] = field(default_factory=dict)  # sent with every reply

    def request(self, cmd: msgspec.Struct) -> Request:
        if self.build is not None:
            return self.build(cmd)
        path = _FIELD.sub(lambda m: _segment(getattr(cmd, m.group(1)), bool(m.group(2))), self.path)
        query = {self.names.get(f, f): _wire(getattr(cmd, f)) for f in self.query if _set(cmd, f)}
        body = {self.names.get(f, f): _wire(getattr(cmd, f)) for f in self.body}
        return self.method, PREFIX + path, query, body if self.body else None

    @property
    def path_fields(self) -> tuple[str, ...]:
        return tuple(m.group(1) for m in _FIELD.finditer(self.path))


def _set(cmd: msgspec.Struct, name: str) -> bool:
    """Whether ``cmd`` has its field ``name`` at other than its default."""
    info = {f.name: f for f in msgspec.structs.fields(cmd)}[name]
    value = getattr(cmd, name)
    if info.default is not msgspec.NODEFAULT:
        return bool(value != info.default)
    if info.default_factory is not msgspec.NODEFAULT:
        return bool(value != info.default_factory())
    return True


def _wire(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_wire(v) for v in value]
    return value


def _segment(value: object, keep_slashes: bool) -> str:
    return quote(str(value), safe="/" if keep_slashes else "")


def _submit(cmd: SubmitRun) -> Request:
    """``POST /runs`` (or ``/runs/{id}/resume``): the server's settings decide the executor
    and its workers, so a command that names them is refused rather than half-sent."""
    unsupported = [
        name
        for name, given in (("executor", cmd.executor), ("max_workers", cmd.max_workers))
        if given is not None
    ]
    if unsupported:
        raise NotOverHttpError(
            f"The HTTP API's POST /runs takes no {' or '.join(unsupported)}; the server's "
            "settings decide them.",
            hint="Leave out --executor / --max-workers, or use --server (Arrow Flight).",
        )
    if cmd.resume is not None:
        return "POST", f"{PREFIX}/runs/{_segment(cmd.resume, False)}/resume", {}, None
    body = {
        "workflow": cmd.workflow,
        "params": cmd.params,
        "selection": cmd.selection,
        "fail_fast": cmd.fail_fast,
    }
    if cmd.environment is not None:
        body["environment"] = cmd.environment
    return "POST", f"{PREFIX}/runs", {}, body


_V, _O, _P, _A = "viewer", "operator", "approver", "admin"
_LOGS: Final = "/runs/{run_id}/logs"
_VERSIONS: Final = "/workflows/{workflow}/versions"
_VERSION: Final = _VERSIONS + "/{number}"

HTTP: Final[dict[type[msgspec.Struct], Http | None]] = {
    ListWorkflows: Http("GET", "/workflows", "list_workflows", _V),
    GetWorkflow: Http("GET", "/workflows/{workflow}", "get_workflow", _V, query=("layout",)),
    PlanWorkflow: Http(
        "GET",
        "/workflows/{workflow}/plan",
        "plan_workflow",
        _V,
        query=("selection",),
        names={"selection": "select"},
    ),
    ValidateWorkflows: Http(
        "POST", "/workflows/validate", "validate_workflows", _V, body=("workflows",), safe=True
    ),
    SubmitRun: Http("POST", "/runs", "submit_run", _O, status=201, build=_submit),
    ListRuns: Http(
        "GET",
        "/runs",
        "list_runs",
        _V,
        query=("workflow", "states", "limit", "before", "since", "until"),
        names={"states": "state"},
    ),
    GetRun: Http("GET", "/runs/{run_id}", "get_run", _V),
    LastRuns: Http(
        "GET",
        "/last-runs",
        "last_runs",
        _V,
        query=("workflows", "limit"),
        names={"workflows": "workflow"},
    ),
    CancelRun: Http("POST", "/runs/{run_id}/cancel", "cancel_run", _O, query=("wait",)),
    ListAttempts: Http("GET", "/runs/{run_id}/attempts", "list_attempts", _V),
    ListEvents: Http(
        "GET",
        "/runs/{run_id}/events",
        "list_events",
        _V,
        query=("after_seq", "wait"),
        names={"after_seq": "after"},
    ),
    ReadLogs: Http("GET", _LOGS, "read_logs", _V, query=("stage",), serve=False),
    ReadLogPage: Http(
        "GET",
        _LOGS,
        "read_logs",
        _V,
        query=("stage", "after_seq", "limit", "tail"),
        names={"after_seq": "after"},
    ),
    ListAssets: Http("GET", "/assets", "list_assets", _V),
    GetAsset: Http("GET", "/assets/{key:path}", "get_asset", _V),
    ListSnapshots: Http(
        "GET", "/assets/{key:path}/snapshots", "list_snapshots", _V, query=("limit",)
    ),
    PreviewRows: Http(
        "GET", "/assets/{key:path}/rows", "preview_rows", _V, query=("snapshot", "limit")
    ),
    GetLineage: Http("GET", "/assets/{key:path}/lineage", "asset_lineage", _V),
    ListSchedules: Http("GET", "/schedules", "list_schedules", _V),
    PauseSchedule: Http("POST", "/schedules/{name}/pause", "pause_schedule", _O),
    ResumeSchedule: Http("POST", "/schedules/{name}/resume", "resume_schedule", _O),
    GetOverview: Http("GET", "/overview", "get_overview", _V, query=("hours", "buckets")),
    CreateToken: Http(
        "POST",
        "/tokens",
        "create_token",
        _A,
        body=("name", "role", "expires_in"),
        status=201,
        headers={"Cache-Control": "no-store"},  # the reply holds the token's secret
    ),
    ListTokens: Http("GET", "/tokens", "list_tokens", _A),
    RevokeToken: Http("POST", "/tokens/{token_id}/revoke", "revoke_token", _A),
    PruneMetadata: Http("POST", "/db/prune", "prune_metadata", _A, query=("older_than",)),
    # the pipeline lifecycle
    ListVersions: Http("GET", _VERSIONS, "list_versions", _V, query=("limit", "before")),
    CreateVersion: Http(
        "POST", _VERSIONS, "create_version", _O, body=("message", "files"), status=201
    ),
    GetVersion: Http("GET", _VERSION, "get_version", _V),
    DeleteVersion: Http("POST", _VERSION + "/delete", "delete_version", _O),
    DiffVersions: Http("GET", "/workflows/{workflow}/diff", "diff_versions", _V, query=("a", "b")),
    GetSource: Http("GET", "/workflows/{workflow}/source", "get_source", _V),
    PromoteVersion: Http("POST", _VERSION + "/promote", "promote_version", _O, query=("to",)),
    DemoteVersion: Http("POST", "/workflows/{workflow}/demote", "demote_version", _O),
    RetireVersion: Http("POST", _VERSION + "/retire", "retire_version", _P),
    ExportVersion: Http("GET", _VERSION + "/bundle", "export_version", _V),
    ImportVersion: Http(
        "POST", "/versions/import", "import_version", _O, body=("bundle", "replace"), status=201
    ),
    ListApprovals: Http(
        "GET", "/approvals", "list_approvals", _V, query=("workflow", "state", "limit")
    ),
    ApproveRequest: Http(
        "POST", "/approvals/{request_id}/approve", "approve_request", _P, body=("comment",)
    ),
    RejectRequest: Http(
        "POST", "/approvals/{request_id}/reject", "reject_request", _P, body=("comment",)
    ),
    ListAudit: Http("GET", "/audit", "list_audit", _V, query=("workflow", "limit", "before")),
    CheckDraft: Http(
        "POST",
        "/drafts/check",
        "check_draft",
        _O,
        body=("workflow", "files", "selection"),
        safe=True,
    ),
    SyncGit: Http("POST", "/git/sync", "sync_git", _O, query=("dry_run",)),
    # a remote agent's calls: Arrow Flight only
    **{COMMANDS[name]: None for name in ("Ping", "Heartbeat", "CompleteAttempt", "FailAttempt")},
}

# Routes that are no command of their own, with their minimum roles: the run's live stream
# (events and log lines), a resume (a SubmitRun with ``resume``), and who a token is.
EXTRA_ROUTES: Final[dict[str, str]] = {
    "stream_run": _V,
    "resume_run": _O,
    "who_am_i": _V,
}


def request(cmd: msgspec.Struct) -> Request:
    """The HTTP request of ``cmd``: method, path, query, JSON body; NotOverHttpError for a
    command the HTTP API does not take."""
    found = HTTP.get(type(cmd))
    if found is None:
        raise NotOverHttpError(
            f"{type(cmd).__name__} has no route in the Klaw HTTP API.",
            hint="Send it over Arrow Flight instead (--server / KLAW_SERVER, `klaw server`).",
        )
    return found.request(cmd)


def roles() -> dict[str, str]:
    """The minimum role of every API route, by route name."""
    found = {http.name: http.role for http in HTTP.values() if http is not None}
    return {**found, **EXTRA_ROUTES}
