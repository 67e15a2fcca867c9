"""Wide graphs: built once as a rustworkx multigraph with unique edges; selection and plan
levels agree with the plain walks they replaced (kept here as the oracle)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import klaw
from klaw.authoring.stage import StageDef, StageInput, StageKind
from klaw.graph.build import WorkflowGraph, build_graph
from klaw.graph.plan import make_plan
from klaw.graph.selection import select


def _noop(**_: object) -> None: ...


def _stage(name: str, upstream: tuple[str, ...], kind: StageKind = StageKind.STAGE) -> StageDef:
    inputs = tuple(StageInput(f"p{i}", up) for i, up in enumerate(upstream))
    return StageDef(name=name, fn=_noop, kind=kind, inputs=inputs, upstream=upstream)


@pytest.mark.slow
def test_wide_fan_out_and_in_is_a_multigraph_with_unique_edges() -> None:
    width = 100_000
    middle = [_stage(f"s{i}", ("root",)) for i in range(width)]
    # the join lists one upstream twice: the graph still holds each edge once
    join = _stage("join", (*(s.name for s in middle), "s0"))
    graph = build_graph(klaw.workflow("wide", [_stage("root", ()), *middle, join]))
    assert graph.dag.multigraph  # a simple graph checks every new edge against the others
    assert graph.dag.num_nodes() == width + 2
    assert graph.dag.num_edges() == 2 * width
    assert graph.dag[graph.index["join"]] == "join"
    plan = make_plan(graph)
    levels = plan.levels
    assert [len(level) for level in levels] == [1, width, 1]
    assert levels[1][:3] == ["s0", "s1", "s10"]  # the plan's (lexicographic) order
    assert select(graph, "+join") == frozenset(graph.order)
    assert select(graph, "root+1") == frozenset(graph.order) - {"join"}


# -- the walks Klaw used before rustworkx did them: the oracle ---------------------------------


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


def _levels(stages: tuple[str, ...], upstream: Mapping[str, tuple[str, ...]]) -> list[list[str]]:
    depth: dict[str, int] = {}
    for name in stages:
        depth[name] = 1 + max((depth[u] for u in upstream[name]), default=-1)
    levels: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name in stages:
        levels[depth[name]].append(name)
    return levels


@st.composite
def _dags(draw: st.DrawFn) -> WorkflowGraph:
    size = draw(st.integers(1, 25))
    stages = []
    for i in range(size):
        ups = draw(st.lists(st.integers(0, i - 1), max_size=4, unique=True)) if i else []
        kind = draw(st.sampled_from([StageKind.ASSET, StageKind.STAGE]))
        stages.append(_stage(f"n{i}", tuple(f"n{u}" for u in ups), kind))
    order = draw(st.permutations(stages))
    return build_graph(klaw.workflow("random", order))


@settings(max_examples=200, deadline=None)
@given(graph=_dags(), data=st.data())
def test_selection_and_levels_match_the_plain_walks(
    graph: WorkflowGraph, data: st.DataObject
) -> None:
    names = list(graph.order)
    base = set(data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3)))
    up_depth = data.draw(st.sampled_from(["", "1", "2", "3"]))
    down_depth = data.draw(st.sampled_from(["", "1", "2", "3"]))
    up, down = data.draw(st.booleans()), data.draw(st.booleans())
    terms = [(f"{up_depth}+" if up else "") + n + (f"+{down_depth}" if down else "") for n in base]
    expected = set(base)
    if up:
        expected |= _walk(graph.upstream, base, int(up_depth) if up_depth else None)
    if down:
        expected |= _walk(graph.downstream, base, int(down_depth) if down_depth else None)
    assert select(graph, ",".join(terms)) == expected
    full = make_plan(graph)
    assert full.levels == _levels(full.stages, full.upstream)
    # a selection closed upstream needs nothing from outside, so it always plans
    closed = select(graph, ",".join(f"+{n}" for n in base))
    plan = make_plan(graph, ",".join(f"+{n}" for n in base))
    assert set(plan.stages) == closed
    assert plan.levels == _levels(plan.stages, plan.upstream)
