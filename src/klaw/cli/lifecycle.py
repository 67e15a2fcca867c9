"""Commands of the pipeline lifecycle: ``klaw versions``, ``promote``, ``demote``, ``retire``,
``klaw approvals``, ``klaw audit`` and ``klaw git sync``. Each is one typed command through the
backend (the local project, ``--server`` or ``--url``), so the CLI, the API, the UI and MCP
share them; locally the caller is ``KLAW_USER`` (else the login name)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import typer

from klaw.cli.app import STATE, OutputOpt, app
from klaw.cli.backend import ask
from klaw.cli.output import Format, console, emit_json, table, when

if TYPE_CHECKING:
    from klaw.metadata.records import ApprovalRecord
    from klaw.protocol import PromotionReply

versions_app = typer.Typer(
    help="Pipeline versions: create, list, show, diff, export, import.", no_args_is_help=True
)
approvals_app = typer.Typer(help="Promotion requests: list, approve, reject.", no_args_is_help=True)
audit_app = typer.Typer(help="The append-only audit log.", no_args_is_help=True)
git_app = typer.Typer(help="Follow a git repository of folder workflows.", no_args_is_help=True)
app.add_typer(versions_app, name="versions")
app.add_typer(approvals_app, name="approvals")
app.add_typer(audit_app, name="audit")
app.add_typer(git_app, name="git")

WorkflowArg = Annotated[str, typer.Argument(help="Workflow name.")]
NumberArg = Annotated[int, typer.Argument(help="Version number (as `klaw versions list` shows).")]
RequestArg = Annotated[str, typer.Argument(help="Request id (as `klaw approvals list` shows).")]
CommentOpt = Annotated[str, typer.Option("--comment", "-m", help="Why (kept in the audit log).")]


@versions_app.command("create")
def versions_create(
    workflow: WorkflowArg,
    message: Annotated[str, typer.Option("--message", "-m", help="What changed.")] = "",
    output: OutputOpt = Format.TABLE,
) -> None:
    """Make a version of a workflow from its files as they are now (deployed to dev). The
    same files make no new version."""
    from klaw.protocol import CreateVersion, VersionReply

    made = ask(STATE.backend(), CreateVersion(workflow=workflow, message=message), VersionReply)
    if output is Format.JSON:
        emit_json(made)
        return
    v = made.version
    said = "created" if made.created else "unchanged: these files are already"
    console().print(
        f"{said} {v.workflow} v{v.version} ({v.hash[:12]}, {v.stages} stages, in {v.stage})",
        highlight=False,
    )


@versions_app.command("list")
def versions_list(
    workflow: WorkflowArg,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    output: OutputOpt = Format.TABLE,
) -> None:
    """A workflow's versions, newest first, and what each environment has deployed."""
    from klaw.protocol import ListVersions, VersionsReply

    found = ask(STATE.backend(), ListVersions(workflow=workflow, limit=limit), VersionsReply)
    if output is Format.JSON:
        emit_json(found)
        return
    if found.deployments:
        deployed = ", ".join(f"{d.environment}: v{d.version}" for d in found.deployments)
        console().print(f"deployed: {deployed}", highlight=False)
    if not found.versions:
        console().print(
            f"{workflow} has no versions yet: `klaw versions create {workflow} -m ...`",
            highlight=False,
        )
        return
    table(
        f"Versions of {workflow}",
        ["version", "hash", "stage", "deployed in", "author", "created", "message"],
        [
            [
                f"v{v.version}",
                v.hash[:12],
                v.stage + (" (read-only)" if v.read_only else ""),
                ", ".join(v.environments) or "-",
                v.author,
                when(v.created_at),
                v.message or "-",
            ]
            for v in found.versions
        ],
    )


