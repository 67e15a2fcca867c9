"""Run and stage-attempt states (shared by execution, metadata and every interface)."""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_RUN


class StageState(StrEnum):
    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYING = "retrying"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_STAGE


_TERMINAL_RUN = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})
_TERMINAL_STAGE = frozenset(
    {
        StageState.SUCCEEDED,
        StageState.FAILED,
        StageState.SKIPPED,
        StageState.UPSTREAM_FAILED,
        StageState.CANCELLED,
        StageState.TIMED_OUT,
    }
)


class EventKind(StrEnum):
    """What an event of a run records (the ``kind`` of its row)."""

    RUN_CREATED = "run_created"
    RUN_STARTED = "run_started"
    RUN_RECOVERING = "run_recovering"  # taken over by a new owner; fenced attempts follow
    RUN_RECOVERED = "run_recovered"  # continued from what was recorded
    RUN_FAILING_FAST = "run_failing_fast"
    RUN_CANCELLING = "run_cancelling"
    RUN_ABANDONED = "run_abandoned"  # its owner died; ended to make room under a run limit
    RUN_FINISHED = "run_finished"
    STAGE = "stage"  # a stage attempt changed state
    STAGE_LOST = "stage_lost"  # an attempt whose owner or lease was lost, ended failed
