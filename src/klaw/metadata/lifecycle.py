"""Pipeline versions, deployments, approval requests and the audit log in the metadata store.

The rules (which promotion is allowed, who may approve) live in the service
(:mod:`klaw.service.lifecycle`); the store gives them one transaction at a time, serialised per
workflow (:meth:`LifecycleSql.change`), so that of two promotions of the same workflow at once
one wins and the other reads what the first did. Reads are indexed lookups: listing a
workflow's versions, a page of the audit log or the pending requests costs the same after
10,000 versions as after 10.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec

from klaw.metadata.records import (
    ApprovalRecord,
    AuditRecord,
    DecisionRecord,
    DeploymentRecord,
    VersionRecord,
)

T = TypeVar("T")

_VERSION = VersionRecord.__struct_fields__
_DEPLOYMENT = DeploymentRecord.__struct_fields__
_REQUEST = tuple(f for f in ApprovalRecord.__struct_fields__ if f != "decisions")
_DECISION = ("request_id", *DecisionRecord.__struct_fields__)
_AUDIT = tuple(f for f in AuditRecord.__struct_fields__ if f != "seq")


def _cols(names: Sequence[str]) -> str:
    return ", ".join(names)


def _marks(names: Sequence[str]) -> str:
    return ", ".join("?" * len(names))


INSERT_VERSION = f"INSERT INTO versions ({_cols(_VERSION)}, content) VALUES ({_marks(_VERSION)}, ?)"
SELECT_VERSION = f"SELECT {_cols(_VERSION)} FROM versions WHERE workflow = ? AND version = ?"
SELECT_VERSION_BY_HASH = f"SELECT {_cols(_VERSION)} FROM versions WHERE workflow = ? AND hash = ?"
SELECT_VERSIONS = (
    f"SELECT {_cols(_VERSION)} FROM versions WHERE workflow = ? AND version < ? "
    "ORDER BY version DESC LIMIT ?"
)
SELECT_CONTENT = "SELECT content FROM versions WHERE workflow = ? AND version = ?"
SELECT_LAST_VERSION = "SELECT MAX(version) FROM versions WHERE workflow = ?"
SET_STAGE = "UPDATE versions SET stage = ? WHERE workflow = ? AND version = ?"
DELETE_VERSION = "DELETE FROM versions WHERE workflow = ? AND version = ?"
SELECT_DEPLOYMENTS = f"SELECT {_cols(_DEPLOYMENT)} FROM deployments WHERE workflow = ?"
UPSERT_DEPLOYMENT = (
    f"INSERT INTO deployments ({_cols(_DEPLOYMENT)}) VALUES ({_marks(_DEPLOYMENT)}) "
    "ON CONFLICT (workflow, environment) DO UPDATE SET version = excluded.version, "
    "deployed_at = excluded.deployed_at, deployed_by = excluded.deployed_by"
)
DELETE_DEPLOYMENT = "DELETE FROM deployments WHERE workflow = ? AND environment = ?"
INSERT_REQUEST = (
    f"INSERT INTO approval_requests ({_cols(_REQUEST)}, pending) VALUES ({_marks(_REQUEST)}, ?)"
)
SELECT_REQUEST = f"SELECT {_cols(_REQUEST)} FROM approval_requests WHERE request_id = ?"
SELECT_PENDING = (
    f"SELECT {_cols(_REQUEST)} FROM approval_requests "
    "WHERE workflow = ? AND environment = ? AND pending = 1"
)
SELECT_REQUESTS_OF = (
    f"SELECT {_cols(_REQUEST)} FROM approval_requests WHERE workflow = ? AND version = ? "
    "ORDER BY created_at DESC"
)
SELECT_REQUESTS = f"SELECT {_cols(_REQUEST)} FROM approval_requests WHERE created_at < ?"
DECIDE_REQUEST = (
    "UPDATE approval_requests SET state = ?, decided_at = ?, pending = NULL "
    "WHERE request_id = ? AND pending = 1"
)
INSERT_DECISION = (
    f"INSERT INTO approval_decisions ({_cols(_DECISION)}) VALUES ({_marks(_DECISION)})"
)
SELECT_DECISIONS = (
    f"SELECT {_cols(_DECISION)} FROM approval_decisions WHERE request_id IN ({{ids}}) ORDER BY at"
)
INSERT_AUDIT = f"INSERT INTO audit ({_cols(_AUDIT)}) VALUES ({_marks(_AUDIT)})"
SELECT_AUDIT = f"SELECT seq, {_cols(_AUDIT)} FROM audit WHERE seq < ?"


def _record(cls: type[T], names: Sequence[str], row: Sequence[Any]) -> T:
    return msgspec.convert(dict(zip(names, row, strict=True)), cls)


def _version(row: Sequence[Any]) -> VersionRecord:
    return _record(VersionRecord, _VERSION, row)


def _request(row: Sequence[Any]) -> ApprovalRecord:
    return _record(ApprovalRecord, _REQUEST, row)


def _audit_row(entry: AuditRecord) -> tuple[Any, ...]:
    values = {**msgspec.structs.asdict(entry), "detail": msgspec.json.encode(entry.detail).decode()}
    return tuple(values[name] for name in _AUDIT)


def _audit(row: Sequence[Any]) -> AuditRecord:
    fields = dict(zip(("seq", *_AUDIT), row, strict=True))
    fields["detail"] = msgspec.json.decode(fields["detail"])
    return msgspec.convert(fields, AuditRecord)


class LifecycleTx:
    """One lifecycle transaction on ``workflow``: reads see what the transaction wrote, and
    nothing is visible to anyone else until it commits."""

    def __init__(self, conn: Any, sql: Callable[[str], str], workflow: str) -> None:
        self._conn = conn
        self._sql = sql
        self.workflow = workflow

    def _rows(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        found: list[tuple[Any, ...]] = self._conn.execute(self._sql(statement), args).fetchall()
        return found

    def _run(self, statement: str, *args: Any) -> int:
        return int(self._conn.execute(self._sql(statement), args).rowcount)

    def version(self, number: int) -> VersionRecord | None:
        found = self._rows(SELECT_VERSION, self.workflow, number)
        return _version(found[0]) if found else None

    def by_hash(self, digest: str) -> VersionRecord | None:
        found = self._rows(SELECT_VERSION_BY_HASH, self.workflow, digest)
        return _version(found[0]) if found else None

    def next_version(self) -> int:
        [(last,)] = self._rows(SELECT_LAST_VERSION, self.workflow)
        return int(last or 0) + 1

    def add_version(self, record: VersionRecord, content: str) -> None:
        values = msgspec.structs.astuple(record)
        self._run(INSERT_VERSION, *values, content)

    def delete_version(self, number: int) -> None:
        self._run(DELETE_VERSION, self.workflow, number)

    def set_stage(self, number: int, stage: str) -> None:
        self._run(SET_STAGE, stage, self.workflow, number)

    def deployments(self) -> dict[str, DeploymentRecord]:
        found = self._rows(SELECT_DEPLOYMENTS, self.workflow)
        return {
            d.environment: d for d in (_record(DeploymentRecord, _DEPLOYMENT, r) for r in found)
        }

    def deploy(self, deployment: DeploymentRecord) -> None:
        self._run(UPSERT_DEPLOYMENT, *msgspec.structs.astuple(deployment))

    def undeploy(self, environment: str) -> None:
        self._run(DELETE_DEPLOYMENT, self.workflow, environment)

    def pending(self, environment: str) -> ApprovalRecord | None:
        found = self._rows(SELECT_PENDING, self.workflow, environment)
        return self._with_decisions([_request(r) for r in found])[0] if found else None

    def request(self, request_id: str) -> ApprovalRecord | None:
        found = self._rows(SELECT_REQUEST, request_id)
        return self._with_decisions([_request(r) for r in found])[0] if found else None

    def requests_of(self, number: int) -> list[ApprovalRecord]:
        found = [_request(r) for r in self._rows(SELECT_REQUESTS_OF, self.workflow, number)]
        return self._with_decisions(found)

    def add_request(self, record: ApprovalRecord) -> None:
        values = tuple(getattr(record, name) for name in _REQUEST)
        self._run(INSERT_REQUEST, *values, 1 if record.state == "pending" else None)

    def decide(self, request_id: str, decision: DecisionRecord) -> None:
        self._run(INSERT_DECISION, request_id, *msgspec.structs.astuple(decision))

    def close_request(self, request_id: str, state: str, at: float) -> bool:
        """Mark a pending request decided; False when it was no longer pending."""
        return self._run(DECIDE_REQUEST, state, at, request_id) == 1

    def audit(self, entry: AuditRecord) -> None:
        self._run(INSERT_AUDIT, *_audit_row(entry))

    def _with_decisions(self, found: list[ApprovalRecord]) -> list[ApprovalRecord]:
        return attach_decisions(found, lambda s, a: self._rows(s, *a))


def attach_decisions(
    found: list[ApprovalRecord], rows: Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
) -> list[ApprovalRecord]:
    """``found`` with each request's decisions (one query for all of them)."""
    if not found:
        return found
    ids = [r.request_id for r in found]
    statement = SELECT_DECISIONS.format(ids=", ".join("?" * len(ids)))
    by_request: dict[str, list[DecisionRecord]] = {}
    for row in rows(statement, ids):
        decision = _record(DecisionRecord, _DECISION[1:], row[1:])
        by_request.setdefault(row[0], []).append(decision)
    return [msgspec.structs.replace(r, decisions=by_request.get(r.request_id, [])) for r in found]


