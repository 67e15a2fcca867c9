"""The workflow graph on rustworkx: validation that names things, topological order."""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import rustworkx as rx

from klaw.authoring.sql import SqlQuery
from klaw.authoring.stage import StageDef
from klaw.authoring.workflow import Workflow
from klaw.errors import GraphError


@dataclass(frozen=True, slots=True)
class WorkflowGraph:
    """A validated workflow: stages by name, their edges and one topological order."""

    workflow: Workflow
    stages: dict[str, StageDef]
    order: tuple[str, ...]
    upstream: dict[str, tuple[str, ...]]
    downstream: dict[str, tuple[str, ...]]
    # inputs that are assets of other workflows: stage-input name -> asset key
    foreign: dict[str, str] = field(default_factory=dict)
    # the graph itself, built once: node payloads are stage names; ``index`` maps name -> node
    dag: rx.PyDiGraph = field(default_factory=rx.PyDiGraph, compare=False, repr=False)
    index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.workflow.name


def build_graph(workflow: Workflow, assets: Mapping[str, str] | None = None) -> WorkflowGraph:
    """Validate ``workflow`` and return its graph. Every problem found (duplicate names,
    unknown dependencies, cycles, conflicting asset keys) is reported in one ``GraphError``.

    ``assets`` maps the asset keys of the project's other workflows to their workflow: an
    input naming one of them is read from that asset's latest snapshot."""
    assets = assets or {}
    foreign: dict[str, str] = {}
    problems: list[str] = []
    stages: dict[str, StageDef] = {}
    counts = Counter(s.name for s in workflow.stages)
    for name, count in counts.items():
        if count > 1:
            places = ", ".join(s.location for s in workflow.stages if s.name == name)
            problems.append(
                f"Workflow {workflow.name!r} has {count} stages named {name!r} ({places}); "
                "stage names must be unique: rename one (name=...)."
            )
    for s in workflow.stages:
        stages.setdefault(s.name, s)
    keys = Counter(s.asset_key for s in stages.values() if s.asset_key)
    for key, count in keys.items():
        if count > 1:
            owners = ", ".join(sorted(s.name for s in stages.values() if s.asset_key == key))
            problems.append(
                f"Workflow {workflow.name!r}: asset key {key!r} is produced by {count} "
                f"stages ({owners}); each asset must have one producer."
            )
    # A multigraph: adding an edge to a simple PyDiGraph scans the node's edges for a parallel
    # one (quadratic on a wide fan-in); the edges are made unique here instead.
    graph = rx.PyDiGraph(check_cycle=False, multigraph=True)
    names = list(stages)
    index = dict(zip(names, graph.add_nodes_from(names), strict=True))
    edges: dict[tuple[int, int], None] = {}
    for s in stages.values():
        inputs = {i.upstream for i in s.inputs}
        for up in s.upstream:
            if up not in index and up in inputs and up in assets:
                foreign[up] = up
            elif up not in index:
                problems.append(_unknown(workflow, s, up, [*stages, *assets]))
            elif up == s.name:
                problems.append(
                    f"Stage {s.name!r} ({s.location}) depends on itself: cycle {up} -> {up}."
                )
            else:
                edges[(index[up], index[s.name])] = None
    graph.add_edges_from_no_data(list(edges))
    if not rx.is_directed_acyclic_graph(graph):
        problems.extend(_cycles(graph))
    if problems:
        raise GraphError.of(problems, hint="Fix the definitions, then run `klaw validate`.")
    order = tuple(rx.lexicographical_topological_sort(graph, key=str))
    if foreign:
        upstream = {n: tuple(u for u in stages[n].upstream if u not in foreign) for n in order}
    else:
        upstream = {n: stages[n].upstream for n in order}
    downstream: dict[str, list[str]] = {n: [] for n in order}
    for n in order:
        for up in upstream[n]:
            downstream[up].append(n)
    return WorkflowGraph(
        workflow=workflow,
        stages={n: stages[n] for n in order},
        order=order,
        upstream=upstream,
        downstream={n: tuple(d) for n, d in downstream.items()},
        foreign=foreign,
        dag=graph,
        index=index,
    )


def _unknown(workflow: Workflow, stage: StageDef, up: str, names: list[str]) -> str:
    close = difflib.get_close_matches(up, names, n=3, cutoff=0.6)
    how = next((i.param for i in stage.inputs if i.upstream == up), None)
    source = f"parameter {how!r}" if how else "deps="
    if how and isinstance(stage.fn, SqlQuery):
        source = "SQL, which reads it as a table"
    message = (
        f"Stage {stage.name!r} ({stage.location}) depends on {up!r} (from its {source}), "
        f"but workflow {workflow.name!r} has no stage of that name and no workflow of the "
        "project makes an asset of that name"
    )
    if close:
        return message + f"; did you mean {' or '.join(repr(c) for c in close)}?"
    return message + ". Add the stage to the workflow, or map the parameter with inputs={...}."


def _cycles(graph: rx.PyDiGraph) -> list[str]:
    problems = []
    for component in rx.strongly_connected_components(graph):
        if len(component) < 2:
            continue
        start = min(component, key=lambda i: graph[i])
        cycle = rx.digraph_find_cycle(graph, source=start)
        path = [graph[a] for a, _ in cycle] + [graph[cycle[0][0]]]
        problems.append(f"Cycle: {' -> '.join(path)}. Remove one of these dependencies.")
    return problems
