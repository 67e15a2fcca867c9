"""Views: how a thing is shown to a caller (an attempt with its timings, a workflow, a
stage of a graph, a schedule), the values that replies carry beside the metadata records."""

from __future__ import annotations

from typing import Final

import msgspec

from klaw.metadata.records import AttemptRecord, MetricRecord
from klaw.states import RunState


class AttemptView(AttemptRecord, kw_only=True):
    """An attempt as it is shown: its record, with the seconds it spent loading its inputs
    (``load_s``) and committing its snapshot (``commit_s``), kept as the attempt's metrics.
    Neither counts toward the stage's timeout."""

    load_s: float | None = None
    commit_s: float | None = None
    trace_url: str | None = None  # the attempt in a tracing backend (settings.telemetry.trace_url)

    @classmethod
    def of(
        cls,
        attempts: list[AttemptRecord],
        metrics: list[MetricRecord],
        trace_url: str | None = None,
        trace_id: str | None = None,
    ) -> list[AttemptView]:
        """The views of ``attempts`` with their timings from ``metrics`` and, when the run was
        traced and a ``trace_url`` template is set, each one's link to its trace."""
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
            if trace_url and trace_id and a.attempt > 0:  # attempt 0: reused, not run here
                view.trace_url = render_trace_url(trace_url, trace_id, a.run_id, a.stage, a.attempt)
            views.append(view)
        return views


_TIMINGS: Final = frozenset({"load_s", "commit_s"})


def render_trace_url(template: str, trace_id: str, run_id: str, stage: str, attempt: int) -> str:
    """``template`` with its ``{trace_id}``, ``{run_id}``, ``{stage}`` and ``{attempt}``
    filled in (each URL-quoted; other braces are left as they are)."""
    from urllib.parse import quote

    values = {"trace_id": trace_id, "run_id": run_id, "stage": stage, "attempt": str(attempt)}
    for name, value in values.items():
        template = template.replace("{" + name + "}", quote(value, safe=""))
    return template


class WorkflowInfo(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    description: str = ""
    schedule: str | None = None
    stages: tuple[str, ...] = ()
    assets: tuple[str, ...] = ()  # asset keys the workflow produces
    tags: tuple[str, ...] = ()
    source: str = ""


class PlannedStage(msgspec.Struct, kw_only=True, frozen=True):
    """How a planned stage is set up (what ``klaw plan`` shows beside its name)."""

    kind: str  # "stage" or "asset"
    retries: int = 0
    timeout: float | None = None
    tags: tuple[str, ...] = ()


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