class LifecycleReads:
    """The lifecycle reads of a store, each one indexed query (mixed into the SQL store)."""

    def _sql(self, statement: str) -> str:
        raise NotImplementedError

    def _query(self, statement: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _rows(self, statement: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._query(self._sql(statement), args)

    def get_version(self, workflow: str, number: int) -> VersionRecord | None:
        found = self._rows(SELECT_VERSION, (workflow, number))
        return _version(found[0]) if found else None

    def version_by_hash(self, workflow: str, digest: str) -> VersionRecord | None:
        found = self._rows(SELECT_VERSION_BY_HASH, (workflow, digest))
        return _version(found[0]) if found else None

    def version_content(self, workflow: str, number: int) -> str | None:
        found = self._rows(SELECT_CONTENT, (workflow, number))
        return str(found[0][0]) if found else None

    def list_versions(
        self, workflow: str, *, limit: int = 50, before: int | None = None
    ) -> list[VersionRecord]:
        """Newest first: at most ``limit`` versions numbered below ``before`` (a cursor)."""
        cursor = before if before is not None else 2**62
        return [_version(r) for r in self._rows(SELECT_VERSIONS, (workflow, cursor, limit))]

    def list_deployments(self, workflow: str) -> list[DeploymentRecord]:
        found = self._rows(SELECT_DEPLOYMENTS, (workflow,))
        return [_record(DeploymentRecord, _DEPLOYMENT, r) for r in found]

    def get_request(self, request_id: str) -> ApprovalRecord | None:
        found = [_request(r) for r in self._rows(SELECT_REQUEST, (request_id,))]
        return attach_decisions(found, self._rows)[0] if found else None

    def list_requests(
        self,
        *,
        workflow: str | None = None,
        state: str | None = None,
        limit: int = 100,
        before: float | None = None,
    ) -> list[ApprovalRecord]:
        """Newest first, created before ``before`` (a cursor: the last ``created_at`` seen)."""
        args: list[Any] = [before if before is not None else float("inf")]
        statement = SELECT_REQUESTS
        if workflow is not None:
            statement, args = statement + " AND workflow = ?", [*args, workflow]
        if state is not None:
            statement, args = statement + " AND state = ?", [*args, state]
        statement += " ORDER BY created_at DESC LIMIT ?"
        found = [_request(r) for r in self._rows(statement, [*args, limit])]
        return attach_decisions(found, self._rows)

    def list_audit(
        self, *, workflow: str | None = None, limit: int = 100, before: int | None = None
    ) -> list[AuditRecord]:
        """Newest first: at most ``limit`` entries with ``seq`` below ``before`` (a cursor)."""
        args: list[Any] = [before if before is not None else 2**62]
        statement = SELECT_AUDIT
        if workflow is not None:
            statement, args = statement + " AND workflow = ?", [*args, workflow]
        statement += " ORDER BY seq DESC LIMIT ?"
        return [_audit(r) for r in self._rows(statement, [*args, limit])]
