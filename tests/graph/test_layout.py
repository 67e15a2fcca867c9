"""The layered drawing of a graph: layers by longest path, every stage placed once, and the
barycentre sweeps untangle crossed edges."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from klaw.graph.layout import LAYER_GAP, ROW_GAP, layered


def test_layers_follow_the_longest_path() -> None:
    order = ["a", "b", "c", "d"]
    up = {"b": ["a"], "c": ["a"], "d": ["b", "a"]}
    pos = layered(order, up)
    assert {n: pos[n][0] / LAYER_GAP for n in order} == {"a": 0, "b": 1, "c": 1, "d": 2}
    assert {pos["b"][1], pos["c"][1]} == {-ROW_GAP / 2, ROW_GAP / 2}


def test_crossed_edges_are_untangled() -> None:
    # layer 0: x, y; layer 1 listed as q, p with p reading x and q reading y: crossed as given
    order = ["x", "y", "q", "p"]
    pos = layered(order, {"p": ["x"], "q": ["y"]})
    assert (pos["x"][1] < pos["y"][1]) == (pos["p"][1] < pos["q"][1])


@given(st.lists(st.lists(st.integers(0, 30), max_size=3), max_size=30))
def test_every_stage_is_placed_once_right_of_its_upstream(raw: list[list[int]]) -> None:
    order = [f"n{i}" for i in range(len(raw))]
    up = {f"n{i}": [f"n{j}" for j in ups if j < i] for i, ups in enumerate(raw)}
    pos = layered(order, up)
    assert set(pos) == set(order)
    assert len(set(pos.values())) == len(order)
    for name, ups in up.items():
        assert all(pos[u][0] < pos[name][0] for u in ups)
