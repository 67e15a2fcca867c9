"""The pipeline lifecycle: versions move through ``dev -> qa -> uat -> prod -> retired``.

- Making a version deploys it to ``dev``. ``promote`` moves a version one environment on:
  to ``qa`` at once (unless the policy asks for approvals there too), to ``uat`` and ``prod``
  through an approval request that approvers other than the requester approve.
- ``demote`` takes the version in ``uat`` back to ``qa``; ``retire`` ends a version.
- Versions in ``uat``, ``prod`` and ``retired`` are read-only: nothing replaces or deletes
  them.
- Every request, decision, promotion, demotion and retirement is an entry of the append-only
  audit log, written in the same transaction as the change it records.

Each change is one metadata transaction serialised per workflow
(:meth:`~klaw.metadata.sql.SqlMetadataStore.change`): of two promotions at once, one wins and
the other is refused with what the first did.
"""

from __future__ import annotations

import getpass
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import msgspec

from klaw.errors import (
    ApprovalError,
    ConfigError,
    PromotionError,
    ReadOnlyVersionError,
    VersionNotFoundError,
)
from klaw.metadata.lifecycle import LifecycleTx
from klaw.metadata.records import (
    ApprovalRecord,
    AuditRecord,
    DecisionRecord,
    DeploymentRecord,
    VersionRecord,
)
from klaw.service.project import Project
from klaw.service.versions import Content

T = TypeVar("T")
ENVIRONMENTS: Final = ("dev", "qa", "uat", "prod")  # where a version can be deployed, in order
RETIRED: Final = "retired"
STAGES: Final = (*ENVIRONMENTS, RETIRED)
READ_ONLY: Final = frozenset({"uat", "prod", RETIRED})
APPROVED: Final = frozenset({"uat", "prod"})  # promotions there always need an approval
ROLES: Final = ("viewer", "operator", "approver", "admin")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks for a change: ``subject`` as the API names them (``token:ID (name)``,
    ``oidc:SUB``, ``local:USER``) and their role label."""

    subject: str
    role: str = "admin"

    @classmethod
    def local(cls) -> Caller:
        """The person at this terminal: ``KLAW_USER``, else the login name (admin: a local
        project is theirs)."""
        return cls(f"local:{os.environ.get('KLAW_USER') or getpass.getuser()}", "admin")

    @property
    def name(self) -> str:
        """The short name: a stored token's name, or the subject after its ``kind:``."""
        if self.subject.endswith(")") and " (" in self.subject:
            return self.subject.rsplit(" (", 1)[1][:-1]
        return self.subject.split(":", 1)[-1]

    def at_least(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role) if self.role in ROLES else False

    def named(self, entries: tuple[str, ...]) -> bool:
        return any(e in (self.subject, self.name) for e in entries)


@dataclass(frozen=True, slots=True)
class Policy:
    """An environment's promotion policy: how many approvals a promotion to it needs, and
    who may give them (empty: anyone with the approver role)."""

    approvals: int = 0
    approvers: tuple[str, ...] = ()


def policies(project: Project) -> dict[str, Policy]:
    """The policy of each environment: ``[lifecycle.environments.ENV]`` in ``klaw.toml``
    (``approvals``, ``approvers``); uat and prod need at least one approval whatever it says."""
    table = project.lifecycle.get("environments", {})
    where = f"{project.file} [lifecycle.environments]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table of environments.")
    unknown = set(table) - set(ENVIRONMENTS[1:])
    if unknown:
        raise ConfigError(
            f"{where}: unknown environment(s) {', '.join(sorted(unknown))}.",
            hint="Environments with a policy: qa, uat, prod.",
        )
    found: dict[str, Policy] = {}
    for env in ENVIRONMENTS[1:]:
        given = table.get(env, {})
        if not isinstance(given, dict) or set(given) - {"approvals", "approvers"}:
            raise ConfigError(
                f"{where}.{env}: give only 'approvals' (a count) and 'approvers' (names).",
                hint="For example: [lifecycle.environments.prod] approvals = 2, approvers = "
                '["alice", "bob"].',
            )
        least = 1 if env in APPROVED else 0
        count = given.get("approvals", least)
        approvers = given.get("approvers", [])
        if not isinstance(count, int) or isinstance(count, bool) or count < least:
            raise ConfigError(
                f"{where}.{env}: approvals must be a whole number of at least {least}.",
                hint="Promotions to uat and prod always need an approval.",
            )
        if not isinstance(approvers, list) or not all(isinstance(a, str) for a in approvers):
            raise ConfigError(f"{where}.{env}: approvers must be a list of names.")
        found[env] = Policy(count, tuple(approvers))
    return found


