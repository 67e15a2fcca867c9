"""The metadata store seam: one Protocol per role (writes, reads, leases, schedules, tokens,
Idempotency-Keys, waiting, maintenance) and ``MetadataStore``, all of them, which
``klaw.metadata.sql.SqlMetadataStore`` implements once for SQLite and Postgres."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

from klaw.metadata.records import (
    Activity,
    ApprovalRecord,
    AttemptRecord,
    AuditRecord,
    Batch,
    DeploymentRecord,
    EventRecord,
    IdempotencyRecord,
    Lease,
    LogRecord,
    MetricRecord,
    RunFilter,
    RunRecord,
    ScheduleDefinition,
    ScheduleRecord,
    TokenRecord,
    VersionRecord,
)

if TYPE_CHECKING:
    from klaw.metadata.lifecycle import LifecycleTx

T = TypeVar("T")


class MetadataWriter(Protocol):
    def migrate(self) -> None:
        """Create or upgrade the schema to the current version (idempotent)."""

    def create_run(self, run: RunRecord, *, max_active: int | None = None) -> None:
        """Insert a new run. With ``max_active``, refuse (``RunConflictError``) when that many
        runs of the same workflow are queued or running with a live owner; runs whose owner
        process is gone are marked failed first so they never block."""

    def commit(self, batch: Batch) -> None:
        """Write events, attempts, run updates, logs and metrics in one durable transaction."""

    def request_cancel(self, run_id: str) -> RunRecord:
        """Record a cancel request for a run (an event); return the run as it stands."""

    def close(self) -> None: ...


class MetadataReader(Protocol):
    def get_run(self, run_id: str) -> RunRecord:
        """The run, or ``RunNotFoundError`` naming the id (and close ids when there are any)."""

    def list_runs(self, filter: RunFilter) -> list[RunRecord]:
        """Newest first."""

    def last_runs(self, workflows: Sequence[str], limit: int) -> list[RunRecord]:
        """The newest ``limit`` runs of each workflow, workflow by workflow, newest first;
        one indexed lookup each (``runs_by_workflow``), whatever the history."""

    def list_attempts(self, run_id: str) -> list[AttemptRecord]:
        """Every attempt of the run, ordered by stage then attempt."""

    def list_events(self, run_id: str, *, after_seq: int = 0) -> list[EventRecord]: ...

    def read_logs(
        self,
        run_id: str,
        *,
        stage: str | None = None,
        attempt: int | None = None,
        after_seq: int = 0,
        limit: int | None = None,
        tail: bool = False,
    ) -> list[LogRecord]:
        """The run's captured lines (of one stage / attempt), those after ``after_seq`` only
        (``seq`` counts per run: a cursor), ordered by stage, attempt and seq. With ``limit``,
        a page in ``seq`` order: the first ``limit`` of those lines, or with ``tail`` the last
        ``limit``; read through an index, so a page costs the same whatever the log's size."""


class LeaseStore(Protocol):
    """Leases of running stage attempts, and the fencing that keeps stale attempts out."""

    def renew_leases(self, leases: Sequence[Lease], until: float) -> list[Lease]:
        """Extend each attempt's lease to ``until`` (epoch seconds). Returns the leases that
        are fenced: their attempt ended, was given up or runs under another token. Their
        holders must stop and may write nothing more."""

    def expire_leases(self, run_id: str, now: float, reason: str) -> list[AttemptRecord]:
        """End as ``failed`` (error ``reason``) every running attempt of the run whose lease
        ran out before ``now``; return those attempts, as ended."""

    def adopt_run(
        self, run_id: str, owner: tuple[str, int], new_owner: tuple[str, int], reason: str
    ) -> list[AttemptRecord] | None:
        """Take over an active run from ``owner`` (host, pid), atomically: ``None`` when the
        run is not active or another process took it first. Every attempt that had not ended
        is ended ``failed`` with ``reason`` (fenced) and returned."""


class RunWaiter(Protocol):
    """Waiting for a run's next write, where the database can tell (Postgres ``LISTEN/NOTIFY``)
    and by a bounded poll where it cannot (SQLite written by another process)."""

    def wait_run(self, run_id: str, ready: Callable[[], bool], timeout: float) -> bool:
        """Call ``ready()`` (which reads the store) now and again each time the run's events,
        attempts or logs may have changed, until it returns True (then True) or ``timeout``
        seconds have passed (then False). ``ready()`` is called before anything is waited
        for, so a write between the caller's last read and this call is never missed."""


class MetricsReader(Protocol):
    def list_metrics(self, run_id: str) -> list[MetricRecord]: ...


class ActivityReader(Protocol):
    def activity(self, since: float, *, bucket_s: float, limit: int = 10) -> Activity:
        """The runs created since ``since`` (epoch seconds), counted by state per bucket of
        ``bucket_s`` seconds; the ``limit`` stages with the most failed attempts among them and
        their ``limit`` longest attempts. Read through the runs' creation-time index: the cost
        follows the runs in the window, not the history."""


class RunStore(MetadataWriter, LeaseStore, Protocol):
    """What a runner needs: writes and leases."""