@versions_app.command("show")
def versions_show(
    workflow: WorkflowArg, number: NumberArg, output: OutputOpt = Format.TABLE
) -> None:
    """One version: who made it, where it is, its files and its stages."""
    from klaw.protocol import GetVersion, VersionDetailReply

    found = ask(STATE.backend(), GetVersion(workflow=workflow, number=number), VersionDetailReply)
    if output is Format.JSON:
        emit_json(found.detail)
        return
    v = found.detail.version
    out = console()
    out.print(f"{v.workflow} v{v.version}  {v.hash}", highlight=False)
    out.print(f"  {v.kind} workflow, format {v.format}, stage {v.stage}", highlight=False)
    out.print(f"  by {v.author}, {when(v.created_at)}: {v.message or '-'}", highlight=False)
    out.print(f"  deployed in: {', '.join(v.environments) or '-'}", highlight=False)
    out.print("  files:", highlight=False)
    for name, text in found.detail.files.items():
        out.print(f"    {name} ({len(text.splitlines())} lines)", highlight=False)
    stages = found.detail.graph.get("stages", [])
    if isinstance(stages, list):
        out.print(f"  stages ({len(stages)}):", highlight=False)
        for s in stages:
            deps = ", ".join(s.get("deps", ())) or "-"
            out.print(f"    {s['name']} ({s.get('kind')}) <- {deps}", highlight=False)


@versions_app.command("diff")
def versions_diff(
    workflow: WorkflowArg,
    a: Annotated[int, typer.Argument(help="The older version.")],
    b: Annotated[int | None, typer.Argument(help="The newer one (default: the files now).")] = None,
    output: OutputOpt = Format.TABLE,
) -> None:
    """How version B (default: the working copy) differs from version A: stages added,
    removed and changed, then each changed file as a unified diff."""
    from klaw.protocol import DiffReply, DiffVersions

    found = ask(STATE.backend(), DiffVersions(workflow=workflow, a=a, b=b), DiffReply)
    if output is Format.JSON:
        emit_json(found)
        return
    out = console()
    other = f"v{b}" if b is not None else "the working copy"
    if not found.files:
        out.print(f"v{a} and {other} have the same files", highlight=False)
        return
    for name in found.stages_added:
        out.print(f"[green]+ stage {name}[/green]", highlight=False)
    for name in found.stages_removed:
        out.print(f"[red]- stage {name}[/red]", highlight=False)
    for change in found.stages_changed:
        out.print(f"~ stage {change.name}: {', '.join(change.fields)}", highlight=False)
    for file in found.files:
        out.print(f"\n[bold]{file.change} {file.path}[/bold]", highlight=False)
        for line in file.diff.splitlines():
            style = "green" if line.startswith("+") else "red" if line.startswith("-") else ""
            out.print(f"[{style}]{_escape(line)}[/{style}]" if style else _escape(line))


def _escape(line: str) -> str:
    from rich.markup import escape

    return escape(line)


@versions_app.command("delete")
def versions_delete(
    workflow: WorkflowArg, number: NumberArg, output: OutputOpt = Format.TABLE
) -> None:
    """Delete a version in dev or qa (versions in uat, prod and retired are read-only)."""
    from klaw.protocol import DeleteVersion, VersionReply

    gone = ask(STATE.backend(), DeleteVersion(workflow=workflow, number=number), VersionReply)
    if output is Format.JSON:
        emit_json(gone)
        return
    console().print(f"deleted {workflow} v{number}", highlight=False)


@versions_app.command("export")
def versions_export(
    workflow: WorkflowArg,
    number: NumberArg,
    sign: Annotated[
        Path | None, typer.Option("--sign", help="Sign with this Ed25519 private key (PEM).")
    ] = None,
) -> None:
    """Write a version as a self-contained JSON bundle on stdout
    (`klaw versions export WF 3 > wf.klaw.json`)."""
    from klaw.protocol import BundleReply, ExportVersion
    from klaw.service import bundles

    found = ask(STATE.backend(), ExportVersion(workflow=workflow, number=number), BundleReply)
    bundle = bundles.read(found.bundle)
    if sign is not None:
        bundle = bundles.sign(bundle, sign)
    sys.stdout.write(json.dumps(msgspec.to_builtins(bundle), indent=2, sort_keys=True) + "\n")


