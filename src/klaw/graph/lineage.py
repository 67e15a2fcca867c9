"""Asset lineage: which assets each asset is computed from, through the stages between them."""

from __future__ import annotations

from collections.abc import Iterable

from klaw.graph.build import WorkflowGraph


def feeding_assets(graph: WorkflowGraph, stage: str) -> tuple[str, ...]:
    """The asset keys ``stage`` of ``graph`` is computed from, through non-asset stages."""
    found: set[str] = set()
    seen: set[str] = set()
    todo = list(graph.stages[stage].upstream)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in graph.foreign:
            found.add(graph.foreign[name])
            continue
        up = graph.stages.get(name)
        if up is None:
            continue
        if up.asset_key is not None:
            found.add(up.asset_key)
        else:
            todo.extend(up.upstream)
    return tuple(sorted(found))


def asset_inputs(graphs: Iterable[WorkflowGraph]) -> dict[str, tuple[str, ...]]:
    """Every asset the graphs define -> the asset keys it is computed from."""
    found: dict[str, tuple[str, ...]] = {}
    for graph in graphs:
        for stage in graph.stages.values():
            if stage.asset_key is not None:
                found[stage.asset_key] = feeding_assets(graph, stage.name)
    return found
