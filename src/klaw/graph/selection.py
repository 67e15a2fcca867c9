"""Selection syntax as dbt and Dagster users know it.

``name`` one stage; ``+name`` it and everything upstream; ``name+`` it and everything
downstream; ``2+name`` / ``name+1`` limit the depth; ``tag:x`` every stage tagged ``x``;
``*`` everything. Terms separated by commas or spaces are unioned.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable

import rustworkx as rx

from klaw.errors import SelectionError
from klaw.graph.build import WorkflowGraph

_TERM = re.compile(r"^(?:(\d*)(\+))?([A-Za-z0-9_:\-\*]+?)(?:(\+)(\d*))?$")


def select(graph: WorkflowGraph, expression: str | None) -> frozenset[str]:
    """The stages that ``expression`` selects; every stage when it is empty or ``None``."""
    if expression is None or not expression.strip():
        return frozenset(graph.order)
    chosen: set[str] = set()
    for term in re.split(r"[,\s]+", expression.strip()):
        if term:
            chosen |= _term(graph, term)
    return frozenset(chosen)


def _term(graph: WorkflowGraph, term: str) -> set[str]:
    match = _TERM.match(term)
    if not match:
        raise SelectionError(
            f"Selection term {term!r} is not understood.",
            hint="Use name, +name, name+, 2+name, tag:x or *.",
        )
    up_depth, up, core, down, down_depth = match.groups()
    if core == "*":
        base = set(graph.order)
    elif core.startswith("tag:"):
        tag = core[4:]
        base = {n for n, s in graph.stages.items() if tag in s.tags}
        if not base:
            tags = sorted({t for s in graph.stages.values() for t in s.tags})
            raise SelectionError(
                f"Selection {term!r} matches no stage of workflow {graph.name!r}: no stage is "
                f"tagged {tag!r}.",
                hint=f"Tags in this workflow: {', '.join(tags) or 'none'}.",
            )
    elif core in graph.stages:
        base = {core}
    else:
        close = difflib.get_close_matches(core, list(graph.stages), n=3)
        raise SelectionError(
            f"Selection {term!r} matches no stage of workflow {graph.name!r}"
            + (f"; did you mean {', '.join(close)}?" if close else "."),
            hint=f"`klaw plan {graph.name}` lists its stages.",
        )
    result = set(base)
    if up:
        result |= _reach(graph, base, int(up_depth) if up_depth else None, upstream=True)
    if down:
        result |= _reach(graph, base, int(down_depth) if down_depth else None, upstream=False)
    return result


def _reach(graph: WorkflowGraph, start: set[str], depth: int | None, *, upstream: bool) -> set[str]:
    """The stages upstream (or downstream) of ``start`` within ``depth`` steps (any depth
    when ``None``), not counting ``start`` itself."""
    dag, index = graph.dag, graph.index
    nodes = [index[n] for n in start]
    found: set[int] = set()
    if depth is None:
        walk = rx.ancestors if upstream else rx.descendants
        for node in nodes:
            if node not in found:  # what it reaches is already in `found`
                found |= walk(dag, node)
    else:
        step = dag.predecessor_indices if upstream else dag.successor_indices
        found = _bfs(step, nodes, depth)
    found.difference_update(nodes)
    return {dag[i] for i in found}


def _bfs(step: Callable[[int], Iterable[int]], start: list[int], depth: int) -> set[int]:
    """Nodes at most ``depth`` steps from ``start`` (a breadth-first search by levels)."""
    seen = set(start)
    frontier = list(start)
    for _ in range(depth):
        frontier = list(dict.fromkeys(n for f in frontier for n in step(f) if n not in seen))
        if not frontier:
            break
        seen.update(frontier)
    return seen
