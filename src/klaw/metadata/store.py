"""The metadata store seam: two small Protocols, one for writing, one for reading."""

from __future__ import annotations

from typing import Protocol

from klaw.metadata.records import (
    AttemptRecord,
    Batch,
    EventRecord,
    LogRecord,
    MetricRecord,
    RunFilter,
    RunRecord,
)


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

    def list_attempts(self, run_id: str) -> list[AttemptRecord]:
        """Every attempt of the run, ordered by stage then attempt."""

    def list_events(self, run_id: str, *, after_seq: int = 0) -> list[EventRecord]: ...

    def read_logs(
        self, run_id: str, *, stage: str | None = None, attempt: int | None = None
    ) -> list[LogRecord]: ...


class MetricsReader(Protocol):
    def list_metrics(self, run_id: str) -> list[MetricRecord]: ...


class MetadataStore(MetadataWriter, MetadataReader, MetricsReader, Protocol):
    """Everything a full metadata backend offers (SQLite, Postgres)."""
