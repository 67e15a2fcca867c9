"""A run's journal: the records that say what happened to a run, made in one place for every
writer (the runner, a cancel of a run whose owner is gone, crash recovery, a run worker's
watcher), so that each transition is recorded the same way whoever records it."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from klaw.metadata.records import AttemptRecord, Batch, EventRecord, RunRecord
from klaw.states import EventKind, RunState, StageState


def event(
    run_id: str,
    kind: EventKind,
    *,
    ts: float | None = None,
    stage: str | None = None,
    attempt: int | None = None,
    state: str | None = None,
    **data: Any,
) -> EventRecord:
    """One event of run ``run_id``."""
    return EventRecord(
        run_id=run_id,
        kind=kind.value,
        ts=time.time() if ts is None else ts,
        stage=stage,
        attempt=attempt,
        state=state,
        data=data,
    )


def ended(run: RunRecord, state: RunState, error: str | None, *, ts: float | None = None) -> Batch:
    """``run`` ended ``state`` (with ``error``) by someone other than its runner: the run
    record and its ``run_finished`` event, to commit together. ``run`` is updated."""
    now = time.time() if ts is None else ts
    run.state, run.ended_at, run.error = state, now, error
    finished = event(run.run_id, EventKind.RUN_FINISHED, ts=now, state=state.value)
    return Batch(runs=[run], events=[finished])


def lost(
    run_id: str, fenced: Iterable[AttemptRecord], reason: str, *, ts: float | None = None
) -> list[EventRecord]:
    """A ``stage_lost`` event for each attempt that was fenced (ended ``failed``) for
    ``reason``."""
    now = time.time() if ts is None else ts
    return [
        event(
            run_id,
            EventKind.STAGE_LOST,
            ts=now,
            stage=a.stage,
            attempt=a.attempt,
            state=StageState.FAILED.value,
            error=reason,
        )
        for a in fenced
    ]
