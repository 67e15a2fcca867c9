"""The lifecycle commands: versions, promotions, approvals, the audit log, bundles, drafts and
git sync, each a call on :class:`~klaw.service.lifecycle.Lifecycle` (or the catalog) and its
reply. The dispatcher hands these commands here with the :class:`Caller` who sent them."""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from klaw.errors import ConfigError, KlawError, VersionNotFoundError, WorkflowNotFoundError, rebuild
from klaw.metadata.records import VersionRecord
from klaw.protocol import (
    ApprovalsReply,
    ApproveRequest,
    AuditReply,
    BundleReply,
    CheckDraft,
    CreateVersion,
    DeleteVersion,
    DemoteVersion,
    DiffReply,
    DiffVersions,
    DraftReply,
    ExportVersion,
    GetSource,
    GetVersion,
    GetWorkflow,
    GitSyncReply,
    ImportVersion,
    ListApprovals,
    ListAudit,
    ListVersions,
    PromoteVersion,
    PromotionReply,
    RejectRequest,
    Reply,
    RetireVersion,
    SourceReply,
    SyncGit,
    VersionDetailReply,
    VersionReply,
    VersionsReply,
    WorkflowReply,
    error_reply,
    from_reply,
)
from klaw.protocol.lifecycle import VersionDetail, VersionView
from klaw.service import bundles, views
from klaw.service.lifecycle import READ_ONLY, Caller, Lifecycle, trusted_keys
from klaw.service.versions import Content, check_files, diff, graph_of, source_files

if TYPE_CHECKING:
    from klaw.service.dispatcher import Dispatcher

Handler = Callable[[Any, Caller], Reply]
# Answered where the workflow definitions are (user code: the definitions process).
DEFINITIONS: Final = (CheckDraft,)


