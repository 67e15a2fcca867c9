"""Domain objects as the protocol's views: a workflow, its graph, a plan, validation results.
The dispatcher's handlers call these; the views themselves live in :mod:`klaw.protocol`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from klaw.authoring.stage import StageDef, StageKind
from klaw.errors import GraphError, KlawError
from klaw.protocol import (
    OverviewReply,
    PlannedStage,
    PlanReply,
    StageNode,
    StateBucket,
    TokenView,
    ValidationResult,
    WorkflowInfo,
    WorkflowReply,
    error_reply,
)
from klaw.states import RunState

if TYPE_CHECKING:
    from klaw.authoring.workflow import Workflow
    from klaw.graph.build import WorkflowGraph
    from klaw.graph.plan import Plan
    from klaw.metadata.records import Activity, RunRecord, TokenRecord


def workflow_info(wf: Workflow) -> WorkflowInfo:
    return WorkflowInfo(
        name=wf.name,
        description=wf.description,
        schedule=wf.schedule,
        stages=tuple(s.name for s in wf.stages),
        assets=tuple(s.asset_key for s in wf.stages if s.kind is StageKind.ASSET and s.asset_key),
        tags=tuple(sorted(wf.tags)),
        source=wf.source,
    )


def workflow_reply(wf: Workflow, graph: WorkflowGraph, *, layout: bool = False) -> WorkflowReply:
    """A workflow with its graph (stages in order, edges) and params schema; with ``layout``,
    each stage's position in a layered drawing."""
    from klaw.authoring.params import params_schema
    from klaw.graph.layout import layered

    stages = [
        StageNode(
            name=name,
            kind=graph.stages[name].kind.value,
            asset=graph.stages[name].asset_key,
            description=graph.stages[name].description,
            retries=graph.stages[name].retry.retries,
            timeout=graph.stages[name].timeout,
            tags=tuple(sorted(graph.stages[name].tags)),
            inputs=tuple(
                graph.foreign[u] for u in graph.stages[name].upstream if u in graph.foreign
            ),
        )
        for name in graph.order
    ]
    edges = [(up, name) for name in graph.order for up in graph.upstream[name]]
    return WorkflowReply(
        workflow=workflow_info(wf),
        stages=stages,
        edges=edges,
        params_schema=params_schema(wf),
        max_active_runs=wf.max_active_runs,
        executor=wf.executor,
        timezone=wf.timezone,
        catch_up=wf.catch_up,
        depends_on=wf.depends_on,
        positions=layered(graph.order, graph.upstream) if layout else {},
    )


def plan_reply(plan: Plan) -> PlanReply:
    return PlanReply(
        workflow=plan.graph.name,
        selection=plan.selection,
        stages=plan.stages,
        levels=plan.levels,
        upstream=plan.upstream,
        external=plan.external,
        details={name: _planned(plan.graph.stages[name]) for name in plan.stages},
    )


def validation_results(
    found: Mapping[str, KlawError | None], unchecked: Mapping[str, tuple[str, ...]]
) -> list[ValidationResult]:
    """What validating each workflow found, with the SQL it could not check."""
    return [
        ValidationResult(
            workflow=name,
            error=None if exc is None else error_reply(exc),
            problems=_problems(exc),
            unchecked=unchecked.get(name, ()) if exc is None else (),
        )
        for name, exc in found.items()
    ]


def _planned(stage: StageDef) -> PlannedStage:
    return PlannedStage(
        kind=stage.kind.value,
        retries=stage.retry.retries,
        timeout=stage.timeout,
        tags=tuple(sorted(stage.tags)),
    )


def _problems(exc: KlawError | None) -> tuple[str, ...]:
    """Every problem an error names: a GraphError lists each, any other error is one."""
    if exc is None:
        return ()
    return tuple(exc.problems) if isinstance(exc, GraphError) else (exc.message,)


def overview_reply(
    activity: Activity, window_s: float, buckets: int, running: list[RunRecord]
) -> OverviewReply:
    """The activity of a window as every bucket of it, empty ones included (a chart draws them
    as they come)."""
    counts: dict[float, dict[RunState, int]] = {}
    for c in activity.counts:
        counts.setdefault(c.start, {})[c.state] = c.count
    starts = [activity.since + i * activity.bucket_s for i in range(buckets)]
    return OverviewReply(
        window_s=window_s,
        bucket_s=activity.bucket_s,
        buckets=[StateBucket(start=t, counts=counts.get(t, {})) for t in starts],
        running=running,
        failing=activity.failing,
        longest=activity.longest,
    )


def token_view(record: TokenRecord, now: float) -> TokenView:
    """What may be shown of a stored token: never its secret nor the secret's hash."""
    if record.revoked_at is not None:
        state = "revoked"
    elif not record.live(now):
        state = "expired"
    else:
        state = "active"
    return TokenView(
        id=record.token_id,
        name=record.name,
        role=record.role,
        state=state,
        created_at=record.created_at,
        expires_at=record.expires_at,
        revoked_at=record.revoked_at,
        last_used_at=record.last_used_at,
    )
