"""A plan: which stages of a workflow run, in what order, and where their inputs come from."""

from __future__ import annotations

from dataclasses import dataclass

import rustworkx as rx

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
        """Stages grouped by depth: every stage of a level can run once earlier levels ran
        (each level in the plan's order)."""
        graph = self.graph
        dag = graph.dag
        if len(self.stages) != len(graph.order):
            dag = dag.subgraph([graph.index[n] for n in self.stages])
        position = {name: i for i, name in enumerate(self.stages)}
        return [
            sorted((dag[i] for i in level), key=position.__getitem__)
            for level in rx.topological_generations(dag)
        ]


def make_plan(graph: WorkflowGraph, selection: str | None = None) -> Plan:
    """Plan the selected stages. An unselected upstream must be an asset (its latest snapshot
    is read); an unselected plain stage has nothing stored to read, so it is an error."""
    chosen = select(graph, selection)
    if len(chosen) == len(graph.order) and not graph.foreign:  # everything: nothing outside
        return Plan(graph, graph.order, graph.upstream, {}, selection)
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