def trusted_keys(project: Project) -> tuple[str, ...]:
    """``[lifecycle] trusted_keys``: the public keys (base64) whose signed bundles import."""
    keys = project.lifecycle.get("trusted_keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ConfigError(
            f"{project.file} [lifecycle] trusted_keys must be a list of public keys (base64)."
        )
    return tuple(keys)


def _next(stage: str) -> str | None:
    i = ENVIRONMENTS.index(stage) if stage in ENVIRONMENTS else len(ENVIRONMENTS)
    return ENVIRONMENTS[i + 1] if i + 1 < len(ENVIRONMENTS) else None


class Lifecycle:
    """The lifecycle rules over one metadata store."""

    def __init__(
        self, store: Any, project: Project, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.project = project
        self.clock = clock

    def _change(self, workflow: str, action: str, work: Callable[[LifecycleTx], T]) -> T:
        done: T = self.store.change(workflow, action, work)
        return done

    @property
    def policies(self) -> dict[str, Policy]:
        return policies(self.project)

    # -- versions -------------------------------------------------------------------------

    def create(
        self, content: Content, caller: Caller, message: str, *, action: str = "version.created"
    ) -> tuple[VersionRecord, bool]:
        """A new version of ``content`` (deployed to dev), or the version that already has
        this content and False."""
        digest = content.hash
        encoded = msgspec.json.encode(content).decode()

        def work(tx: LifecycleTx) -> tuple[VersionRecord, bool]:
            found = tx.by_hash(digest)
            if found is not None:
                return found, False
            record = self._record(tx.next_version(), content, caller, message)
            self._insert(tx, record, encoded, caller, action)
            return record, True

        return self._change(content.workflow, "record a pipeline version in", work)

    def _record(self, number: int, content: Content, caller: Caller, message: str) -> VersionRecord:
        return VersionRecord(
            workflow=content.workflow,
            version=number,
            hash=content.hash,
            format=content.format,
            kind=content.kind,
            author=caller.subject,
            message=message,
            created_at=self.clock(),
            stage="dev",
            stages=len(content.graph.get("stages", ())),
        )

    def _insert(
        self,
        tx: LifecycleTx,
        record: VersionRecord,
        encoded: str,
        caller: Caller,
        action: str,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        tx.add_version(record, encoded)
        tx.deploy(self._deployment(record.workflow, "dev", record.version, caller))
        self._audit(
            tx,
            caller,
            action,
            record.version,
            "dev",
            detail={"hash": record.hash, **(detail or {})},
        )

    def import_version(
        self, content: Content, number: int, caller: Caller, message: str, *, replace: bool
    ) -> tuple[VersionRecord, bool]:
        """``content`` as version ``number`` when that number is free (else the next one);
        with ``replace``, in place of version ``number`` unless that one is read-only. The
        version that already has this content, and False, when there is one."""
        digest = content.hash
        encoded = msgspec.json.encode(content).decode()

        def work(tx: LifecycleTx) -> tuple[VersionRecord, bool]:
            found = tx.by_hash(digest)
            if found is not None:
                return found, False
            taken = tx.version(number)
            target = number
            if taken is not None:
                if replace:
                    self._check_writable(taken, "replaced by an import")
                    tx.delete_version(number)
                    self._undeploy_everywhere(tx, taken)
                else:
                    target = tx.next_version()
            record = self._record(target, content, caller, message)
            detail = {"bundle_version": number, "replaced": replace and taken is not None}
            self._insert(tx, record, encoded, caller, "version.imported", detail)
            return record, True

        return self._change(content.workflow, "import a pipeline version into", work)

    def delete(self, workflow: str, number: int, caller: Caller) -> VersionRecord:
        """Delete a version that is neither read-only nor deployed beyond dev."""

        def work(tx: LifecycleTx) -> VersionRecord:
            found = self._version(tx, number)
            self._check_writable(found, "deleted")
            tx.delete_version(number)
            self._undeploy_everywhere(tx, found)
            self._audit(tx, caller, "version.deleted", number, None)
            return found

        return self._change(workflow, "delete a pipeline version in", work)

    @staticmethod
    def _check_writable(found: VersionRecord, what: str) -> None:
        if found.stage in READ_ONLY:
            raise ReadOnlyVersionError(
                f"{found.workflow} v{found.version} is in {found.stage} and read-only: it "
                f"cannot be {what}.",
                hint="Make a new version instead; versions in uat, prod and retired never change.",
            )

    @staticmethod
    def _undeploy_everywhere(tx: LifecycleTx, found: VersionRecord) -> None:
        for env, deployment in tx.deployments().items():
            if deployment.version == found.version:
                tx.undeploy(env)

    @staticmethod
    def _version(tx: LifecycleTx, number: int) -> VersionRecord:
        found = tx.version(number)
        if found is None:
            last = tx.next_version() - 1
            known = f"its versions are 1 to {last}" if last else "it has no versions yet"
            raise VersionNotFoundError(
                f"Workflow {tx.workflow!r} has no version {number} ({known}).",
                hint=f"`klaw versions list {tx.workflow}` lists them.",
            )
        return found

    # -- environments ---------------------------------------------------------------------

    def promote(
        self, workflow: str, number: int, to: str, caller: Caller
    ) -> tuple[ApprovalRecord | None, DeploymentRecord | None]:
        """Promote version ``number`` to ``to``, the environment after the one it is in: at
        once (the deployment) or, where the policy needs approvals, as a pending request."""
        if to not in ENVIRONMENTS[1:]:
            raise PromotionError(
                f"Cannot promote to {to!r}: a version is promoted to qa, uat or prod.",
                hint="Retire a version with `klaw retire`; versions start in dev.",
            )
        policy = self.policies[to]

        def work(tx: LifecycleTx) -> tuple[ApprovalRecord | None, DeploymentRecord | None]:
            found = self._version(tx, number)
            self._check_next(found, to)
            pending = tx.pending(to)
            if pending is not None:
                raise PromotionError(
                    f"A promotion of {workflow} to {to} is already waiting for approval: "
                    f"request {pending.request_id} (v{pending.version}, by "
                    f"{pending.requester}).",
                    hint="Approve or reject it first (`klaw approvals list`).",
                )
            for earlier in tx.requests_of(number):
                if earlier.environment == to and earlier.state == "rejected":
                    why = _rejection(earlier)
                    raise PromotionError(
                        f"The promotion of {workflow} v{number} to {to} was rejected{why}; a "
                        "rejected version is not promoted again.",
                        hint="Fix what the rejection says in a new version and promote that.",
                    )
            if policy.approvals == 0:
                return None, self._deploy(tx, found, to, caller, None)
            request = ApprovalRecord(
                request_id=f"req_{secrets.token_hex(6)}",
                workflow=workflow,
                version=number,
                environment=to,
                requester=caller.subject,
                state="pending",
                created_at=self.clock(),
                required=policy.approvals,
            )
            tx.add_request(request)
            self._audit(tx, caller, "promotion.requested", number, to, request.request_id)
            return request, None

        return self._change(workflow, "request a promotion in", work)

    @staticmethod
    def _check_next(found: VersionRecord, to: str) -> None:
        if found.stage == RETIRED:
            raise PromotionError(
                f"{found.workflow} v{found.version} is retired; a retired version is never "
                "deployed again.",
                hint="Make a new version with the same files (`klaw versions create`).",
            )
        expected = _next(found.stage)
        if expected != to:
            if ENVIRONMENTS.index(to) <= ENVIRONMENTS.index(found.stage):
                raise PromotionError(
                    f"{found.workflow} v{found.version} is already in {found.stage}.",
                    hint=f"Promote it to {expected}." if expected else "It is in prod.",
                )
            raise PromotionError(
                f"{found.workflow} v{found.version} is in {found.stage}: it cannot skip to {to}.",
                hint=f"Promote it to {expected} first: environments go "
                f"{' -> '.join(ENVIRONMENTS)}.",
            )

    def _deploy(
        self,
        tx: LifecycleTx,
        found: VersionRecord,
        to: str,
        caller: Caller,
        request_id: str | None,
    ) -> DeploymentRecord:
        deployment = self._deployment(found.workflow, to, found.version, caller)
        previous = tx.deployments().get(to)
        tx.deploy(deployment)
        tx.set_stage(found.version, to)
        detail = {"replaced": previous.version} if previous is not None else {}
        self._audit(tx, caller, "promoted", found.version, to, request_id, detail)
        return deployment

    def _deployment(self, workflow: str, env: str, number: int, caller: Caller) -> DeploymentRecord:
        return DeploymentRecord(
            workflow=workflow,
            environment=env,
            version=number,
            deployed_at=self.clock(),
            deployed_by=caller.subject,
        )

    def demote(self, workflow: str, caller: Caller) -> DeploymentRecord:
        """Take the version deployed in uat back to qa."""

        def work(tx: LifecycleTx) -> DeploymentRecord:
            deployed = tx.deployments().get("uat")
            if deployed is None:
                raise PromotionError(
                    f"{workflow} has no version in uat to demote.",
                    hint="Only uat demotes (to qa); `klaw versions list` shows deployments.",
                )
            found = self._version(tx, deployed.version)
            tx.undeploy("uat")
            deployment = self._deployment(workflow, "qa", found.version, caller)
            tx.deploy(deployment)
            tx.set_stage(found.version, "qa")
            self._audit(tx, caller, "demoted", found.version, "qa", detail={"from": "uat"})
            return deployment

        return self._change(workflow, "demote a version in", work)

    def retire(self, workflow: str, number: int, caller: Caller) -> VersionRecord:
        """Retire version ``number``: it leaves every environment and is never deployed
        again (approver role)."""
        self._need(caller, "approver", f"retire {workflow} v{number}")

        def work(tx: LifecycleTx) -> VersionRecord:
            found = self._version(tx, number)
            if found.stage == RETIRED:
                raise PromotionError(f"{workflow} v{number} is already retired.")
            left = [e for e, d in tx.deployments().items() if d.version == number]
            self._undeploy_everywhere(tx, found)
            tx.set_stage(number, RETIRED)
            self._audit(tx, caller, "retired", number, None, detail={"undeployed": left})
            return msgspec.structs.replace(found, stage=RETIRED)

        return self._change(workflow, "retire a version in", work)

    # -- approvals ------------------------------------------------------------------------

    def decide(
        self, request_id: str, caller: Caller, decision: str, comment: str
    ) -> tuple[ApprovalRecord, DeploymentRecord | None]:
        """Approve or reject a pending request; the promotion is applied by the approval that
        makes the count."""
        self._need(caller, "approver", f"{decision} a promotion")
        known = self.store.get_request(request_id)
        if known is None:
            raise VersionNotFoundError(
                f"No approval request {request_id!r}.",
                hint="`klaw approvals list` lists the pending ones.",
            )
        policy = self.policies[known.environment]

        def work(tx: LifecycleTx) -> tuple[ApprovalRecord, DeploymentRecord | None]:
            request = tx.request(request_id)
            assert request is not None
            if request.state != "pending":
                raise ApprovalError(
                    f"Request {request_id} ({request.workflow} v{request.version} to "
                    f"{request.environment}) is already {request.state}.",
                    hint="Only a pending request takes decisions.",
                )
            if caller.subject == request.requester:
                raise ApprovalError(
                    f"{caller.subject} asked for this promotion and cannot "
                    f"{decision} it: an approver other than the requester must.",
                    hint="Ask someone with the approver role.",
                )
            if policy.approvers and not caller.named(policy.approvers):
                raise ApprovalError(
                    f"{caller.subject} is not an approver of {request.environment} "
                    f"({', '.join(policy.approvers)}).",
                    hint=f"See [lifecycle.environments.{request.environment}] approvers in "
                    "klaw.toml.",
                )
            if any(d.approver == caller.subject for d in request.decisions):
                raise ApprovalError(f"{caller.subject} already decided on {request_id}.")
            now = self.clock()
            tx.decide(
                request_id,
                DecisionRecord(approver=caller.subject, decision=decision, comment=comment, at=now),
            )
            action = "promotion.approved" if decision == "approve" else "promotion.rejected"
            detail = {"comment": comment} if comment else {}
            self._audit(
                tx, caller, action, request.version, request.environment, request_id, detail
            )
            approvals = 1 + sum(d.decision == "approve" for d in request.decisions)
            deployment = None
            if decision == "reject":
                tx.close_request(request_id, "rejected", now)
            elif approvals >= request.required:
                found = self._version(tx, request.version)
                self._check_next(found, request.environment)
                tx.close_request(request_id, "approved", now)
                deployment = self._deploy(tx, found, request.environment, caller, request_id)
            after = tx.request(request_id)
            assert after is not None
            return after, deployment

        return self._change(known.workflow, f"{decision} a promotion in", work)

    @staticmethod
    def _need(caller: Caller, role: str, what: str) -> None:
        if not caller.at_least(role):
            raise ApprovalError(
                f"{caller.subject} has the {caller.role} role; to {what} needs the {role} role.",
                hint=f"Use a token with the {role} role.",
            )

    def _audit(
        self,
        tx: LifecycleTx,
        caller: Caller,
        action: str,
        version: int | None,
        environment: str | None,
        request_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        tx.audit(
            AuditRecord(
                at=self.clock(),
                actor=caller.subject,
                action=action,
                workflow=tx.workflow,
                version=version,
                environment=environment,
                request_id=request_id,
                detail=dict(detail or {}),
            )
        )


def _rejection(request: ApprovalRecord) -> str:
    for d in request.decisions:
        if d.decision == "reject":
            said = f": {d.comment!r}" if d.comment else ""
            return f" by {d.approver}{said}"
    return ""
