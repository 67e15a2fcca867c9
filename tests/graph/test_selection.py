"""Selection syntax and plans."""

from __future__ import annotations

import pytest

import klaw
from klaw.errors import SelectionError
from klaw.graph.build import build_graph
from klaw.graph.plan import make_plan
from klaw.graph.selection import select


@klaw.asset(tags=["raw"])
def src() -> None: ...


@klaw.asset(tags=["raw"])
def other() -> None: ...


@klaw.stage
def mid(src: object) -> None: ...


@klaw.asset
def top(mid: object, other: object) -> None: ...


@klaw.asset
def leaf(top: object) -> None: ...


GRAPH = build_graph(klaw.workflow("w", [src, other, mid, top, leaf]))


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (None, {"src", "other", "mid", "top", "leaf"}),
        ("top", {"top"}),
        ("+top", {"src", "other", "mid", "top"}),
        ("1+top", {"mid", "other", "top"}),
        ("mid+", {"mid", "top", "leaf"}),
        ("mid+1", {"mid", "top"}),
        ("+mid+", {"src", "mid", "top", "leaf"}),
        ("tag:raw", {"src", "other"}),
        ("src, leaf", {"src", "leaf"}),
        ("*", {"src", "other", "mid", "top", "leaf"}),
    ],
)
def test_selection(expression: str | None, expected: set[str]) -> None:
    assert select(GRAPH, expression) == expected


def test_selection_matching_nothing_names_close_stages() -> None:
    with pytest.raises(SelectionError, match="did you mean top"):
        select(GRAPH, "tpo")
    with pytest.raises(SelectionError, match="no stage is tagged 'nope'.*"):
        select(GRAPH, "tag:nope")
    with pytest.raises(SelectionError, match="not understood"):
        select(GRAPH, "a+b+c")


def test_plan_levels_and_external_inputs() -> None:
    plan = make_plan(GRAPH, "leaf")
    assert plan.stages == ("leaf",)
    assert plan.external == {"leaf": ("top",)}  # read from top's latest snapshot
    assert plan.upstream == {"leaf": ()}
    full = make_plan(GRAPH)
    assert full.levels == [["other", "src"], ["mid"], ["top"], ["leaf"]]


def test_plan_refuses_unselected_plain_stage_input() -> None:
    with pytest.raises(SelectionError, match="plain stage 'mid'.*not stored"):
        make_plan(GRAPH, "top")