class Releases:
    """The lifecycle commands of one dispatcher."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    @functools.cached_property
    def lifecycle(self) -> Lifecycle:
        orch = self.dispatcher.orchestrator
        return Lifecycle(orch.metadata, orch.project)

    def handlers(self) -> dict[type[Any], Handler]:
        return {
            CreateVersion: self._create,
            ListVersions: self._list,
            GetVersion: self._get,
            DiffVersions: self._diff,
            GetSource: self._source,
            DeleteVersion: self._delete,
            PromoteVersion: self._promote,
            DemoteVersion: self._demote,
            RetireVersion: self._retire,
            ListApprovals: self._approvals,
            ApproveRequest: lambda cmd, who: self._decide(cmd, who, "approve"),
            RejectRequest: lambda cmd, who: self._decide(cmd, who, "reject"),
            ListAudit: self._audit,
            ExportVersion: self._export,
            ImportVersion: self._import,
            CheckDraft: self._check_draft,
            SyncGit: self._sync,
        }

    @property
    def store(self) -> Any:
        return self.dispatcher.orchestrator.metadata

    # -- what a workflow holds ------------------------------------------------------------

    def working_copy(self, workflow: str) -> Content:
        """The content of ``workflow`` as the project's files hold it now. A folder's graph
        is made from those very files (loaded afresh), so files and graph always agree."""
        reply = self._workflow(workflow)
        kind, files = source_files(
            self.dispatcher.orchestrator.project, workflow, reply.workflow.source
        )
        graph = self.check_files(workflow, files) if kind == "folder" else graph_of(reply)
        return Content(workflow=workflow, kind=kind, files=files, graph=graph)

    def _workflow(self, workflow: str) -> WorkflowReply:
        reply = self.dispatcher.execute(GetWorkflow(workflow=workflow))
        assert isinstance(reply, WorkflowReply)
        return reply

    def content(self, workflow: str, number: int) -> tuple[VersionRecord, Content]:
        record = self.store.get_version(workflow, number)
        text = self.store.version_content(workflow, number)
        if record is None or text is None:
            found = self.store.list_versions(workflow, limit=1)
            known = f"its newest is v{found[0].version}" if found else "it has no versions"
            raise VersionNotFoundError(
                f"Workflow {workflow!r} has no version {number} ({known}).",
                hint=f"`klaw versions list {workflow}` lists them.",
            )
        return record, msgspec.json.decode(text, type=Content)

    def _view(self, record: VersionRecord, deployed: dict[int, list[str]]) -> VersionView:
        return VersionView(
            **msgspec.structs.asdict(record),
            environments=tuple(deployed.get(record.version, ())),
            read_only=record.stage in READ_ONLY,
        )

    def _deployed(self, workflow: str) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for d in self.store.list_deployments(workflow):
            found.setdefault(d.version, []).append(d.environment)
        return found

    # -- handlers -------------------------------------------------------------------------

    def _create(self, cmd: CreateVersion, caller: Caller) -> VersionReply:
        if cmd.files is None:
            content = self.working_copy(cmd.workflow)
        else:
            draft = self.check_files(cmd.workflow, cmd.files)
            content = Content(
                workflow=cmd.workflow, kind="folder", files=dict(cmd.files), graph=draft
            )
        record, created = self.lifecycle.create(content, caller, cmd.message)
        return VersionReply(
            version=self._view(record, self._deployed(cmd.workflow)), created=created
        )

    def check_files(self, workflow: str, files: dict[str, str]) -> dict[str, Any]:
        """The graph of a draft's files, or the draft's error raised."""
        reply = self.dispatcher.execute(CheckDraft(workflow=workflow, files=files))
        assert isinstance(reply, DraftReply)
        if reply.error is not None:
            raise from_reply(reply.error)
        return graph_of(reply)

    def _list(self, cmd: ListVersions, caller: Caller) -> VersionsReply:
        found = self.store.list_versions(cmd.workflow, limit=cmd.limit, before=cmd.before)
        deployments = self.store.list_deployments(cmd.workflow)
        if not found and cmd.before is None:
            self._known(cmd.workflow)
        deployed = self._deployed(cmd.workflow)
        return VersionsReply(
            versions=[self._view(r, deployed) for r in found],
            deployments=sorted(deployments, key=lambda d: _ORDER.get(d.environment, 9)),
        )

    def _known(self, workflow: str) -> None:
        """Refuse a workflow that neither the project defines nor any version holds."""
        if workflow in self.dispatcher.orchestrator.workflow_names():
            return
        raise WorkflowNotFoundError(
            f"No workflow named {workflow!r} in the project, and no version of one.",
            hint="`klaw workflows list` shows them.",
        )

    def _get(self, cmd: GetVersion, caller: Caller) -> VersionDetailReply:
        record, content = self.content(cmd.workflow, cmd.number)
        view = self._view(record, self._deployed(cmd.workflow))
        detail = VersionDetail(version=view, files=content.files, graph=content.graph)
        return VersionDetailReply(detail=detail)

    def _diff(self, cmd: DiffVersions, caller: Caller) -> DiffReply:
        _, a = self.content(cmd.workflow, cmd.a)
        if cmd.b is None:
            b, label = self.working_copy(cmd.workflow), "working-copy"
        else:
            b, label = self.content(cmd.workflow, cmd.b)[1], f"v{cmd.b}"
        found = diff(a, b, f"v{cmd.a}", label)
        return DiffReply(workflow=cmd.workflow, a=cmd.a, b=cmd.b, **msgspec.structs.asdict(found))

    def _source(self, cmd: GetSource, caller: Caller) -> SourceReply:
        content = self.working_copy(cmd.workflow)
        held = self.store.version_by_hash(cmd.workflow, content.hash)
        return SourceReply(
            workflow=cmd.workflow,
            kind=content.kind,
            files=content.files,
            hash=content.hash,
            version=held.version if held is not None else None,
        )

    def _delete(self, cmd: DeleteVersion, caller: Caller) -> VersionReply:
        record = self.lifecycle.delete(cmd.workflow, cmd.number, caller)
        return VersionReply(version=self._view(record, {}), created=False)

    def _promote(self, cmd: PromoteVersion, caller: Caller) -> PromotionReply:
        request, deployment = self.lifecycle.promote(cmd.workflow, cmd.number, cmd.to, caller)
        return PromotionReply(request=request, deployment=deployment)

    def _demote(self, cmd: DemoteVersion, caller: Caller) -> PromotionReply:
        return PromotionReply(deployment=self.lifecycle.demote(cmd.workflow, caller))

    def _retire(self, cmd: RetireVersion, caller: Caller) -> VersionReply:
        record = self.lifecycle.retire(cmd.workflow, cmd.number, caller)
        return VersionReply(version=self._view(record, {}), created=False)

    def _approvals(self, cmd: ListApprovals, caller: Caller) -> ApprovalsReply:
        state = None if cmd.state == "all" else cmd.state
        found = self.store.list_requests(workflow=cmd.workflow, state=state, limit=cmd.limit)
        return ApprovalsReply(requests=found)

    def _decide(self, cmd: ApproveRequest | RejectRequest, caller: Caller, what: str) -> Reply:
        request, deployment = self.lifecycle.decide(cmd.request_id, caller, what, cmd.comment)
        return PromotionReply(request=request, deployment=deployment)

    def _audit(self, cmd: ListAudit, caller: Caller) -> AuditReply:
        entries = self.store.list_audit(workflow=cmd.workflow, limit=cmd.limit, before=cmd.before)
        return AuditReply(entries=entries)

    def _export(self, cmd: ExportVersion, caller: Caller) -> BundleReply:
        return BundleReply(bundle=msgspec.to_builtins(self.bundle(cmd.workflow, cmd.number)))

    def bundle(self, workflow: str, number: int) -> bundles.Bundle:
        record, content = self.content(workflow, number)
        return bundles.Bundle(
            klaw_bundle=content.format,
            workflow=workflow,
            version=record.version,
            kind=content.kind,
            hash=record.hash,
            author=record.author,
            message=record.message,
            created_at=record.created_at,
            files=content.files,
            graph=content.graph,
        )

    def _import(self, cmd: ImportVersion, caller: Caller) -> VersionReply:
        project = self.dispatcher.orchestrator.project
        bundle = bundles.read(cmd.bundle, trusted_keys(project))
        content = bundle.content
        if content.kind == "folder":  # it must load here too: a broken bundle makes no version
            self.check_files(content.workflow, content.files)
        record, created = self.lifecycle.import_version(
            content, bundle.version, caller, bundle.message, replace=cmd.replace
        )
        view = self._view(record, self._deployed(record.workflow))
        return VersionReply(version=view, created=created)

    def _check_draft(self, cmd: CheckDraft, caller: Caller) -> DraftReply:
        """Load the draft's files in a scratch folder, then validate and plan them."""
        from klaw.service.folders import load_folder

        with tempfile.TemporaryDirectory(prefix="klaw-draft-") as scratch:
            try:
                check_files(cmd.workflow, cmd.files)
                folder = Path(scratch, cmd.workflow)
                _write_draft(folder, cmd.workflow, cmd.files)
                wf = load_folder(folder)
                catalog = self.dispatcher.orchestrator.catalog
                graph, plan = catalog.plan_of(wf, cmd.selection)
                shown = views.workflow_reply(wf, graph)
            except KlawError as exc:  # named as the draft's files, not the scratch folder
                said = rebuild(
                    type(exc),
                    exc.message.replace(scratch + os.sep, ""),
                    exc.hint,
                    exc.field_values(),
                )
                return DraftReply(workflow=cmd.workflow, error=error_reply(said))
        return DraftReply(
            workflow=cmd.workflow,
            plan=views.plan_reply(plan),
            stages=shown.stages,
            edges=shown.edges,
            params_schema=shown.params_schema,
        )

    def _sync(self, cmd: SyncGit, caller: Caller) -> GitSyncReply:
        from klaw.service.gitsync import sync

        return sync(self, caller, dry_run=cmd.dry_run)


_ORDER: Final = {"dev": 0, "qa": 1, "uat": 2, "prod": 3}


def _write_draft(folder: Path, workflow: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        try:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8")
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"Draft {workflow!r}: cannot write the file {name!r}: {exc}.",
                hint="Give each file a plain relative path, like config.yaml or workflow.sql.",
            ) from None


def version_of(store: Any, workflow: str, files_hash: str) -> int | None:
    """The version of ``workflow`` whose content hash is ``files_hash``, if one is."""
    held = store.version_by_hash(workflow, files_hash)
    return held.version if held is not None else None