@versions_app.command("import")
def versions_import(
    file: Annotated[Path, typer.Argument(help="A bundle written by `klaw versions export`.")],
    replace: Annotated[
        bool, typer.Option(help="Replace the version of the bundle's number (not read-only).")
    ] = False,
    output: OutputOpt = Format.TABLE,
) -> None:
    """Import a bundle as a new dev version. Refused when its hash or signature does not
    check, its format is unknown, or it would replace a read-only version."""
    from klaw.errors import ConfigError
    from klaw.protocol import ImportVersion, VersionReply
    from klaw.service import bundles

    try:
        text = file.read_bytes() if str(file) != "-" else sys.stdin.buffer.read()
    except OSError as exc:
        raise ConfigError(f"Cannot read {file}: {exc.strerror or exc}.") from None
    raw: dict[str, Any] = msgspec.to_builtins(bundles.read(text))
    made = ask(STATE.backend(), ImportVersion(bundle=raw, replace=replace), VersionReply)
    if output is Format.JSON:
        emit_json(made)
        return
    v = made.version
    said = "imported" if made.created else "unchanged: this content is already"
    console().print(f"{said} {v.workflow} v{v.version} ({v.hash[:12]})", highlight=False)


@versions_app.command("keygen")
def versions_keygen(
    key_file: Annotated[Path, typer.Argument(help="Where to write the private key (PEM).")],
) -> None:
    """Make an Ed25519 key to sign bundles with; prints the public key for trusted_keys."""
    from klaw.service import bundles

    public = bundles.keygen(key_file)
    console().print(
        f"wrote {key_file} (private, keep it secret) and {key_file}.pub\npublic key: {public}\n"
        f'trust it in the importing project: [lifecycle] trusted_keys = ["{public}"]',
        highlight=False,
    )


@app.command("promote")
def promote(
    workflow: WorkflowArg,
    number: NumberArg,
    to: Annotated[str, typer.Option("--to", help="The next environment: qa, uat or prod.")],
    output: OutputOpt = Format.TABLE,
) -> None:
    """Promote a version to the next environment (uat and prod: after an approval)."""
    from klaw.protocol import PromoteVersion, PromotionReply

    done = ask(
        STATE.backend(), PromoteVersion(workflow=workflow, number=number, to=to), PromotionReply
    )
    _said(done, output)


@app.command("demote")
def demote(workflow: WorkflowArg, output: OutputOpt = Format.TABLE) -> None:
    """Take the version deployed in uat back to qa."""
    from klaw.protocol import DemoteVersion, PromotionReply

    _said(ask(STATE.backend(), DemoteVersion(workflow=workflow), PromotionReply), output)


@app.command("retire")
def retire(workflow: WorkflowArg, number: NumberArg, output: OutputOpt = Format.TABLE) -> None:
    """Retire a version: it leaves every environment and is never deployed again."""
    from klaw.protocol import RetireVersion, VersionReply

    done = ask(STATE.backend(), RetireVersion(workflow=workflow, number=number), VersionReply)
    if output is Format.JSON:
        emit_json(done)
        return
    console().print(f"retired {workflow} v{number}", highlight=False)


def _said(done: PromotionReply, output: Format) -> None:
    if output is Format.JSON:
        emit_json(done)
        return
    if done.deployment is not None:
        d = done.deployment
        console().print(
            f"{d.workflow} v{d.version} is deployed in {d.environment}", highlight=False
        )
    elif done.request is not None:
        r = done.request
        console().print(
            f"request {r.request_id}: {r.workflow} v{r.version} to {r.environment} is {r.state} "
            f"({_count(r)} approvals of {r.required}); an approver runs "
            f"`klaw approvals approve {r.request_id}`",
            highlight=False,
        )


def _count(r: ApprovalRecord) -> int:
    return sum(d.decision == "approve" for d in r.decisions)


