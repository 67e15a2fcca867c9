"""Selection syntax as dbt and Dagster users know it.

``name`` one stage; ``+name`` it and everything upstream; ``name+`` it and everything
downstream; ``2+name`` / ``name+1`` limit the depth; ``tag:x`` every stage tagged ``x``;
``*`` everything. Terms separated by commas or spaces are unioned.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

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
        result |= _walk(graph.upstream, base, int(up_depth) if up_depth else None)
    if down:
        result |= _walk(graph.downstream, base, int(down_depth) if down_depth else None)
    return result


def _walk(edges: Mapping[str, tuple[str, ...]], start: set[str], depth: int | None) -> set[str]:
    seen: set[str] = set()
    frontier = set(start)
    level = 0
    while frontier and (depth is None or level < depth):
        level += 1
        nxt = {n for f in frontier for n in edges[f]} - seen - start
        seen |= nxt
        frontier = nxt
    return seen
