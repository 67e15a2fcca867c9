"""A plan: which stages of a workflow run, in what order, and where their inputs come from."""

from __future__ import annotations

from dataclasses import dataclass

from klaw.authoring.stage import StageKind
from klaw.errors import SelectionError
from klaw.graph.build import WorkflowGraph
from klaw.graph.selection import select


@dataclass(frozen=True, slots=True)
class Plan:
    graph: WorkflowGraph
    stages: tuple[str, ...]  # selected stages, topological order
    upstream: dict[str, tuple[str, ...]]  # dependencies inside the plan
    external: dict[str, tuple[str, ...]]  # inputs read from the latest snapshot of an asset
    selection: str | None = None

    @property
    def levels(self) -> list[list[str]]:
        """Stages grouped by depth: every stage of a level can run once earlier levels ran."""
        depth: dict[str, int] = {}
        for name in self.stages:
            depth[name] = 1 + max((depth[u] for u in self.upstream[name]), default=-1)
        levels: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for name in self.stages:
            levels[depth[name]].append(name)
        return levels


def make_plan(graph: WorkflowGraph, selection: str | None = None) -> Plan:
    """Plan the selected stages. An unselected upstream must be an asset (its latest snapshot
    is read); an unselected plain stage has nothing stored to read, so it is an error."""
    chosen = select(graph, selection)
    stages = tuple(n for n in graph.order if n in chosen)
    upstream: dict[str, tuple[str, ...]] = {}
    external: dict[str, tuple[str, ...]] = {}
    for name in stages:
        inside = tuple(u for u in graph.upstream[name] if u in chosen)
        outside = tuple(u for u in graph.upstream[name] if u not in chosen)
        upstream[name] = inside
        needed = {i.upstream for i in graph.stages[name].inputs}
        foreign = tuple(u for u in graph.stages[name].upstream if u in graph.foreign)
        for up in outside:
            if up in needed and graph.stages[up].kind is not StageKind.ASSET:
                raise SelectionError(
                    f"Stage {name!r} needs the result of plain stage {up!r}, which is not "
                    "selected and is not stored.",
                    hint=f"Select it too, for example --select +{name}.",
                )
        reads = tuple(u for u in outside if u in needed) + foreign
        if reads:
            external[name] = reads
    return Plan(graph, stages, upstream, external, selection)