class ScheduleStore(Protocol):
    """Cron schedules and their ticks. A tick is fired by whoever claims it first: the claim is
    a row keyed ``(schedule, tick)``, so trigger services sharing a database never both fire
    one. Times are epoch seconds; ticks are tick keys (``2026-03-29T01:00:00Z``)."""

    def sync_schedules(self, definitions: Sequence[ScheduleDefinition], *, now: float) -> None:
        """Insert new schedules (not paused) and update changed ones; a schedule's pause state
        and ticks are kept. ``updated_at`` becomes ``now`` only when its workflow, cron or time
        zone changed."""

    def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule with its newest claimed tick, by name."""

    def set_paused(self, name: str, paused: bool, *, now: float) -> ScheduleRecord:
        """Pause or resume a schedule (a no-op when it already is); the schedule as it stands.
        Resuming records ``resumed_at``. ``ScheduleNotFoundError`` names an unknown name."""

    def claim_tick(self, schedule: str, tick: str, *, now: float, owner: str = "") -> bool:
        """Claim a tick for firing: True for exactly one caller per ``(schedule, tick)``;
        False when it was claimed before or the schedule is paused or unknown."""

    def finish_tick(
        self, schedule: str, tick: str, *, run_id: str | None = None, error: str | None = None
    ) -> None:
        """Record what firing a claimed tick gave: the run it started, or why none started."""


class TokenStore(Protocol):
    """API tokens, stored hashed (``TokenRecord``): the token itself is never kept. A token
    ``klaw_<token_id>_<secret>`` is looked up by its id; the caller compares the secret's hash
    in constant time. Times are epoch seconds."""

    def create_token(self, token: TokenRecord) -> None:
        """Insert a new token; a ``MetadataError`` when its id is taken."""

    def find_token(self, token_id: str) -> TokenRecord | None:
        """The token with this id (revoked and expired ones too), or None."""

    def list_tokens(self) -> list[TokenRecord]:
        """Every token, oldest first."""

    def revoke_token(self, token_id: str, *, now: float) -> TokenRecord | None:
        """Revoke a token at ``now`` (a no-op when it already is); the token as it stands, or
        None when no token has this id."""

    def touch_token(self, token_id: str, *, now: float) -> None:
        """Record that the token was used at ``now`` (written at most once a minute)."""


class IdempotencyStore(Protocol):
    """``Idempotency-Key``s of run submits, shared by every API process on the database. A key
    is claimed by inserting its row keyed ``(subject, key)``, so of requests racing with one
    key, in any processes, exactly one claims it and makes the run. Times are epoch seconds."""

    def begin_key(self, claim: IdempotencyRecord) -> IdempotencyRecord | None:
        """Claim ``claim.key`` of ``claim.subject`` for ``claim.claim``: None when this claim
        holds it now (the key was new, had expired, or its claim made no run before its
        ``pending_until``); otherwise the record that holds it (compare its fingerprint; its
        ``run_id`` is None while that request is still making its run). Expired keys go."""

    def finish_key(self, claim: IdempotencyRecord, run_id: str) -> bool:
        """Record the run a claim made; False when the claim no longer holds the key."""

    def abandon_key(self, claim: IdempotencyRecord) -> None:
        """Give the key up (the claim's request failed before making a run): a retry may claim
        it again. A no-op when the claim no longer holds the key or made a run."""

    def prune_keys(self, now: float) -> int:
        """Delete the keys expired at ``now``; how many went."""


class LifecycleStore(Protocol):
    """Pipeline versions, deployments, approval requests and the audit log
    (:mod:`klaw.metadata.lifecycle`)."""

    def change(self, workflow: str, action: str, work: Callable[[LifecycleTx], T]) -> T:
        """Run ``work`` in one transaction serialised per workflow."""

    def get_version(self, workflow: str, number: int) -> VersionRecord | None: ...

    def version_by_hash(self, workflow: str, digest: str) -> VersionRecord | None: ...

    def version_content(self, workflow: str, number: int) -> str | None: ...

    def list_versions(
        self, workflow: str, *, limit: int = 50, before: int | None = None
    ) -> list[VersionRecord]: ...

    def list_deployments(self, workflow: str) -> list[DeploymentRecord]: ...

    def get_request(self, request_id: str) -> ApprovalRecord | None: ...

    def list_requests(
        self,
        *,
        workflow: str | None = None,
        state: str | None = None,
        limit: int = 100,
        before: float | None = None,
    ) -> list[ApprovalRecord]: ...

    def list_audit(
        self, *, workflow: str | None = None, limit: int = 100, before: int | None = None
    ) -> list[AuditRecord]: ...


class Maintenance(Protocol):
    """Keeping the database small (``klaw db prune``)."""

    def prune(self, older_than_seconds: float) -> int:
        """Drop events and metrics older than ``older_than_seconds`` ago (each run keeps its
        last event; runs, attempts and logs stay); how many rows or partitions went. A
        negative or NaN age is refused (``MetadataError``)."""


class MetadataStore(
    MetadataWriter,
    MetadataReader,
    LeaseStore,
    MetricsReader,
    ActivityReader,
    ScheduleStore,
    TokenStore,
    IdempotencyStore,
    LifecycleStore,
    RunWaiter,
    Maintenance,
    Protocol,
):
    """Everything a full metadata backend offers (SQLite, Postgres)."""