@approvals_app.command("list")
def approvals_list(
    workflow: Annotated[str | None, typer.Option(help="Of this workflow only.")] = None,
    state: Annotated[str, typer.Option(help="pending, approved, rejected or all.")] = "pending",
    output: OutputOpt = Format.TABLE,
) -> None:
    """Promotion requests, newest first (pending ones by default)."""
    from klaw.protocol import ApprovalsReply, ListApprovals

    found = ask(STATE.backend(), ListApprovals(workflow=workflow, state=state), ApprovalsReply)
    if output is Format.JSON:
        emit_json(found)
        return
    if not found.requests:
        console().print(
            "no requests" if state == "all" else f"no {state} requests", highlight=False
        )
        return
    table(
        "Promotion requests",
        ["request", "workflow", "version", "to", "requester", "state", "approvals", "asked"],
        [
            [
                r.request_id,
                r.workflow,
                f"v{r.version}",
                r.environment,
                r.requester,
                r.state,
                f"{_count(r)}/{r.required}",
                when(r.created_at),
            ]
            for r in found.requests
        ],
    )


@approvals_app.command("approve")
def approvals_approve(
    request: RequestArg, comment: CommentOpt = "", output: OutputOpt = Format.TABLE
) -> None:
    """Approve a pending request (approver role; not the requester)."""
    from klaw.protocol import ApproveRequest, PromotionReply

    _said(
        ask(STATE.backend(), ApproveRequest(request_id=request, comment=comment), PromotionReply),
        output,
    )


@approvals_app.command("reject")
def approvals_reject(
    request: RequestArg, comment: CommentOpt = "", output: OutputOpt = Format.TABLE
) -> None:
    """Reject a pending request (approver role; not the requester)."""
    from klaw.protocol import PromotionReply, RejectRequest

    _said(
        ask(STATE.backend(), RejectRequest(request_id=request, comment=comment), PromotionReply),
        output,
    )


@audit_app.command("list")
def audit_list(
    workflow: Annotated[str | None, typer.Option(help="Of this workflow only.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 100,
    before: Annotated[int | None, typer.Option(help="Older than this seq (a cursor).")] = None,
    output: OutputOpt = Format.TABLE,
) -> None:
    """The audit log, newest first: every version made, request, decision, promotion,
    demotion and retirement, with who did it."""
    from klaw.protocol import AuditReply, ListAudit

    found = ask(
        STATE.backend(), ListAudit(workflow=workflow, limit=limit, before=before), AuditReply
    )
    if output is Format.JSON:
        emit_json(found)
        return
    table(
        "Audit log",
        ["seq", "when", "actor", "action", "workflow", "version", "env", "detail"],
        [
            [
                str(e.seq),
                when(e.at),
                e.actor,
                e.action,
                e.workflow or "-",
                f"v{e.version}" if e.version is not None else "-",
                e.environment or "-",
                ", ".join(f"{k}={v}" for k, v in e.detail.items()) or "-",
            ]
            for e in found.entries
        ],
    )


@git_app.command("sync")
def git_sync(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would change.")] = False,
    output: OutputOpt = Format.TABLE,
) -> None:
    """Sync the project's git repository ([lifecycle.git]): each changed workflow folder
    becomes a new dev version; a folder that does not load is reported and changes nothing."""
    from klaw.protocol import GitSyncReply, SyncGit

    found = ask(STATE.backend(), SyncGit(dry_run=dry_run), GitSyncReply)
    if output is Format.JSON:
        emit_json(found)
    else:
        out = console()
        out.print(f"{found.repository} {found.branch} at {found.commit[:12]}", highlight=False)
        for c in found.changes:
            version = f" v{c.version}" if c.version is not None else ""
            detail = f": {c.error}" if c.error else ""
            out.print(f"  {c.action:9} {c.workflow}{version}{detail}", highlight=False)
    if any(c.action == "error" for c in found.changes):
        raise typer.Exit(1)
