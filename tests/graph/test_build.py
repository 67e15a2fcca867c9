"""Graph building and validation: errors that name things."""

from __future__ import annotations

import pytest

import klaw
from klaw.errors import GraphError
from klaw.graph.build import build_graph


@klaw.asset
def a() -> None: ...


@klaw.asset
def b(a: object) -> None: ...


@klaw.stage(deps=["b"])
def c(a: object) -> None: ...


def test_order_edges_and_explicit_deps() -> None:
    g = build_graph(klaw.workflow("w", [c, b, a]))
    assert g.order == ("a", "b", "c")
    assert g.upstream["c"] == ("a", "b")
    assert g.downstream["a"] == ("b", "c")


def test_cycle_is_reported_as_its_path() -> None:
    @klaw.stage
    def x(z: object) -> None: ...

    @klaw.stage
    def y(x: object) -> None: ...

    @klaw.stage
    def z(y: object) -> None: ...

    with pytest.raises(GraphError) as info:
        build_graph(klaw.workflow("w", [x, y, z]))
    assert "Cycle: x -> y -> z -> x" in str(info.value)


def test_self_dependency() -> None:
    @klaw.stage(deps=["me"])
    def me() -> None: ...

    with pytest.raises(GraphError, match="depends on itself"):
        build_graph(klaw.workflow("w", [me]))


def test_unknown_dependency_names_closest_stage() -> None:
    @klaw.stage
    def total(orderz: object) -> None: ...

    @klaw.stage
    def orders() -> None: ...

    with pytest.raises(GraphError) as info:
        build_graph(klaw.workflow("w", [orders, total]))
    message = str(info.value)
    assert "'total'" in message and "'orderz'" in message
    assert "did you mean 'orders'?" in message
    assert "test_build.py:" in message  # where the stage is defined


def test_duplicate_names_are_reported_with_locations() -> None:
    def make() -> klaw.StageDef:
        @klaw.stage(name="same")
        def f() -> None: ...

        return f

    with pytest.raises(GraphError, match="2 stages named 'same'"):
        build_graph(klaw.workflow("w", [make(), make()]))


def test_every_problem_is_reported_at_once() -> None:
    @klaw.stage
    def p(missing_one: object) -> None: ...

    @klaw.stage
    def q(missing_two: object) -> None: ...

    with pytest.raises(GraphError) as info:
        build_graph(klaw.workflow("w", [p, q]))
    assert len(info.value.problems) == 2


def test_two_producers_of_one_asset_key() -> None:
    @klaw.asset(key="shared")
    def one() -> None: ...

    @klaw.asset(key="shared")
    def two() -> None: ...

    with pytest.raises(GraphError, match="asset key 'shared' is produced by 2 stages"):
        build_graph(klaw.workflow("w", [one, two]))


def test_large_graph_builds() -> None:
    def noop(prev: object) -> None: ...

    stages = [klaw.stage(name="s0")(lambda: None)]
    stages += [klaw.stage(name=f"s{i}", inputs={"prev": f"s{i - 1}"})(noop) for i in range(1, 2000)]
    g = build_graph(klaw.workflow("big", stages))
    assert g.order[0] == "s0" and g.order[-1] == "s1999"
